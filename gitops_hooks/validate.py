"""`gitops-hooks validate` and the client pre-commit hook: the server's checks before the push.

The same pipeline as the gate (pipeline.check_snapshot) with the same policy layers: the server's policy
(exported with `gitops-hooks policy export`, or the built-in defaults), its per-ref overlay for the branch,
then the repository's own `.gitops-hooks.yaml`, which may only tighten. The `.gitops-hooks.yaml` is read from
what is checked: the commit for --rev, the index for --staged, the disk otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import pygit2

from . import config as configmod
from .cache import for_user
from .findings import finding
from .gitrepo import MODE_GITLINK, Entry, FolderTree, GitTree, IndexTree, Snapshot
from .pipeline import Result, check_snapshot, make_context

PREFIX = "gitops-hooks"


class UsageProblem(Exception):
    """Bad arguments or configuration: exit code 2, one line for the user."""


@dataclass(frozen=True)
class Request:
    paths: tuple[Path, ...] = ()
    rev: str | None = None
    staged: bool = False
    policy_file: Path | None = None
    ref: str | None = None
    output: str = "text"
    base: str | None = None  # the tree before, for transition rules; default: the branch's upstream


# ---------------------------------------------------------------------------- what is checked

class StagedTree(IndexTree):
    """The index git will commit. During `git commit -a` or `git commit PATH`, git hands its hooks a
    temporary index in GIT_INDEX_FILE; that one, not .git/index, is what the commit will hold."""

    def __init__(self, repo: pygit2.Repository, index_file: Path | None = None) -> None:
        super().__init__(repo)
        self.index_file = index_file

    def entries(self) -> list[Entry]:
        index = pygit2.Index(str(self.index_file)) if self.index_file else self.repo.index
        odb = self.repo.odb
        out = []
        for item in index:
            size = 0 if item.mode == MODE_GITLINK else odb.read_header(item.id)[1]
            out.append(Entry(item.path, item.mode, str(item.id), size))
        return out


class WorkingTree(FolderTree):
    """Files on disk in a git working clone, less what .gitignore leaves out (as `git add` would).
    A file named on the command line is checked even if ignored."""

    def __init__(self, repo: pygit2.Repository, root: Path, paths: list[Path]) -> None:
        super().__init__(root, paths)
        self.repo = repo
        self.named = {p for p in paths if p.is_file() or p.is_symlink()}

    def _files(self) -> Iterator[tuple[Path, str | None]]:
        for path, rel in super()._files():
            if path in self.named or not self._ignored(path, rel):
                yield path, rel

    def _ignored(self, path: Path, rel: str | None) -> bool:
        rel = rel or self.relative(path)
        return rel is not None and bool(self.repo.path_is_ignored(rel))


def find_repository(start: Path) -> pygit2.Repository | None:
    found = pygit2.discover_repository(str(start))
    return pygit2.Repository(found) if found else None


def index_file_from_env(cwd: Path) -> Path | None:
    value = os.environ.get("GIT_INDEX_FILE")
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else (cwd / path)


def snapshot_for(req: Request, cwd: Path) -> tuple[Snapshot, Path, pygit2.Repository | None]:
    """The snapshot to check, the root that paths are relative to, and the repository if any."""
    if req.rev is not None and req.staged:
        raise UsageProblem("--rev and --staged exclude each other")
    if req.paths and (req.rev is not None or req.staged):
        raise UsageProblem("PATHS cannot be combined with --rev or --staged: those check the whole tree")
    repo = find_repository(cwd)
    root = Path(repo.workdir).resolve() if repo is not None and repo.workdir else cwd.resolve()
    if req.rev is None and not req.staged:
        targets = [p.resolve() for p in req.paths] or [cwd.resolve()]
        if repo is not None and repo.workdir:
            return WorkingTree(repo, root, targets), root, repo
        return FolderTree(root, targets), root, repo
    if repo is None:
        raise UsageProblem(f"--rev and --staged need a git repository; {cwd} is not in one")
    if req.staged:
        if repo.is_bare:
            raise UsageProblem(f"--staged needs a working clone; {repo.path} is a bare repository")
        return StagedTree(repo, index_file_from_env(cwd)), root, repo
    return commit_tree(repo, req.rev or "HEAD"), root, repo


def commit_tree(repo: pygit2.Repository, rev: str) -> GitTree:
    try:
        obj = repo.revparse_single(rev)
        commit = obj.peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
        raise UsageProblem(f"--rev {rev}: not a commit in this repository") from None
    return GitTree(repo, str(commit.id), f"{rev} ({str(commit.id)[:12]})")


def base_tree(repo: pygit2.Repository | None, base: str | None, ref: str) -> GitTree | None:
    """What the server holds for the ref, to judge transitions (CEL oldSelf, admission UPDATE) against:
    --base REV, else the upstream of the branch (e.g. origin/main), else nothing (as a new ref)."""
    if repo is None:
        if base is not None:
            raise UsageProblem("--base needs a git repository")
        return None
    if base is not None:
        return commit_tree(repo, base)
    branch = repo.branches.local.get(ref.removeprefix("refs/heads/")) if ref.startswith("refs/heads/") else None
    try:
        upstream = branch.upstream if branch is not None else None
    except (KeyError, ValueError, pygit2.GitError):
        return None
    return commit_tree(repo, upstream.shorthand) if upstream is not None else None


def current_ref(repo: pygit2.Repository | None) -> str:
    """The branch HEAD points at (even before its first commit), for the server's per-ref overlays."""
    head = repo.references.get("HEAD") if repo is not None else None
    target = head.target if head is not None else None
    return target if isinstance(target, str) and target.startswith("refs/") else ""


