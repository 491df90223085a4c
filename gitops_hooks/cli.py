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

def _broken(exc: BaseException) -> str:
    """One line on a suite that cannot load (a package missing or broken): no traceback for the pusher."""
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")[:300]


@main.command("pre-receive")
def pre_receive() -> None:
    """The server gate (run by git with ref updates on stdin)."""
    try:
        from .gitrepo import git_dir_from_env
        from .prereceive import main as gate
    except Exception as exc:  # noqa: BLE001 - fail closed, with a reason
        click.echo(f"gitops-hooks: push refused: the gate cannot load ({_broken(exc)}); tell the administrator")
        sys.exit(1)
    sys.exit(gate(sys.stdin.read(), git_dir_from_env(), os.environ))


@main.command("post-receive")
def post_receive() -> None:
    """After a push is accepted: reconcile the accepted state (run by git)."""
    try:
        from .gitrepo import git_dir_from_env
        from .postreceive import main as after
    except Exception as exc:  # noqa: BLE001 - the push stands; say why nothing was applied
        click.echo(f"gitops-hooks: accepted, not applied: reconciliation cannot load ({_broken(exc)}); "
                   "tell the administrator")
        sys.exit(1)
    sys.exit(after(sys.stdin.read(), git_dir_from_env(), os.environ))


# ---------------------------------------------------------------------------- administration

@main.command("install")
@click.argument("target", type=click.Path(path_type=Path))
@click.option("--client", is_flag=True, help="Install the pre-commit hook into a working clone instead.")
@click.option("--hooks-dir", type=click.Path(path_type=Path),
              help="Write the hooks here; a folder named pre-receive.d or post-receive.d (GitLab's "
                   "custom_hooks/<hook>.d, Gitea's hooks/<hook>.d) gets only that hook.")
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
    from . import kubeconform
    from .config import ConfigError, load_server_config, server_config_path
    from .rulebook import register_all
    from .schemas import resolve_version

    register_all()  # (the administrator's rules may not take a built-in rule's id)
    try:
        cfg = load_server_config(repo)
        resolve_version(cfg["kubernetes_version"])
        for folder in cfg["schema_dirs"]:
            if not Path(folder).is_dir():
                raise ConfigError(f"schema_dirs: {folder} is not a folder")
        for folder in cfg.get("admission_policy_dirs", []):
            if not Path(folder).is_dir():
                raise ConfigError(f"admission_policy_dirs: {folder} is not a folder")
        if kubeconform.selected(cfg):
            kubeconform.find_binary(cfg)
    except (ConfigError, ValueError, kubeconform.KubeconformMissing) as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    click.echo(f"{server_config_path(repo)}: ok")


# ---------------------------------------------------------------------------- rules

