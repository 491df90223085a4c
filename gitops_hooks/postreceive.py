"""After a push is accepted: reconcile every environment that follows an updated ref, or say there is none.

post-receive cannot refuse anything: it reports, records and always exits 0. Each environment whose ref
moved gets a pending record first, then a reconcile (one at a time per environment; a push that finds
one running leaves its record for the running one, which ends on the newest commit). Records left by a
crash or an outage are picked up here too. Then the hooks `install` kept (post-receive.d beside the
hook script, gateclient.run_chained) run, whatever they answer. It notes whether the configuration
names environments (the config stamp, gateclient.write_stamp): with none, the hook's thin client
answers without this module. Internal errors print one line; the traceback goes to the log.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from . import config as configmod
from . import gateclient
from .gitrepo import RefUpdate, parse_ref_updates

PREFIX = "gitops-hooks"


def push_options(env: Mapping[str, str]) -> list[str]:
    try:
        count = int(env.get("GIT_PUSH_OPTION_COUNT", "0"))
    except ValueError:
        return []
    return [env.get(f"GIT_PUSH_OPTION_{i}", "") for i in range(min(count, 100))]


def main(stdin_text: str, git_dir: Path, env: Mapping[str, str], out: TextIO = sys.stderr) -> int:
    """post-receive cannot refuse anything: report, record, run the hooks `install` kept, exit 0."""
    after_push(stdin_text, git_dir, env, out)
    out.flush()
    return gateclient.run_chained("post-receive", str(git_dir), stdin_text, env, out)


def after_push(stdin_text: str, git_dir: Path, env: Mapping[str, str], out: TextIO) -> None:
    key = gateclient.config_key(str(git_dir))  # before reading the file: see gateclient.write_stamp
    try:
        server = configmod.load_server_config(git_dir)
        updates = parse_ref_updates(stdin_text)
    except (configmod.ConfigError, ValueError) as exc:
        out.write(f"{PREFIX}: accepted, not applied: {str(exc).splitlines()[0]}\n")
        return
    if not server.get("environments"):
        gateclient.write_stamp(str(git_dir), key, None)
        for u in updates:
            if not u.is_delete and not u.ref.startswith("refs/notes/"):  # notes are not desired state
                out.write(gateclient.no_target(u.ref, u.new))
        return
    try:
        from .reconcile.environments import all_environments

        gateclient.write_stamp(str(git_dir), key, [e.ref for e in all_environments(server)])
        _reconcile(git_dir, server, updates, env, out)
    except Exception as exc:  # noqa: BLE001 - never a traceback to the pusher; the record stays pending
        from .runtime import write_log

        path = write_log(git_dir, traceback.format_exc())
        one_line = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        out.write(f"{PREFIX}: accepted, not applied: internal error ({one_line}); it stays pending"
                  + (f"; details in {path}" if path else "") + "\n")


def _reconcile(git_dir: Path, server: dict, updates: list[RefUpdate], env: Mapping[str, str], out: TextIO) -> None:
    from .reconcile import audit, environments, state
    from .reconcile.commands import emitter
    from .reconcile.run import Options, drive, request

    options = push_options(env)
    who = audit.pusher(env)
    touched: list[str] = []
    for u in updates:
        if u.is_delete:
            continue
        envs = environments.for_ref(server, u.ref)
        if not envs:
            out.write(gateclient.no_environment(u.ref, u.new))
        for e in envs:
            request(git_dir, e, u.new, who)
            touched.append(e.name)
    configured = {e.name: e for e in environments.all_environments(server)}
    names = sorted(set(touched) | (set(state.pending_envs(git_dir)) & set(configured)))
    emit = emitter(out)
    for name in names:
        e = configured[name]
        if name not in touched:
            emit(f"{PREFIX}: {name}: picking up a pending reconcile")
        drive(git_dir, server, e, emit, Options(who, wait=e.wait or "gitops.wait" in options))
