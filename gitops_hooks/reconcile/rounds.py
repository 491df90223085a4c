"""Reconciliation on its own: rounds that drive every environment back to its ref's tip.

`run_round` reconciles the named environments of one bare repository once (all of them when none are
named) and returns one `RoundResult` each; `every` repeats it until stopped. A round goes through the
same lock and pending record as a push: a push in progress makes the environment `busy` for this round
(the push applies the newest commit itself), a failure leaves the pending record for the next round or
push. A round that finds everything in place writes no note and starts no health check; the last round
of each environment is kept in `<bare>/gitops-hooks/state/<env>.round.json` for `gitops-hooks status`.
Neither function prints: `emit` gets one line per environment and round.

    from gitops_hooks.reconcile.rounds import every, run_round
    results = run_round(git_dir, server_config, [], print)   # [RoundResult(environment='prod', result='unchanged', ...)]
    every(git_dir, load_config, [], 300.0, print, stop_event)   # wait=...: what to do between rounds
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import audit, environments, state
from .environments import Environment
from .run import Options, Outcome, drive, request, tip

Emit = Callable[[str], None]
ROUND_PUSHER = "gitops-hooks reconcile --every"


@dataclass(frozen=True)
class RoundResult:
    environment: str
    result: str  # unchanged, corrected, applied, failed, busy, skipped
    commit: str = ""
    corrected: int = 0  # objects created, configured or pruned back to git's state (same commit)
    corrections: tuple[str, ...] = ()  # `deployment.apps/web -n apps: took back .spec.replicas from kubectl (scale)`
    summary: str = ""
    time: str = ""
    seconds: float = 0.0

    def line(self) -> str:
        """The round's one log line for this environment."""
        what = f"corrected {self.corrected}" if self.result == "corrected" else self.result
        at = f" at {self.commit[:12]}" if self.commit else ""
        text = f"{self.time} {self.environment}: {what}{at} ({self.seconds:.2f} s)"
        detail = "; ".join(self.corrections) if self.corrections else self.summary
        return f"{text}: {detail}" if detail and self.result != "unchanged" else text


def run_round(git_dir: Path, server_config: Mapping[str, Any], env_names: Sequence[str], emit: Emit) -> list[RoundResult]:
    """One round over the named environments (all when empty); one line each to `emit`, never an exception."""
    envs = environments.all_environments(server_config)
    if env_names:
        known = {e.name: e for e in envs}
        envs = [known[n] if n in known else environments.named(server_config, n) for n in env_names]
    out = []
    for env in envs:
        result = _one(git_dir, server_config, env)
        _keep(git_dir, result)
        emit(result.line())
        out.append(result)
    return out


def _one(git_dir: Path, server: Mapping[str, Any], env: Environment) -> RoundResult:
    started, when = time.monotonic(), audit.now()

    def done(result: str, commit: str = "", summary: str = "", corrected: int = 0,
             corrections: tuple[str, ...] = ()) -> RoundResult:
        return RoundResult(env.name, result, commit, corrected, corrections, summary, when,
                           time.monotonic() - started)

    if env.backend != "direct":
        return done("skipped", summary=f"backend {env.backend}: the operator reconciles on its own")
    try:
        commit = tip(git_dir, env.ref)
        if commit is None:
            return done("failed", summary=f"{env.ref} does not exist")
        request(git_dir, env, commit, ROUND_PUSHER)
        outcomes = drive(git_dir, server, env, lambda _: None, Options(ROUND_PUSHER, background=True, periodic=True))
    except Exception as exc:  # noqa: BLE001 - a round never stops the next one; the pending record stays
        return done("failed", summary=f"internal error: {type(exc).__name__}: {exc}".splitlines()[0][:300])
    applied = [o for o in outcomes if o.result != "coalesced"]
    if not applied:
        return done("busy", summary="a reconcile is running; it applies the newest commit")
    last = applied[-1]
    return _verdict(last, done)


def _verdict(o: Outcome, done: Callable[..., RoundResult]) -> RoundResult:
    cs = o.changes
    if o.result == "failed":
        return done("failed", o.commit, o.summary.removeprefix("failed: "))
    fixes = tuple(audit.changes_of(cs).get("corrected", []))
    if o.previous and o.previous != o.commit:
        return done("applied", o.commit, cs.summary(), cs.changed, fixes)
    if cs.changed:
        others = tuple(f"{c.subject} {c.action}" for c in cs.changes
                       if c.action in ("created", "pruned") or (c.action == "configured" and not c.taken))
        return done("corrected", o.commit, cs.summary(), cs.changed, fixes + others)
    return done("unchanged", o.commit)


def round_path(git_dir: Path, env: str) -> Path:
    return state.state_dir(git_dir) / f"{env}.round.json"


def _keep(git_dir: Path, result: RoundResult) -> None:
    try:
        state.atomic_write(round_path(git_dir, result.environment), json.dumps(asdict(result), indent=1))
    except OSError:
        pass  # the round happened; only `status` misses it


def last_round(git_dir: Path, env: str) -> RoundResult | None:
    try:
        data = json.loads(round_path(git_dir, env).read_text(encoding="utf-8"))
        data["corrections"] = tuple(data.get("corrections") or ())
        return RoundResult(**data)
    except (OSError, ValueError, TypeError):
        return None


def every(git_dir: Path, load_config: Callable[[], Mapping[str, Any]], env_names: Sequence[str], interval: float,
          emit: Emit, stop: threading.Event, rounds: int = 0, wait: Callable[[float], object] | None = None) -> None:
    """Run a round every `interval` seconds until `stop` is set (or `rounds` rounds, when not 0). The
    configuration is read again each round; a round that cannot even start is logged and the next one runs.
    Between rounds, `wait(seconds)` (default: `stop.wait`) returns when the time is up or `stop` is set: the
    command's version serves pushes meanwhile (reconcileserver.py)."""
    wait = wait or stop.wait
    count = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            run_round(git_dir, load_config(), env_names, emit)
        except Exception as exc:  # noqa: BLE001 - the configuration may be broken for a while: say so, go on
            emit(f"{audit.now()} round failed: {type(exc).__name__}: {exc}".splitlines()[0][:300])
        count += 1
        if rounds and count >= rounds:
            return
        wait(max(0.0, interval - (time.monotonic() - started)))