# ---------------------------------------------------------------------------- policy

def base_config(policy_file: Path | None) -> dict[str, Any]:
    """The server's policy exported to a file, or the built-in defaults."""
    if policy_file is None:
        return configmod.checked({}, "defaults")
    try:
        data = configmod.read_yaml_file(policy_file)
    except FileNotFoundError:
        raise UsageProblem(f"--policy {policy_file}: no such file") from None
    if isinstance(data, dict) and "environments" in data:
        raise UsageProblem(f"--policy {policy_file}: holds environments; export the policy with "
                           "`gitops-hooks policy export`, which leaves them out")
    return with_local_folders(configmod.checked(data, str(policy_file)), policy_file)


def folder_keys(cfg: dict[str, Any]) -> list[str]:
    """Settings that name folders on the server (schema_dirs, admission_policy_dirs, ...)."""
    return sorted(k for k, v in cfg.items() if k.endswith("_dirs") and isinstance(v, list))


def with_local_folders(cfg: dict[str, Any], policy_file: Path) -> dict[str, Any]:
    """An exported policy's folders: a relative one is relative to the policy file; each must exist here."""
    out = dict(cfg)
    for key in folder_keys(cfg):
        resolved = []
        for folder in cfg[key]:
            path = Path(folder) if Path(folder).is_absolute() else policy_file.parent / folder
            if not path.is_dir():
                raise UsageProblem(
                    f"--policy {policy_file}: {key}: {folder} is not a folder on this machine; "
                    "`gitops-hooks policy export REPO --output-dir DIR` copies the server's folders with the policy")
            resolved.append(str(path.resolve()))
        out[key] = resolved
    return out


def policy_source(snapshot: Snapshot, root: Path) -> Snapshot:
    """Where `.gitops-hooks.yaml` is read from: the checked tree, or the root folder on disk."""
    if isinstance(snapshot, FolderTree):
        own = root / configmod.REPO_POLICY_FILE
        return FolderTree(root, [own] if own.is_file() else [])
    return snapshot


def effective_policy(snapshot: Snapshot, root: Path, base: dict[str, Any], ref: str) -> configmod.Policy:
    from .prereceive import repo_policy

    cfg = configmod.for_ref(base, ref) if ref else base
    source = policy_source(snapshot, root)
    if isinstance(source, FolderTree) and not source.paths:
        return configmod.Policy(cfg, ())
    merged, notes = repo_policy(source, cfg)
    return configmod.Policy(merged, tuple(notes))


# ---------------------------------------------------------------------------- progress

class TerminalProgress:
    """A one-line counter on a terminal, shown only once a run has taken longer than `delay` seconds."""

    def __init__(self, stream: TextIO, delay: float = 0.5, interval: float = 0.1) -> None:
        self.stream = stream
        self.delay = delay
        self.interval = interval
        self.started = time.monotonic()
        self.last = 0.0
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.started < self.delay or (now - self.last < self.interval and done < total):
            return
        self.last = now
        text = f"reading files {done}/{total}" if done < total else f"checking {total} manifests"
        self.stream.write(f"\r\x1b[K{PREFIX}: {text}")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def progress_for(stream: TextIO) -> TerminalProgress | None:
    try:
        return TerminalProgress(stream) if stream.isatty() else None
    except (AttributeError, ValueError):
        return None


# ---------------------------------------------------------------------------- run

def check(req: Request, cwd: Path, err: TextIO) -> Result:
    snapshot, root, repo = snapshot_for(req, cwd)
    ref = req.ref if req.ref is not None else current_ref(repo)
    policy = effective_policy(snapshot, root, base_config(req.policy_file), ref)
    old = base_tree(repo, req.base, ref)
    progress = progress_for(err)
    try:
        ctx = make_context(policy, ref)
        ctx.old_tree = old
        result = check_snapshot(snapshot, policy, ref, progress=progress, context=ctx, cache=for_user())
    except FileNotFoundError as exc:
        raise UsageProblem(str(exc)) from None
    finally:
        if progress is not None:
            progress.close()
    limit = int(policy.limits["max_objects_per_push"])
    if result.stats.objects > limit:  # as the gate does for a push
        message = f"{result.stats.objects} objects is over the limit of {limit} per push"
        result.findings.append(finding("yaml-limits", ".", 1, 1, message))
    return result


