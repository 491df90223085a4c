"""`gitops-hooks validate` and the client pre-commit hook: the server's checks before the push."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from . import config as configmod
from .findings import Finding
from .gitrepo import FolderTree, GitTree, IndexTree, Snapshot
from .pipeline import Result, check_snapshot


def load_policy(root: Path, policy_file: Path | None) -> configmod.Policy:
    """The exported server policy if given, else the defaults; then the repository's own file on top."""
    base: dict[str, Any]
    if policy_file is not None:
        base = configmod.checked(configmod.read_yaml_file(policy_file), str(policy_file))
    else:
        base = configmod.checked({}, "defaults")
    notes: list[Finding] = []
    repo_file = root / configmod.REPO_POLICY_FILE
    if repo_file.is_file():
        data = configmod.read_yaml_file(repo_file)
        if isinstance(data, dict):
            base, notes = configmod.tighten(base, data, configmod.REPO_POLICY_FILE)
    return configmod.Policy(base, tuple(notes))


def _repo(start: Path) -> Any:
    import pygit2

    found = pygit2.discover_repository(str(start))
    if found is None:
        return None
    return pygit2.Repository(found)


def snapshot_for(paths: list[Path], rev: str | None, staged: bool) -> tuple[Snapshot, Path]:
    cwd = Path.cwd()
    repo = _repo(cwd)
    root = Path(repo.workdir) if repo is not None and repo.workdir else cwd
    if rev is not None or staged:
        if repo is None:
            raise click.UsageError("--rev and --staged need a git repository")
        if staged:
            return IndexTree(repo), root
        try:
            commit = repo.revparse_single(rev)
        except (KeyError, ValueError) as exc:
            raise click.UsageError(f"unknown revision {rev!r}") from exc
        return GitTree(repo, str(commit.id), f"{rev} ({str(commit.id)[:12]})"), root
    targets = [p.resolve() for p in paths] or [cwd]
    return FolderTree(root, targets), root


def run(paths: list[Path], rev: str | None, staged: bool, policy_file: Path | None, output: str) -> int:
    from .report import render_text

    try:
        snapshot, root = snapshot_for(paths, rev, staged)
        policy = load_policy(root, policy_file)
    except click.UsageError as exc:
        click.echo(f"gitops-hooks validate: {exc.message}", err=True)
        return 2
    except configmod.ConfigError as exc:
        click.echo(f"gitops-hooks validate: {exc}", err=True)
        return 2
    try:
        result: Result = check_snapshot(snapshot, policy)
    except Exception as exc:  # an internal error is reported, never a traceback
        one_line = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        click.echo(f"gitops-hooks validate: internal error: {one_line}", err=True)
        return 2
    click.echo(render_text([result], max_findings=10_000))
    sys.stdout.flush()
    return 0 if result.ok else 1
