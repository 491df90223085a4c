"""The pre-receive gate: judge every ref update of a push, refuse the push if any ref fails.

Fails closed: a broken configuration or an internal error refuses the push with a one-line reason; the
traceback goes to a log file inside the bare repository.
"""

from __future__ import annotations

import copy
import gc
import io
import logging
import signal
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from . import config as configmod
from . import gateclient
from .cache import for_repository
from .findings import Finding, finding
from .gitrepo import GitTree, RefUpdate, Snapshot, open_repository, parse_ref_updates
from .pipeline import Result, Stats, check_snapshot, make_context
from .rulebook import register_all
from .runtime import write_log

log = logging.getLogger("gitops_hooks")

PREFIX = "gitops-hooks"
AUDIT_REF = "refs/notes/gitops"  # the reconcile audit notes (reconcile/audit.py NOTES_REF)


class GateTimeout(BaseException):
    """Raised by the timer. A BaseException, so that no `except Exception` in a check can swallow it."""


def push_options(env: Mapping[str, str]) -> list[str]:
    try:
        count = int(env.get("GIT_PUSH_OPTION_COUNT", "0"))
    except ValueError:
        return []
    return [env.get(f"GIT_PUSH_OPTION_{i}", "") for i in range(min(count, 100))]


POLICY_HINT = "the repository policy is one map of settings, e.g. `rules: {schema-unknown-kind: error}`"


def repo_policy(snapshot: Snapshot, server: dict[str, Any]) -> tuple[dict[str, Any], list[Finding]]:
    """The server's config for this ref, tightened by the pushed `.gitops-hooks.yaml` if any."""
    entry = next((e for e in snapshot.entries() if e.path == configmod.REPO_POLICY_FILE), None)
    if entry is None or entry.is_link or entry.size > 1024 * 1024:
        return server, []
    from .documents import parse  # the pushed file is hostile input: the gate's own bounded YAML reader

    parsed = parse(entry.path, snapshot.read(entry))
    if parsed.findings:
        first = parsed.findings[0]
        return server, [finding(first.rule, first.path, first.line, first.column,
                                f"repository policy unreadable: {first.message}", POLICY_HINT)]
    if not parsed.documents:
        return server, []
    if len(parsed.documents) > 1:
        second = parsed.documents[1]
        return server, [finding("yaml-not-mapping", entry.path, second.line, second.column,
                                "the repository policy must be one map of settings, not several documents",
                                POLICY_HINT)]
    return configmod.tighten(server, parsed.documents[0].obj, entry.path)


def deployed_refs(server: dict[str, Any]) -> set[str]:
    """Refs that some environment reconciles: always checked, whatever refs.check says (a tag or any other
    ref that is deployed must not skip the gate)."""
    out = set()
    for env in (server.get("environments") or {}).values():
        ref = str(env.get("ref", "")) if isinstance(env, dict) else ""
        if ref:
            out.add(ref if ref.startswith("refs/") else f"refs/heads/{ref}")
    return out


def judge(repo: Any, update: RefUpdate, server: dict[str, Any], options: list[str]) -> Result | None:
    """Findings for one ref update; None when the ref is not checked."""
    cfg = configmod.for_ref(server, update.ref)
    label = f"{update.ref} at {update.short()}"
    if update.ref == AUDIT_REF:  # written by the server's own hooks (git notes), never by a push
        f = finding("ref-protected", update.ref, 1, 1, f"{update.ref} is the server's audit trail: "
                    "pushes may not change or delete it")
        return Result(f"{update.ref} at {update.short()}", [f], Stats())
    if update.is_delete:
        if configmod.matches(update.ref, cfg["refs"]["protect"]):
            f = finding("ref-protected", update.ref, 1, 1, f"{update.ref} is protected: it may not be deleted")
            return Result(f"{update.ref} (delete)", [f], Stats())
        return None
    if not any(configmod.glob_regex(p).match(update.ref) for p in cfg["refs"]["check"]) \
            and update.ref not in deployed_refs(server):
        return None
    snapshot = GitTree(repo, update.new, label)
    merged, notes = repo_policy(snapshot, cfg)
    policy = configmod.Policy(merged, tuple(notes))
    ctx = make_context(policy, update.ref)
    if not update.is_create:  # transition rules and admission UPDATE compare with the ref's old tree
        ctx.old_tree = GitTree(repo, update.old, f"{update.ref} at {update.old[:12]}")
    cache = for_repository(Path(repo.path), int(server["cache"]["max_mb"]) << 20)
    result = check_snapshot(snapshot, policy, update.ref, context=ctx, cache=cache)
    from .history import check_history  # secrets in every new commit, not only the tip

    excluded = configmod.matcher(policy.path_exclude)
    tip = {e.oid for e in snapshot.entries() if excluded(e.path) is None}
    result.findings = sorted(set(result.findings) | set(check_history(repo, update.new, tip, policy, ctx)))
    if server.get("environments"):  # what reconciliation would choke on (light: no kubernetes import)
        from .reconcile.commands import environment_findings

        result.findings = sorted(set(result.findings) | set(environment_findings(repo, update, server)))
    limit = int(policy.limits["max_objects_per_push"])
    if result.stats.objects > limit:
        result.findings.append(finding("yaml-limits", ".", 1, 1,
                                       f"{result.stats.objects} objects is over the limit of {limit} per push"))
    return result