def run(req: Request, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Exit code: 0 clean, 1 findings at error level, 2 usage, configuration or internal error."""
    from .formats import render
    from .rulebook import register_all

    register_all()

    out = out or sys.stdout
    err = err or sys.stderr
    try:
        result = check(req, Path.cwd(), err)
        text = render([result], req.output)
    except UsageProblem as exc:
        err.write(f"{PREFIX} validate: {exc}\n")
        return 2
    except configmod.ConfigError as exc:
        err.write(f"{PREFIX} validate: configuration error: {exc}\n")
        return 2
    except Exception as exc:  # fail closed, one line, no traceback
        one_line = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        err.write(f"{PREFIX} validate: internal error ({one_line}); nothing was accepted\n")
        return 2
    out.write(text.rstrip("\n") + "\n")
    out.flush()
    return 0 if result.ok else 1


# ---------------------------------------------------------------------------- the git pre-commit hook

def hooks_dir(cwd: Path) -> Path | None:
    proc = subprocess.run(["git", "rev-parse", "--git-path", "hooks"], cwd=cwd,
                          capture_output=True, text=True, check=False)
    return (cwd / proc.stdout.strip()).resolve() if proc.returncode == 0 else None


def run_chained(cwd: Path, err: TextIO) -> int:
    """Hooks that were in place before `install --client` run after the checks, in name order."""
    folder = hooks_dir(cwd)
    chain = folder / "pre-commit.d" if folder else None
    if chain is None or not chain.is_dir():
        return 0
    for script in sorted(chain.iterdir()):
        if not script.is_file() or not os.access(script, os.X_OK):
            continue
        code = subprocess.run([str(script)], cwd=cwd, check=False).returncode
        if code != 0:
            err.write(f"{PREFIX}: pre-commit.d/{script.name} refused the commit (exit {code})\n")
            return code
    return 0


def run_precommit_hook() -> int:
    """What git's pre-commit hook runs: the checks on the index, then any chained hooks."""
    code = run(Request(staged=True))
    if code == 1:
        sys.stderr.write(f"{PREFIX}: commit refused: fix the findings above (the server runs the same checks "
                         "on push); `git commit --no-verify` skips this hook once\n")
        return 1
    if code != 0:
        return code
    return run_chained(Path.cwd(), sys.stderr)


# ---------------------------------------------------------------------------- policy export

EXPORT_HEADER = ("# gitops-hooks policy exported from {source}\n"
                 "# For `gitops-hooks validate --policy FILE`. It holds no environments or credentials.\n")
FOLDER_FILES = (".yaml", ".yml", ".json")


def exported_config(git_dir: Path) -> dict[str, Any]:
    if not configmod.server_config_path(git_dir).is_file():
        raise UsageProblem(f"{git_dir}: no {configmod.CONFIG_DIR}/{configmod.CONFIG_FILE}; "
                           "is it a bare repository guarded with `gitops-hooks install`?")
    return configmod.export_policy(configmod.load_server_config(git_dir))


def policy_text(exported: dict[str, Any], git_dir: Path) -> str:
    import yaml

    header = EXPORT_HEADER.format(source=git_dir.resolve())
    return header + yaml.safe_dump(exported, sort_keys=False, default_flow_style=False)


def export_policy_text(git_dir: Path) -> str:
    """The server's policy as a file for `validate --policy`: all but environments and their secrets."""
    return policy_text(exported_config(git_dir), git_dir)


def export_policy_dir(git_dir: Path, out_dir: Path) -> list[str]:
    """The policy as DIR/policy.yaml, with copies of the server's folders (CRDs, admission policies) beside
    it, so that a client or CI without those folders checks custom resources as the server does."""
    import shutil

    exported = exported_config(git_dir)
    log = []
    for key in folder_keys(exported):
        copies = []
        for n, folder in enumerate(exported[key]):
            source = Path(folder) if Path(folder).is_absolute() else git_dir / folder
            if not source.is_dir():
                raise UsageProblem(f"{key}: {folder} is not a folder")
            rel = f"{key}/{n:02d}-{source.name or 'root'}"
            target = out_dir / rel
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(source, target, ignore=_not_manifests)
            copies.append(rel)
            log.append(f"copied {source} to {target}")
        exported[key] = copies
    out_dir.mkdir(parents=True, exist_ok=True)
    policy = out_dir / "policy.yaml"
    policy.write_text(policy_text(exported, git_dir), encoding="utf-8")
    log.append(f"wrote {policy}; use it with `gitops-hooks validate --policy {policy}`")
    return log


def _not_manifests(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if (Path(folder) / n).is_file() and not n.endswith(FOLDER_FILES)]
