"""What the command line and the hooks call: each function takes parsed arguments and returns an exit code."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TextIO

from .. import config as configmod
from . import audit, environments, state

Emit = Callable[[str], None]


def one_line_errors(command: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """An unexpected error ends the command with one line (exit 2); the traceback goes to the log."""
    def wrap(fn: Callable[..., int]) -> Callable[..., int]:
        def run(repo: Path, *args: Any) -> int:
            try:
                return fn(repo, *args)
            except Exception as exc:  # noqa: BLE001 - never a traceback to the administrator's terminal
                import traceback

                from ..runtime import write_log

                path = write_log(repo, traceback.format_exc()) if (repo / "HEAD").exists() else None
                one = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                sys.stderr.write(f"gitops-hooks {command}: internal error ({one})"
                                 + (f"; details in {path}" if path else "") + "\n")
                return 2
        run.__doc__ = fn.__doc__
        return run
    return wrap


def emitter(out: TextIO) -> Emit:
    def emit(line: str) -> None:
        out.write(line + "\n")
        out.flush()
    return emit


def _load(repo: Path) -> dict[str, Any]:
    if not (repo / "HEAD").exists():
        raise configmod.ConfigError(f"{repo} is not a bare git repository (give it with --repo)")
    return configmod.load_server_config(repo)


# ---------------------------------------------------------------------------- env add / list / remove

def env_settings(ref: str, path: str, kubeconfig: str | None, context: str | None, in_cluster: bool, namespace: str,
                 variables: list[str], backend: str, options: Mapping[str, Any]) -> dict[str, Any]:
    if in_cluster and (kubeconfig or context):
        raise configmod.ConfigError("--in-cluster uses the service account of the pod; leave out --kubeconfig and --context")
    receiver = bool((options.get("flux") or {}).get("receiver_url"))
    if not (in_cluster or kubeconfig or receiver):
        raise configmod.ConfigError("say which cluster: --kubeconfig FILE [--context NAME], or --in-cluster")
    if backend in ("flux", "argocd") and not options.get(backend):
        raise configmod.ConfigError(f"--backend {backend} needs --{backend} (which object to trigger)")
    cluster: dict[str, Any] = {"in_cluster": True} if in_cluster else {}
    if kubeconfig:
        cluster["kubeconfig"] = str(Path(kubeconfig).resolve())
    if context:
        cluster["context"] = context
    out: dict[str, Any] = {"ref": ref, "path": path.strip("/"), "namespace": namespace, "backend": backend}
    if cluster:
        out["cluster"] = cluster
    pairs = {}
    for item in variables:
        name, sep, value = item.partition("=")
        if not sep:
            raise configmod.ConfigError(f"--var {item!r}: write NAME=value")
        pairs[name] = value
    if pairs:
        out["variables"] = pairs
    out.update({k: v for k, v in options.items() if v is not None})
    return out


def env_add(repo: Path, name: str, settings: dict[str, Any], replace: bool, out: TextIO) -> int:
    try:
        out.write(environments.add(repo, name, settings, replace) + "\n")
    except configmod.ConfigError as exc:
        sys.stderr.write(f"gitops-hooks env add: {exc}\n")
        return 2
    return 0


def env_remove(repo: Path, name: str, out: TextIO) -> int:
    try:
        out.write(environments.remove(repo, name) + "\n")
    except configmod.ConfigError as exc:
        sys.stderr.write(f"gitops-hooks env remove: {exc}\n")
        return 2
    return 0


def env_list(repo: Path, out: TextIO) -> int:
    try:
        lines = environments.listing(repo)
    except configmod.ConfigError as exc:
        sys.stderr.write(f"gitops-hooks env list: {exc}\n")
        return 2
    for line in lines or ["no environments: pushes are accepted, not applied"]:
        out.write(line + "\n")
    return 0


# ---------------------------------------------------------------------------- history, reconcile, diff

@one_line_errors("history")
def history(repo: Path, name: str, limit: int, out: TextIO) -> int:
    try:
        _load(repo)
    except configmod.ConfigError as exc:
        sys.stderr.write(f"gitops-hooks history: {exc}\n")
        return 2
    records = audit.history(repo, name, limit)
    if not records:
        out.write(f"no reconcile recorded for {name}\n")
    for r in records:
        health = f", health {r.health}" if r.health else ""
        health += f", still in place at {r.checked}" if r.checked else ""
        out.write(f"{r.time}  {r.commit[:12]}  {r.result:9} {r.pusher}: {r.counts()}{health}\n")
        out.write(f"    {_subject(repo, r.commit)}\n")
        if r.error:
            out.write(f"    error: {r.error}\n")
        for item in r.changes.get("corrected", []):
            out.write(f"    corrected: {item}\n")
        for item in r.changes.get("failed", []):
            out.write(f"    failed: {item}\n")
        for item in r.health_detail:
            out.write(f"    {item}\n")
    pending = state.read_pending(repo, name)
    if pending is not None:
        out.write(f"pending: {pending.commit[:12]} since {pending.since}, failed attempts: {pending.attempts}"
                  + (f"; last error: {pending.last_error}" if pending.last_error else "") + "\n")
    return 0


def _subject(repo: Path, commit: str) -> str:
    import pygit2

    try:
        obj = pygit2.Repository(str(repo))[commit]
        return str(getattr(obj, "message", "")).splitlines()[0][:100] if isinstance(obj, pygit2.Commit) else ""
    except (KeyError, ValueError, IndexError, pygit2.GitError):
        return "(commit not found)"


@one_line_errors("reconcile")
def reconcile(repo: Path, name: str, wait: bool, health_of: str | None, out: TextIO) -> int:
    from .run import Options, drive, health_check, request, tip

    emit = emitter(out)
    try:
        server = _load(repo)
        env = environments.named(server, name)
    except configmod.ConfigError as exc:
        sys.stderr.write(f"gitops-hooks reconcile: {exc}\n")
        return 2
    if health_of:
        return 0 if health_check(repo, env, health_of, emit) in ("healthy", "") else 1
    commit = tip(repo, env.ref)
    if commit is None:
        sys.stderr.write(f"gitops-hooks reconcile: {env.ref} does not exist in {repo}\n")
        return 2
    request(repo, env, commit, audit.pusher(os.environ) + " via gitops-hooks reconcile")
    outcomes = drive(repo, server, env, emit, Options(audit.pusher(os.environ), wait=wait, background=False))
    if any(o.result == "failed" for o in outcomes):
        return 1
    if any(o.result == "coalesced" for o in outcomes):
        return 0
    return 0


@one_line_errors("diff")
def diff(repo: Path, name: str, out: TextIO) -> int:
    """Live against desired, by a server-side dry run; exit 1 when they differ, as `kubectl diff` does."""
    from ..gitrepo import GitTree, open_repository
    from .apply import Applier
    from .desired import desired_set
    from .kube import Kube, KubeError
    from .plan import diff_text
    from .run import tip

    try:
        server = _load(repo)
        env = environments.named(server, name)
    except configmod.ConfigError as exc:
        sys.stderr.write(f"gitops-hooks diff: {exc}\n")
        return 2
    commit = tip(repo, env.ref)
    if commit is None:
        sys.stderr.write(f"gitops-hooks diff: {env.ref} does not exist\n")
        return 2
    dset = desired_set(GitTree(open_repository(repo), commit), env, server)
    if not dset.ok:
        for f in dset.findings:
            sys.stderr.write(f"{f.path}:{f.line}:{f.column}: {f.message}\n")
        return 2
    try:
        kube = Kube(env)
    except KubeError as exc:
        sys.stderr.write(f"gitops-hooks diff: {exc.message}\n")
        return 2
    pruned: list[str] = []
    applier = Applier(kube, env, lambda line: pruned.append(line) if " pruned" in line else None, dry_run=True,
                      force=True)
    cs = applier.run(dset)
    kube.close()
    if cs.error:
        sys.stderr.write(f"gitops-hooks diff: {cs.error}\n")
        return 2
    text, count = diff_text(applier)
    out.write(text)
    for line in pruned:
        out.write(f"would prune {line.removesuffix(' pruned')}\n")
    for c in cs.of("failed"):
        out.write(f"would fail: {c.line()}\n")
    drift = count + len(pruned) + len(cs.of("failed"))
    out.write(f"{name} at {commit[:12]}: differing objects: {count}, to prune: {len(pruned)}\n")
    return 1 if drift else 0


# ---------------------------------------------------------------------------- pre-receive: dry run

def dry_run(repo: Any, updates: list[Any], server: Mapping[str, Any], emit: Emit) -> None:
    """`git push -o gitops.dry-run`: the plan of every environment the push touches, by server-side dry run."""
    from ..gitrepo import GitTree
    from . import backends
    from .desired import desired_set
    from .kube import Kube, KubeError

    touched = False
    for u in updates:
        if u.is_delete:
            continue
        for env in environments.for_ref(server, u.ref):
            touched = True
            emit(f"gitops-hooks: {env.name}: plan for {u.short()} (server dry run, nothing changes):")
            dset = desired_set(GitTree(repo, u.new), env, server)
            if not dset.ok:
                emit(f"gitops-hooks: {env.name}: the desired state cannot be built; see the findings above")
                continue
            try:
                kube = Kube(env) if backends.needs_cluster(env) else None
            except KubeError as exc:
                emit(f"gitops-hooks: {env.name}: {exc.message}")
                continue
            try:
                cs, _ = backends.run(kube, env, dset, lambda line: emit(f"{line} (server dry run)"), dry_run=True)
            finally:
                if kube is not None:
                    kube.close()
            emit(f"gitops-hooks: {env.name}: would be: {cs.summary()}" + (f"; {cs.error}" if cs.error else ""))
    if not touched:
        emit("gitops-hooks: dry run: no environment follows the pushed refs")


def environment_findings(repo: Any, update: Any, server: Mapping[str, Any]) -> list[Any]:
    """Pre-receive: what in the pushed tree would make reconciliation fail (unknown variables, ...)."""
    from ..gitrepo import GitTree
    from .desired import desired_set

    out: list[Any] = []
    for env in environments.for_ref(server, update.ref):
        if env.backend != "direct":
            continue  # the operator renders and substitutes with its own settings
        found = desired_set(GitTree(repo, update.new), env, server).findings
        out.extend(f for f in found if f.rule.startswith("reconcile-"))
    return out


# ---------------------------------------------------------------------------- rounds and status

def duration(text: str) -> float:
    """`90`, `30s`, `5m`, `1h` in seconds; ValueError with the reason otherwise."""
    units = {"s": 1, "m": 60, "h": 3600}
    t = text.strip().lower()
    scale = units.get(t[-1:], 0)
    try:
        value = float(t[:-1] if scale else t) * (scale or 1)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration: write 30s, 5m or 1h") from None
    if value < 1:
        raise ValueError(f"{text!r} is too short: rounds need at least 1 s between them")
    return value


# Between rounds: given the repository, the stop event and the log, a context that yields what to do while
# waiting (a function of the seconds to wait) and a note for the first log line (reconcileserver.py).
Between = Callable[[Path, Any, Emit], AbstractContextManager[tuple[Callable[[float], object], str]]]


@one_line_errors("reconcile")
def reconcile_every(repo: Path, names: list[str], interval: str, rounds: int, out: TextIO,
                    between: Between | None = None) -> int:
    """Rounds until stopped (SIGTERM or SIGINT end it after the round in progress, or between rounds
    after the push being served)."""
    import signal
    import threading
    from contextlib import nullcontext

    from .rounds import every

    try:
        seconds = duration(interval)
        server = _load(repo)
        for n in names:
            environments.named(server, n)
    except (ValueError, configmod.ConfigError) as exc:
        sys.stderr.write(f"gitops-hooks reconcile: {exc}\n")
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    which = ", ".join(names) if names else "every environment"
    emit = emitter(out)
    with between(repo, stop, emit) if between else nullcontext((stop.wait, "")) as (wait, note):
        emit(f"{audit.now()} gitops-hooks: reconciling {which} of {repo} every {seconds:g} s{note}")
        every(repo, lambda: _load(repo), names, seconds, emit, stop, rounds, wait)
    emit(f"{audit.now()} gitops-hooks: stopped")
    return 0


@one_line_errors("status")
def status(repo: Path, names: list[str], output: str, out: TextIO) -> int:
    """Per environment: the last applied commit, whether the live state matches it, the last round and any
    pending record. Exit 0 when every environment is in place, 1 otherwise, 2 on an error."""
    import json

    try:
        server = _load(repo)
        envs = [environments.named(server, n) for n in names] if names else environments.all_environments(server)
    except configmod.ConfigError as exc:
        sys.stderr.write(f"gitops-hooks status: {exc}\n")
        return 2
    reports = [_status_of(repo, server, env) for env in envs]
    if output == "json":
        out.write(json.dumps({"environments": reports}, indent=2) + "\n")
    else:
        for r in reports:
            _status_text(r, out)
    return 0 if all(r["in_place"] for r in reports) else 1


def _status_of(repo: Path, server: Mapping[str, Any], env: environments.Environment) -> dict[str, Any]:
    from . import memo
    from .rounds import last_round
    from .run import tip

    last = memo.load(repo, env.name)
    pending = state.read_pending(repo, env.name)
    rnd = last_round(repo, env.name)
    head = tip(repo, env.ref) or ""
    report: dict[str, Any] = {
        "environment": env.name, "ref": env.ref, "tip": head, "applied_commit": last.commit,
        "applied_at": last.time, "live": "unknown", "drifted": [], "error": "",
        "last_round": None if rnd is None else {"time": rnd.time, "result": rnd.result, "commit": rnd.commit,
                                               "corrected": rnd.corrected, "summary": rnd.summary},
        "pending": None if pending is None else {"commit": pending.commit, "since": pending.since,
                                                 "attempts": pending.attempts, "last_error": pending.last_error},
    }
    if env.backend != "direct":
        report["live"] = f"not checked (backend {env.backend})"
    elif not last.commit:
        report["live"] = "not checked: nothing applied yet"
    else:
        drifted, error = _drift(repo, server, env, last)
        report.update(drifted=drifted, error=error, live="unknown" if error else ("drifted" if drifted else "in place"))
    report["in_place"] = report["live"] == "in place" and pending is None and head == last.commit
    return report


def _drift(repo: Path, server: Mapping[str, Any], env: environments.Environment, last: Any) -> tuple[list[str], str]:
    """Objects whose live state differs from the last applied commit: the memo's cheap check, then a
    server-side dry run of the objects it cannot vouch for."""
    from ..gitrepo import GitTree, open_repository
    from .apply import Applier, normalized
    from .desired import desired_set
    from .kube import Kube, KubeError

    dset = desired_set(GitTree(open_repository(repo), last.commit), env, server)
    if not dset.ok:
        return [], "the desired state of the applied commit cannot be built"
    try:
        kube = Kube(env)
    except KubeError as exc:
        return [], exc.message
    pruned: list[str] = []
    try:
        applier = Applier(kube, env, lambda line: pruned.append(line) if " pruned" in line else None, dry_run=True,
                          force=True, known=last.entries)
        cs = applier.run(dset)
    finally:
        kube.close()
    if cs.error:
        return [], cs.error
    drifted = [f"{c.subject}" + (f" -n {c.namespace}" if c.namespace else "") + " is missing"
               for c in cs.of("created")] + [c.line() for c in cs.of("failed")]
    for (group, kind, ns, name), (live, would) in sorted(applier.dry_results.items()):
        if live is not None and normalized(live) != normalized(would):
            label = f"{kind.lower()}.{group}/{name}" if group else f"{kind.lower()}/{name}"
            drifted.append(label + (f" -n {ns}" if ns else "") + " differs")
    return drifted + [f"{line.removesuffix(' pruned')} is no longer in git" for line in pruned], ""


def _status_text(r: Mapping[str, Any], out: TextIO) -> None:
    applied = f"{r['applied_commit'][:12]} at {r['applied_at']}" if r["applied_commit"] else "nothing yet"
    out.write(f"{r['environment']} ({r['ref']}): applied {applied}\n")
    if r["tip"] and r["tip"] != r["applied_commit"]:
        out.write(f"    newer commit not applied yet: {r['tip'][:12]}\n")
    out.write(f"    live: {r['live']}" + (f" ({r['error']})" if r["error"] else "") + "\n")
    for item in r["drifted"]:
        out.write(f"        {item}\n")
    rnd = r["last_round"]
    out.write("    last round: " + (f"{rnd['time']} {rnd['result']}" + (f" ({rnd['summary']})" if rnd["summary"] else "")
                                    if rnd else "none") + "\n")
    p = r["pending"]
    if p:
        out.write(f"    pending: {p['commit'][:12]} since {p['since']}, failed attempts: {p['attempts']}"
                  + (f"; last error: {p['last_error']}" if p["last_error"] else "") + "\n")
