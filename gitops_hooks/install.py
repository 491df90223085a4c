"""Install the hooks into a bare repository (server) or a working clone (client)."""

from __future__ import annotations

import subprocess
import sys
from importlib.resources import files
from pathlib import Path

from . import config as configmod
from . import gateclient, kubeconform, runtime

SERVER_HOOKS = ("pre-receive", "post-receive")

DEFAULT_CONFIG = """\
# gitops-hooks server configuration. No push can change this file: it lives in the bare repository.
# Check it with `gitops-hooks config check <repo>`. Every setting is optional; defaults are shown.
version: 1
# kubernetes_version: "1.37"      # target version for schemas (1.25 to 1.37); empty: newest bundled
# engine: builtin                 # or kubeconform (must be on PATH)
# strict: true                    # unknown fields are errors (kubectl apply --validate=strict)
# schema_dirs: []                 # folders with CRDs for custom resources
# manifests:
#   include: ["**/*.yaml", "**/*.yml", "**/*.json"]
#   exclude: []
# paths:
#   exclude: []                   # e.g. ["docs/**"]: not checked at all
# refs:
#   check: ["refs/heads/*"]       # add "refs/tags/*" to check tags
#   protect: []                   # e.g. ["refs/heads/main"]: may not be deleted
# rules: {}                       # severity per rule id: error, warning, info or off
# kustomize:
#   enabled: true
#   kubectl: ""                   # renders kustomizations; empty: the suite's own kubectl, else PATH's
# environments: {}                # see `gitops-hooks env add`
"""


class InstallError(Exception):
    pass


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)


def suite_executable() -> str:
    found = runtime.suite_executable()
    if found is None:
        raise InstallError(runtime.NO_EXECUTABLE)
    return found


def hook_text(name: str, exe: str) -> str:
    template = files("gitops_hooks.hook_scripts").joinpath(name).read_text(encoding="utf-8")
    text = template.replace("GITOPS_HOOKS=gitops-hooks", f"GITOPS_HOOKS='{exe}'", 1)
    if name in SERVER_HOOKS:  # the hooks' thin client (gateclient.py)
        python = Path(exe).parent / "python"  # the suite's environment; else the python running install
        if not python.exists():
            python = Path(sys.executable)
        client = Path(str(files("gitops_hooks").joinpath("gateclient.py")))
        if python.exists() and client.is_file():
            text = text.replace("GITOPS_HOOKS_PYTHON=\n", f"GITOPS_HOOKS_PYTHON='{python}'\n", 1)
            text = text.replace("GITOPS_HOOKS_CLIENT=\n", f"GITOPS_HOOKS_CLIENT='{client}'\n", 1)
    return text


def _place_hook(hooks_dir: Path, name: str, text: str, log: list[str], file: str = "") -> None:
    """Write hook `name` into hooks_dir as `file` (default: the hook's name); a file of someone else's
    there is kept in `<name>.d/`, which the hook runs after its own work (gateclient.run_chained)."""
    target = hooks_dir / (file or name)
    if target.exists() or target.is_symlink():
        current = target.read_text(encoding="utf-8", errors="replace") if target.is_file() else ""
        if gateclient.MANAGED not in current:
            chain = hooks_dir / f"{name}.d"
            chain.mkdir(exist_ok=True)
            kept = chain / f"00-previous-{target.name}"
            n = 0
            while kept.exists():
                n += 1
                kept = chain / f"0{n}-previous-{target.name}"
            target.rename(kept)
            log.append(f"kept the existing {name} hook: it now runs from {kept} after the checks")
    target.write_text(text, encoding="utf-8")
    target.chmod(0o755)
    log.append(f"installed {target}")


IN_HOOK_FOLDER = "gitops-hooks"  # the file name in a folder run as one hook (not Gitea's `<hook>.d/<hook>`)


def run_as(folder: Path) -> str | None:
    """The one server hook a folder is run as: a folder named `<hook>.d` (GitLab's
    `custom_hooks/pre-receive.d`, Gitea's `hooks/pre-receive.d`); None for any other folder, which gets
    every server hook."""
    hook = folder.name.removesuffix(".d")
    return hook if folder.name.endswith(".d") and hook in SERVER_HOOKS else None