@main.command("rules")
@click.option("--repo", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Also list the administrator's rules of this bare repository's server configuration.")
def rules(repo: Path | None) -> None:
    """List every rule: id, family, default severity and summary (and source, when not built in)."""
    from .checks.plugins import load_operator_rules
    from .rulebook import register_all

    register_all()
    load_operator_rules(repo)
    for r in sorted(register_all().values(), key=lambda r: (r.family, r.id)):
        source = "" if r.source == "built-in" else f" [{r.source}]"
        click.echo(f"{r.id:32} {r.family:10} {str(r.severity):8} {r.summary}{source}")


@main.command("explain")
@click.argument("rule_id")
@click.option("--repo", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Also know the administrator's rules of this bare repository's server configuration.")
def explain(rule_id: str, repo: Path | None) -> None:
    """Print the explanation of one rule, with a compliant example."""
    from .checks.plugins import load_operator_rules
    from .rulebook import register_all

    register_all()
    load_operator_rules(repo)
    r = register_all().get(rule_id)
    if r is None:
        click.echo(f"no rule {rule_id!r}; `gitops-hooks rules` lists them", err=True)
        sys.exit(2)
    source = "" if r.source == "built-in" else f", source: {r.source}"
    click.echo(f"{r.id} ({r.family}, default {r.severity}{source})\n\n{r.summary}\n\n{r.explanation}")
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
@click.option("--base", help="Judge transition rules against this commit (default: the branch's upstream).")
@click.option("--output", "-o", "output", type=click.Choice(["text", "json", "junit", "sarif", "github"]),
              default="text", show_default=True, help="Report format, printed on standard output.")
def validate(paths: tuple[Path, ...], rev: str | None, staged: bool, policy_file: Path | None,
             ref: str | None, base: str | None, output: str) -> None:
    """Run the server's checks on files, a folder, a commit (--rev) or the index (--staged).

    Exit codes: 0 clean, 1 findings at error level, 2 usage or configuration error."""
    from .validate import Request, run

    sys.exit(run(Request(tuple(paths), rev, staged, policy_file, ref, output, base)))


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
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write DIR/policy.yaml with copies of the server's schema and policy folders.")
def policy_export(repo: Path, output_dir: Path | None) -> None:
    """Print REPO's policy (without environments) for `gitops-hooks validate --policy FILE`."""
    from .config import ConfigError
    from .validate import UsageProblem, export_policy_dir, export_policy_text

    try:
        if output_dir is None:
            click.echo(export_policy_text(repo), nl=False)
        else:
            for line in export_policy_dir(repo, output_dir):
                click.echo(line)
    except (ConfigError, UsageProblem, OSError) as exc:
        click.echo(f"gitops-hooks policy export: {exc}", err=True)
        sys.exit(2)


# ---------------------------------------------------------------------------- reconciliation

REPO_OPTION = click.option("--repo", type=click.Path(file_okay=False, path_type=Path), default=None,
                           help="The bare repository (default: $GIT_DIR or the current folder).")


def _repo(repo: Path | None) -> Path:
    from .gitrepo import git_dir_from_env

    return repo.resolve() if repo else git_dir_from_env()


@main.group("env")
def env_group() -> None:
    """Manage environments: which ref is applied to which cluster."""


@env_group.command("add")
@click.argument("repo", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("name")
@click.option("--ref", required=True, help="Branch or ref whose tip is applied (main, refs/heads/main).")
@click.option("--path", "folder", default="", help="Folder of the repository holding the desired state.")
@click.option("--kubeconfig", help="Kubeconfig file of the cluster.")
@click.option("--context", help="Context in the kubeconfig.")
@click.option("--in-cluster", is_flag=True, help="Use the service account of the pod the server runs in.")
@click.option("--namespace", default="default", show_default=True, help="Namespace for objects without one.")
@click.option("--var", "variables", multiple=True, help="NAME=value for ${NAME} substitution (repeatable).")
@click.option("--substitute/--no-substitute", default=None,
              help="Replace ${VAR} in the desired state (default: when --var is given, as Flux's postBuild).")
@click.option("--backend", type=click.Choice(["direct", "flux", "argocd"]), default="direct", show_default=True)
@click.option("--prune/--no-prune", default=None, help="Delete objects that left git (default: on).")
@click.option("--allow-empty-prune", is_flag=True, default=None, help="Let an empty desired set prune everything.")
@click.option("--force-conflicts/--no-force-conflicts", default=None,
              help="Take back fields of git changed by other managers (default: on); off fails on a conflict.")
@click.option("--health-timeout", type=float, help="Seconds to wait for health (default 300).")
@click.option("--wait", is_flag=True, default=None, help="Always keep the pusher until healthy.")
@click.option("--flux", "flux", help="KIND/NAMESPACE/NAME of the Flux GitRepository or Kustomization to trigger.")
@click.option("--flux-receiver", help="URL of a Flux Receiver webhook to call instead (backend flux).")
@click.option("--flux-token-file", help="File holding the Receiver's token, to sign calls (generic-hmac).")
@click.option("--argocd", "argocd", help="NAMESPACE/NAME of the Argo CD Application to refresh.")
@click.option("--replace", is_flag=True, help="Replace an environment of the same name.")
def env_add(repo: Path, name: str, ref: str, folder: str, kubeconfig: str | None, context: str | None,
            in_cluster: bool, namespace: str, variables: tuple[str, ...], substitute: bool | None, backend: str,
            prune: bool | None,
            allow_empty_prune: bool | None, force_conflicts: bool | None, health_timeout: float | None,
            wait: bool | None, flux: str | None, flux_receiver: str | None, flux_token_file: str | None,
            argocd: str | None, replace: bool) -> None:
    """Add environment NAME to the bare repository REPO (checked like the configuration file)."""
    from .config import ConfigError
    from .reconcile.commands import env_add as add
    from .reconcile.commands import env_settings
    from .rulebook import register_all

    register_all()  # the configuration is checked whole, its administrator's rules too

    extra: dict[str, object] = {"prune": prune, "allow_empty_prune": allow_empty_prune, "substitute": substitute,
                                "force_conflicts": force_conflicts, "health_timeout": health_timeout, "wait": wait}
    if flux:
        kind, _, rest = flux.partition("/")
        ns, _, fname = rest.rpartition("/")
        extra["flux"] = {"kind": kind, "name": fname, "namespace": ns or "flux-system"}
    if flux_receiver:
        extra["flux"] = {"receiver_url": flux_receiver}
        if flux_token_file:
            extra["flux"]["token_file"] = str(Path(flux_token_file).resolve())  # type: ignore[index]
    if argocd:
        ns, _, app = argocd.rpartition("/")
        extra["argocd"] = {"application": app, "namespace": ns or "argocd"}
    try:
        settings = env_settings(ref, folder, kubeconfig, context, in_cluster, namespace, list(variables), backend, extra)
    except ConfigError as exc:
        click.echo(f"gitops-hooks env add: {exc}", err=True)
        sys.exit(2)
    sys.exit(add(repo, name, settings, replace, sys.stdout))


@env_group.command("list")
@click.argument("repo", type=click.Path(exists=True, file_okay=False, path_type=Path))
def env_list(repo: Path) -> None:
    """List REPO's environments."""
    from .reconcile.commands import env_list as listing

    sys.exit(listing(repo, sys.stdout))


@env_group.command("remove")
@click.argument("repo", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("name")
def env_remove(repo: Path, name: str) -> None:
    """Remove environment NAME (the cluster's objects are left alone)."""
    from .reconcile.commands import env_remove as remove

    sys.exit(remove(repo, name, sys.stdout))


@main.command("history")
@click.argument("name")
@REPO_OPTION
@click.option("--limit", type=int, default=50, show_default=True)
def history(name: str, repo: Path | None, limit: int) -> None:
    """Show the reconciles of environment NAME recorded in refs/notes/gitops, newest first."""
    from .reconcile.commands import history as show

    sys.exit(show(_repo(repo), name, limit, sys.stdout))


@main.command("reconcile")
@click.argument("names", nargs=-1)
@REPO_OPTION
@click.option("--wait", is_flag=True, help="Wait until the applied objects are healthy.")
@click.option("--every", "every", metavar="DURATION",
              help="Keep reconciling (all environments, or NAMES) every DURATION (30s, 5m, 1h) until stopped.")
@click.option("--rounds", type=int, default=0, hidden=True, help="With --every: stop after this many rounds.")
@click.option("--health-of", hidden=True, help="Internal: the background health check of a commit.")
def reconcile(names: tuple[str, ...], repo: Path | None, wait: bool, every: str | None, rounds: int,
              health_of: str | None) -> None:
    """Apply environment NAME's newest accepted commit now (corrects drift; picks up pending work); with
    --every, run rounds over NAMES (or every environment) until stopped."""
    from .reconcile.commands import reconcile as run
    from .reconcile.commands import reconcile_every

    if every:
        from .reconcileserver import pushes_served

        sys.exit(reconcile_every(_repo(repo), list(names), every, rounds, sys.stdout, pushes_served))
    if len(names) != 1:
        click.echo("gitops-hooks reconcile: name one environment (or give --every to reconcile several)", err=True)
        sys.exit(2)
    sys.exit(run(_repo(repo), names[0], wait, health_of, sys.stdout))


@main.command("status")
@click.argument("names", nargs=-1)
@REPO_OPTION
@click.option("--output", "-o", "output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(names: tuple[str, ...], repo: Path | None, output: str) -> None:
    """Per environment (NAMES, or all): the last applied commit, whether the live state matches it, the last
    round and any pending record. Exit 0 when all are in place, 1 otherwise."""
    from .reconcile.commands import status as show

    sys.exit(show(_repo(repo), list(names), output, sys.stdout))


@main.command("diff")
@click.argument("name")
@REPO_OPTION
def diff(name: str, repo: Path | None) -> None:
    """Show live against desired for environment NAME (server-side dry run); exit 1 on drift."""
    from .reconcile.commands import diff as show

    sys.exit(show(_repo(repo), name, sys.stdout))


# ---------------------------------------------------------------------------- hosted git

@main.command("serve")
@click.option("--config", "config_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The service's YAML configuration (schemas/serve.schema.json).")
@click.option("--check", is_flag=True, help="Check the configuration (and read its secret files), then exit.")
def serve(config_file: Path, check: bool) -> None:
    """The webhook service for GitHub, GitLab, Bitbucket, Gitea and Forgejo: POST deliveries to /webhook."""
    try:
        from .hosted.config import ServeConfigError, load
        from .hosted.service import describe, run
    except Exception as exc:  # noqa: BLE001 - one line
        click.echo(f"gitops-hooks serve: cannot load the service ({_broken(exc)})", err=True)
        sys.exit(2)
    from .rulebook import register_all

    register_all()  # the repositories' policies are checked whole, their administrator's rules too
    try:
        config = load(config_file)
        lines = describe(config)
    except (ServeConfigError, ValueError) as exc:
        click.echo(f"gitops-hooks serve: {exc}", err=True)
        sys.exit(2)
    if check:
        for line in lines:
            click.echo(line)
        sys.exit(0)
    sys.exit(run(config))
