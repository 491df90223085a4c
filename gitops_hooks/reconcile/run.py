"""One reconcile of one environment, and the loop that keeps them one at a time.

`drive` takes the environment's lock without waiting: if another process holds it, that process will
pick up the pending record this push left and apply the newest commit (pushes coalesce). The holder
loops until no record is pending, always applying the ref's current tip. A failed run keeps the record
(with the error and the attempt count) for the next push or `gitops-hooks reconcile`.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import audit, memo, state
from .changes import ChangeSet
from .desired import DesiredSet, desired_set, folder_exists
from .environments import Environment

Emit = Callable[[str], None]
WATCH_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job", "CustomResourceDefinition"})


@dataclass(frozen=True)
class Options:
    pusher: str = "unknown"
    wait: bool = False  # wait for health here instead of in a background worker
    background: bool = True  # start the background health worker when not waiting
    periodic: bool = False  # a round of `reconcile --every`: no note and no health check when nothing changed


@dataclass(frozen=True)
class Outcome:
    environment: str
    commit: str
    result: str  # applied, failed, triggered, coalesced, nothing
    summary: str = ""
    changes: ChangeSet = ChangeSet()
    previous: str = ""  # the commit applied before this one ('' when unknown)


def tip(git_dir: Path, ref: str) -> str | None:
    import pygit2

    repo = pygit2.Repository(str(git_dir))
    try:
        return str(repo.references[ref].peel(pygit2.Commit).id)
    except (KeyError, ValueError, pygit2.GitError):
        return None


def request(git_dir: Path, env: Environment, commit: str, pusher: str) -> None:
    """Say that `env` should be at `commit` (a pending record), keeping the attempt count."""
    old = state.read_pending(git_dir, env.name)
    attempts = old.attempts if old else 0
    if old is not None and old.commit == commit:
        pusher = old.pusher  # the commit is still the one its pusher sent; a retry does not change who
    state.write_pending(git_dir, env.name, state.Pending(commit, env.ref, pusher, audit.now(), attempts,
                                                         old.last_error if old else ""))


def drive(git_dir: Path, server: Mapping[str, Any], env: Environment, emit: Emit, opts: Options) -> list[Outcome]:
    outcomes: list[Outcome] = []
    while True:
        with state.env_lock(git_dir, env.name) as mine:
            if not mine:
                emit(f"gitops-hooks: {env.name}: a reconcile is running; it will apply the newest commit next")
                return outcomes + [Outcome(env.name, "", "coalesced")]
            failed = _loop(git_dir, server, env, emit, opts, outcomes)
        if failed or state.read_pending(git_dir, env.name) is None:
            return outcomes


def _loop(git_dir: Path, server: Mapping[str, Any], env: Environment, emit: Emit, opts: Options,
          outcomes: list[Outcome]) -> bool:
    while True:
        pending = state.read_pending(git_dir, env.name)
        if pending is None:
            return False
        commit = tip(git_dir, env.ref) or pending.commit
        outcome = reconcile_commit(git_dir, server, env, commit, emit, replace(opts, pusher=pending.pusher),
                                   pending.attempts + 1)
        outcomes.append(outcome)
        if outcome.result == "failed":
            state.write_pending(git_dir, env.name, replace(pending, commit=commit, attempts=pending.attempts + 1,
                                                           last_error=outcome.summary[:500]))
            return True
        state.clear_pending(git_dir, env.name, pending.commit)


def reconcile_commit(git_dir: Path, server: Mapping[str, Any], env: Environment, commit: str, emit: Emit,
                     opts: Options, attempt: int = 1) -> Outcome:
    from ..gitrepo import GitTree, open_repository
    from . import backends
    from .kube import Kube, KubeError

    emit(f"gitops-hooks: {env.name}: applying {commit[:12]} ({env.ref}, {env.path or '.'})")
    last = memo.load(git_dir, env.name)
    snapshot = GitTree(open_repository(git_dir), commit)
    if env.backend != "direct":
        dset = DesiredSet((), ())  # the operator reads the repository itself
    else:
        if not folder_exists(snapshot, env):
            emit(f"gitops-hooks: {env.name}: warning: {env.path} does not exist at {commit[:12]}: the desired set is empty")
        dset = _desired(git_dir, snapshot, env, server, commit)
    watch: list[dict[str, str]] = []
    if not dset.ok:
        first = next(f for f in dset.findings if str(f.severity) == "error")
        cs = ChangeSet(error=f"the desired state cannot be built: {first.path}:{first.line}: {first.message}")
    else:
        try:
            kube = Kube(env) if backends.needs_cluster(env) else None
        except KubeError as exc:
            cs = ChangeSet(error=exc.message)
        else:
            try:
                cs, applier = backends.run(kube, env, dset, emit, known=last.entries)
                if applier is not None:
                    _remember(git_dir, env, commit, cs, applier, last)
                if applier is not None and cs.ok:
                    watch = _watch_list(applier)
            finally:
                if kube is not None:
                    kube.close()
    result = ("triggered" if env.backend != "direct" else "applied") if cs.ok else "failed"
    settled = bool(watch) and not cs.changed and not opts.wait  # nothing applied, so nothing rolls out
    if settled:
        watch = []
    record = audit.Record(env.name, commit, env.ref, opts.pusher, audit.now(), result, audit.changes_of(cs),
                          cs.error, "waiting" if watch else "", (), attempt)
    quiet = opts.periodic and audit.quiet(record) and last.commit == commit
    if not quiet:
        audit.write(git_dir, record)
    summary = _summary(cs, result)
    emit(f"gitops-hooks: {env.name}: {summary}")
    if settled and not quiet:
        emit(f"gitops-hooks: {env.name}: nothing changed, so no health check (push with -o gitops.wait to check)")
    if watch and not quiet:
        _health(git_dir, env, commit, watch, emit, opts)
    return Outcome(env.name, commit, result, summary, cs, last.commit)


_DESIRED: dict[str, tuple[str, DesiredSet]] = {}  # per repository and environment: the last desired set built


def _desired(git_dir: Path, snapshot: Any, env: Environment, server: Mapping[str, Any], commit: str) -> DesiredSet:
    """The desired set of a commit, built once per process: rounds of the same commit reuse it."""
    fingerprint = commit + repr(env) + json.dumps(server, sort_keys=True, default=str)
    slot = f"{git_dir}|{env.name}"
    hit = _DESIRED.get(slot)
    if hit is not None and hit[0] == fingerprint:
        return hit[1]
    dset = desired_set(snapshot, env, server)
    if dset.ok:
        _DESIRED[slot] = (fingerprint, dset)
    return dset


def _remember(git_dir: Path, env: Environment, commit: str, cs: ChangeSet, applier: Any, last: memo.Memo) -> None:
    """Keep what this run left in place; the commit only once every object of it is."""
    if cs.ok and last.commit == commit and applier.applied == last.entries:
        return  # a no-op: nothing to write
    if cs.ok:
        last = memo.Memo(commit, audit.now())
    memo.save(git_dir, env.name, memo.Memo(last.commit, last.time, applier.applied))


def _summary(cs: ChangeSet, result: str) -> str:
    text = f"{result}: {cs.summary()}"
    if cs.error:
        text += f"; {cs.error}"
    for note in cs.notes:
        text += f"; {note}"
    return text


def _watch_list(applier: Any) -> list[dict[str, str]]:
    out = []
    for t in applier.targets:
        if t.desired.kind in WATCH_KINDS or (t.desired.obj.get("status") or {}).get("conditions") is not None \
                or _has_conditions_kind(t.desired.kind):
            info = applier.kube.resource(t.desired.api_version, t.desired.kind)
            out.append({"subject": t.subject, "namespace": t.namespace, "path": info.path(t.namespace, t.desired.name)})
    return out


def _has_conditions_kind(kind: str) -> bool:
    """Custom resources are watched for status.conditions (Ready, Stalled, Reconciling), per kstatus."""
    from .order import OTHERS, stage_of

    return stage_of(kind) == OTHERS and kind not in ("Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                                                      "NetworkPolicy")


def watch_path(git_dir: Path, env: str) -> Path:
    return state.state_dir(git_dir) / f"{env}.health.json"


def _health(git_dir: Path, env: Environment, commit: str, watch: list[dict[str, str]], emit: Emit,
            opts: Options) -> None:
    state.atomic_write(watch_path(git_dir, env.name), json.dumps({"commit": commit, "objects": watch}))
    if opts.wait:
        emit(f"gitops-hooks: {env.name}: waiting up to {env.health_timeout:g} s for {_count(watch)} to be healthy")
        health_check(git_dir, env, commit, emit)
    elif opts.background:
        _spawn_worker(git_dir, env, commit)
        emit(f"gitops-hooks: {env.name}: health check of {_count(watch)} continues in the background "
             f"(`gitops-hooks history {env.name}`; push with -o gitops.wait to wait)")


def _count(items: list[dict[str, str]]) -> str:
    return f"{len(items)} object" + ("" if len(items) == 1 else "s")


def health_check(git_dir: Path, env: Environment, commit: str, emit: Emit) -> str:
    from .health import Watched, verdict, wait
    from .kube import Kube, KubeError

    try:
        data = json.loads(watch_path(git_dir, env.name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    if data.get("commit") != commit:
        return ""
    objects = [Watched(o["subject"], o["namespace"], o["path"]) for o in data.get("objects", [])]
    try:
        kube = Kube(env)
    except KubeError as exc:
        audit.update_health(git_dir, env.name, commit, "unknown", [exc.message])
        return "unknown"
    try:
        results = wait(kube, objects, env.health_timeout, emit, concurrency=env.concurrency)
    finally:
        kube.close()
    outcome = verdict(results)
    detail = [h.line() for h in results if h.state != "healthy"]
    audit.update_health(git_dir, env.name, commit, outcome, detail)
    emit(f"gitops-hooks: {env.name}: health: {outcome}")
    return outcome


def _spawn_worker(git_dir: Path, env: Environment, commit: str) -> None:
    from ..runtime import NO_EXECUTABLE, log_dir, suite_executable

    exe = suite_executable()
    if exe is None:
        raise RuntimeError(NO_EXECUTABLE)
    d = log_dir(git_dir)
    d.mkdir(parents=True, exist_ok=True)
    log = (d / f"health-{env.name}.log").open("a", encoding="utf-8")
    try:
        subprocess.Popen([exe, "reconcile", env.name, "--repo", str(git_dir), "--health-of", commit],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True)
    finally:
        log.close()