def _into_hook_folder(folder: Path, hook: str, exe: str, log: list[str]) -> None:
    """Write `hook` into a folder its platform runs as that hook, as `gitops-hooks`: Gitea's web editor
    shows and rewrites `hooks/<hook>.d/<hook>` as the repository's own hook. The suite's own scripts
    that an earlier install left there (the other hook, or this one under its hook name) are removed: a
    post-receive hook in pre-receive.d would apply a push before the gate has judged it."""
    for path in sorted(folder.iterdir()):
        if path.name != IN_HOOK_FOLDER and path.is_file() and gateclient.is_managed(str(path)):
            path.unlink()
            log.append(f"removed {path}: a hook script of the suite that does not belong in {folder.name}")
    _place_hook(folder, hook, hook_text(hook, exe), log, IN_HOOK_FOLDER)
    other = next(n for n in SERVER_HOOKS if n != hook)
    log.append(f"{folder} is run as the {hook} hook, so it holds only that one; install the {other} "
               f"hook with --hooks-dir {folder.with_name(other + '.d')}")


def install_server(repo: Path, hooks_dir: Path | None = None) -> list[str]:
    log: list[str] = []
    repo = repo.resolve()
    if not repo.exists():
        proc = _git("init", "--bare", "--quiet", "--initial-branch=main", str(repo))
        if proc.returncode != 0:
            raise InstallError(f"git init --bare {repo} failed: {proc.stderr.strip()}")
        log.append(f"created the bare repository {repo}")
    proc = _git("-C", str(repo), "rev-parse", "--is-bare-repository")
    if proc.returncode != 0:
        raise InstallError(f"{repo} is not a git repository: {proc.stderr.strip()}")
    if proc.stdout.strip() != "true":
        raise InstallError(f"{repo} is not a bare repository (use --client for a working clone)")
    fmt = _git("--git-dir", str(repo), "rev-parse", "--show-object-format").stdout.strip() or "sha1"
    if fmt != "sha1":
        raise InstallError(
            f"{repo} uses {fmt} object ids; gitops-hooks reads objects with libgit2 (pygit2), which "
            "supports only SHA-1 repositories here. Use a SHA-1 repository."
        )
    exe = suite_executable()
    target_dir = hooks_dir or repo / "hooks"
    target_dir.mkdir(parents=True, exist_ok=True)
    only = run_as(target_dir)
    if only:
        _into_hook_folder(target_dir, only, exe, log)
    else:
        for name in SERVER_HOOKS:
            _place_hook(target_dir, name, hook_text(name, exe), log)
    cfg_dir = repo / configmod.CONFIG_DIR
    cfg_dir.mkdir(exist_ok=True)
    cfg = cfg_dir / configmod.CONFIG_FILE
    if not cfg.exists():
        cfg.write_text(DEFAULT_CONFIG, encoding="utf-8")
        log.append(f"wrote the default configuration {cfg}")
    else:
        configmod.load_server_config(repo)  # refuse to finish on a broken one
        log.append(f"kept the configuration {cfg}")
    if _git("--git-dir", str(repo), "config", "receive.advertisePushOptions", "true").returncode != 0:
        raise InstallError("could not set receive.advertisePushOptions")
    log.append("set receive.advertisePushOptions=true")
    log.append(gateclient.ensure_server())
    server = configmod.load_server_config(repo)
    if kubeconform.selected(server):
        try:
            kubeconform.find_binary(server)
        except kubeconform.KubeconformMissing as exc:
            raise InstallError(str(exc)) from None
    return log


def install_client(clone: Path) -> list[str]:
    proc = _git("rev-parse", "--git-path", "hooks", cwd=clone)
    if proc.returncode != 0:
        raise InstallError(f"{clone} is not a git working clone: {proc.stderr.strip()}")
    hooks_dir = (clone / proc.stdout.strip()).resolve()
    hooks_dir.mkdir(parents=True, exist_ok=True)
    log: list[str] = []
    _place_hook(hooks_dir, "pre-commit", hook_text("pre-commit", suite_executable()), log)
    return log
