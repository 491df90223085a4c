"""Command line: parse, call one function, map its result to an exit code.

Exit codes: 0 clean, 1 findings at error level (or a refused push), 2 usage or configuration error.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gitops-hooks")
def main() -> None:
    """Git server-side hooks that make a plain git server the gate and the trigger of GitOps."""


# ---------------------------------------------------------------------------- hooks

@main.command("pre-receive")
def pre_receive() -> None:
    """The server gate (run by git with ref updates on stdin)."""
    from .gitrepo import git_dir_from_env
    from .prereceive import main as gate

    sys.exit(gate(sys.stdin.read(), git_dir_from_env(), os.environ))


@main.command("post-receive")
def post_receive() -> None:
    """After a push is accepted: reconcile the accepted state (run by git)."""
    from .gitrepo import git_dir_from_env
    from .postreceive import main as after

    sys.exit(after(sys.stdin.read(), git_dir_from_env(), os.environ))


# ---------------------------------------------------------------------------- administration

@main.command("install")
@click.argument("target", type=click.Path(path_type=Path))
@click.option("--client", is_flag=True, help="Install the pre-commit hook into a working clone instead.")
@click.option("--hooks-dir", type=click.Path(path_type=Path),
              help="Write the hooks here (e.g. GitLab's custom_hooks/pre-receive.d is a folder per hook).")
def install(target: Path, client: bool, hooks_dir: Path | None) -> None:
    """Guard the bare repository TARGET (created if missing), or with --client a working clone."""
    from .config import ConfigError
    from .install import InstallError, install_client, install_server

    try:
        log = install_client(target) if client else install_server(target, hooks_dir)
    except (InstallError, ConfigError) as exc:
        click.echo(f"gitops-hooks install: {exc}", err=True)
        sys.exit(2)
    for line in log:
        click.echo(line)


@main.group("config")
def config_group() -> None:
    """Inspect the server configuration."""


@config_group.command("check")
@click.argument("repo", type=click.Path(exists=True, file_okay=False, path_type=Path))
def config_check(repo: Path) -> None:
    """Report problems in REPO's server configuration."""
    from .config import ConfigError, load_server_config, server_config_path
    from .schemas import resolve_version

    try:
        cfg = load_server_config(repo)
        resolve_version(cfg["kubernetes_version"])
        for folder in cfg["schema_dirs"]:
            if not Path(folder).is_dir():
                raise ConfigError(f"schema_dirs: {folder} is not a folder")
    except (ConfigError, ValueError) as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    click.echo(f"{server_config_path(repo)}: ok")


# ---------------------------------------------------------------------------- rules

@main.command("rules")
def rules() -> None:
    """List every rule: id, family, default severity and summary."""
    from .findings import catalogue

    for r in sorted(catalogue().values(), key=lambda r: (r.family, r.id)):
        click.echo(f"{r.id:32} {r.family:10} {str(r.severity):8} {r.summary}")


@main.command("explain")
@click.argument("rule_id")
def explain(rule_id: str) -> None:
    """Print the explanation of one rule, with a compliant example."""
    from .findings import catalogue

    r = catalogue().get(rule_id)
    if r is None:
        click.echo(f"no rule {rule_id!r}; `gitops-hooks rules` lists them", err=True)
        sys.exit(2)
    click.echo(f"{r.id} ({r.family}, default {r.severity})\n\n{r.summary}\n\n{r.explanation}")
    if r.example:
        click.echo("\nCompliant example:\n\n" + "\n".join("    " + x for x in r.example.rstrip().splitlines()))


# ---------------------------------------------------------------------------- client side

@main.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--rev", help="Validate the tree of this commit instead of files on disk.")
@click.option("--staged", is_flag=True, help="Validate the index: what the next commit will hold.")
@click.option("--policy", "policy_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A policy exported from the server with `gitops-hooks policy export`.")
@click.option("--ref", help="Apply the server's ref_policies for this ref (default: the current branch).")
@click.option("--output", "-o", "output", type=click.Choice(["text", "json", "junit", "sarif", "github"]),
              default="text", show_default=True, help="Report format, printed on standard output.")
def validate(paths: tuple[Path, ...], rev: str | None, staged: bool, policy_file: Path | None,
             ref: str | None, output: str) -> None:
    """Run the server's checks on files, a folder, a commit (--rev) or the index (--staged).

    Exit codes: 0 clean, 1 findings at error level, 2 usage or configuration error."""
    from .validate import Request, run

    sys.exit(run(Request(tuple(paths), rev, staged, policy_file, ref, output)))


@main.command("pre-commit")
@click.argument("files", nargs=-1)
def pre_commit(files: tuple[str, ...]) -> None:
    """Git's pre-commit hook: validate the index, then run hooks chained in hooks/pre-commit.d."""
    from .validate import run_precommit_hook

    sys.exit(run_precommit_hook())


@main.group("policy")
def policy_group() -> None:
    """The server's policy, for clients and CI."""


@policy_group.command("export")
@click.argument("repo", type=click.Path(exists=True, file_okay=False, path_type=Path))
def policy_export(repo: Path) -> None:
    """Print REPO's policy (without environments) for `gitops-hooks validate --policy FILE`."""
    from .config import ConfigError
    from .validate import UsageProblem, export_policy_text

    try:
        click.echo(export_policy_text(repo), nl=False)
    except (ConfigError, UsageProblem) as exc:
        click.echo(f"gitops-hooks policy export: {exc}", err=True)
        sys.exit(2)