# The server configurations read, by repository and the file's key (gateclient.config_key, taken before
# the read), in a long-lived process (the gate server): a push does not parse and validate the same file again.
_CONFIGS: dict[tuple[str, str], dict[str, Any]] = {}


def _server_config(git_dir: Path, key: str) -> dict[str, Any]:
    """load_server_config, from what was read under the same key when the file is settled (an edit would
    change its key); a copy, so that nothing a push does to it reaches the next."""
    keep = gateclient.settled(key)
    known = _CONFIGS.get((str(git_dir), key)) if keep else None
    if known is None:
        known = configmod.load_server_config(git_dir)
        if keep:
            if len(_CONFIGS) >= 64:
                _CONFIGS.clear()
            _CONFIGS[(str(git_dir), key)] = known
    return copy.deepcopy(known)


def main(stdin_text: str, git_dir: Path, env: Mapping[str, str], out: TextIO = sys.stderr) -> int:
    register_all()  # every rule known before the configuration and the repository's policy name them
    key = gateclient.config_key(str(git_dir))  # before reading the file: see gateclient.write_stamp
    try:
        server = _server_config(git_dir, key)
        gateclient.write_stamp(str(git_dir), key, sorted(deployed_refs(server)) if server.get("environments")
                               else None)  # for post-receive
    except configmod.ConfigError as exc:
        write_log(git_dir, f"configuration error:\n{exc}")
        out.write(f"{PREFIX}: push refused: the server configuration is broken; tell the administrator "
                  f"(`gitops-hooks config check`). First problem: {str(exc).splitlines()[0]}\n")
        return 1
    timeout = float(server["limits"]["timeout_seconds"])
    deadline = time.monotonic() + timeout
    refused = f"{PREFIX}: push refused: checking took longer than limits.timeout_seconds ({timeout:g} s)\n"

    def on_alarm(signum: int, frame: Any) -> None:
        raise GateTimeout()

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    report = io.StringIO()
    collecting = gc.isenabled()
    gc.disable()  # a push makes next to no reference cycles: collecting would only scan (~10% of a cold push)
    try:
        code = _gate(stdin_text, git_dir, env, server, report)
    except GateTimeout:
        write_log(git_dir, "timeout; the gate was at:\n" + traceback.format_exc())  # what took the time
        out.write(refused)
        return 1
    except Exception as exc:  # fail closed, never a traceback to the pusher
        path = write_log(git_dir, traceback.format_exc())
        where = f"; details in {path}" if path else ""
        one_line = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        out.write(f"{PREFIX}: push refused: internal error ({one_line}){where}\n")
        return 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if collecting:
            gc.enable()  # (the gate server collects when idle)
    if time.monotonic() >= deadline:
        # The timer's exception can be lost (Python ignores exceptions raised in at-fork callbacks, for
        # one): past the deadline the push is refused whatever the run concluded. Fail closed.
        out.write(refused)
        return 1
    out.write(report.getvalue())
    out.flush()
    if code != 0:
        return code
    return gateclient.run_chained("pre-receive", str(git_dir), stdin_text, env, out)  # the hooks kept by install


def _gate(stdin_text: str, git_dir: Path, env: Mapping[str, str], server: dict[str, Any], out: TextIO) -> int:
    from .report import render_text

    updates = parse_ref_updates(stdin_text)
    options = push_options(env)
    repo = open_repository(git_dir)
    results = []
    for update in updates:
        result = judge(repo, update, server, options)
        if result is not None:
            results.append(result)
    if not results:
        return 0
    total, limit = sum(r.stats.objects for r in results), int(server["limits"]["max_objects_per_push"])
    if len(results) > 1 and total > limit:  # each ref alone may be under the limit, the push is not
        results[-1].findings.append(finding("yaml-limits", ".", 1, 1, f"{total} objects in this push's refs "
                                            f"together is over the limit of {limit} per push"))
    explain = "gitops.explain" in options
    text = render_text(results, int(server["report"]["max_findings"]), explain=explain)
    failed = [r for r in results if not r.ok]
    if failed:
        names = ", ".join(r.label for r in failed)
        text += f"\n{PREFIX}: push refused: {names} failed the checks\n"
    else:
        text += f"\n{PREFIX}: {'checks passed' if 'gitops.dry-run' in options else 'accepted'}\n"
    out.write(text)
    out.flush()
    if "gitops.dry-run" in options and not failed:
        from .reconcile.commands import dry_run, emitter

        dry_run(repo, updates, server, emitter(out))
        out.write(f"{PREFIX}: dry run: push refused so that nothing changes\n")
        return 1
    return 1 if failed else 0
