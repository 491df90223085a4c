"""The resident gate server: judges pushes for `gateclient.py` with everything already loaded.

    python -m gitops_hooks.gateserver SOCKET     (started by the hook client; not a command for people)

One server per installation and user (see gateclient.py for the socket's name and folder). It imports the
suite once, keeps what is pure and content-addressed between pushes (compiled validators of the built-in
kinds and of CRDs, keyed by their blob; decoded result-cache rows, keyed exactly as in SQLite; tree
listings, keyed by tree id), and runs each push with the same function `gitops-hooks pre-receive` runs:
`prereceive.main`, with the client's environment, working folder and standard input swapped in for the
request and restored after. Its stdout and stderr are captured and sent back; the exit code goes with
them. What the push does not need before its verdict waits until the answer is sent: writing the result
cache (cache.defer_writes; in the request's environment, holding `gate-<stamp>.sock.writing` locked,
so that whoever must see those rows can wait for them; the rows written stay in memory, cache.MEMO),
reaping workers. Garbage is collected when the server is idle, and what survives is frozen, so that the
collections during a push do not go over the whole heap (see _collect).

It serves one push at a time (the client takes a lock first and runs the gate itself when the server is
busy). It exits when idle for `GITOPS_HOOKS_SERVER_IDLE` seconds (600 by default), when the suite's files
change under it (a new stamp means a new server), when it holds more than `MAX_RSS_MB` of memory after a
push, or after `MAX_REQUESTS` pushes; the next push starts a fresh one. Only a peer of the same user is
served (SO_PEERCRED). Errors go to `gate-<stamp>.log` beside the socket.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import io
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from . import gateclient, workers

MAX_RSS_MB = 400  # after a push leaves the server bigger than this, it exits (the next push starts another)
MAX_REQUESTS = 5000
IDLE_SECONDS = 600.0
REQUEST_SECONDS = 10.0  # to receive a request, and to hand over an answer
COLLECT_AFTER = 1.0  # idle seconds after a push before its garbage is collected (see _collect)
FULL_COLLECT_AFTER = 30.0  # idle seconds after a push before a full collection (see _collect)


def _log(log: TextIO, text: str) -> None:
    try:
        log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} pid {os.getpid()}: {text}\n")
        log.flush()
    except OSError:
        pass


def _rss_mb() -> float:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def warm_up() -> None:
    """Import what a push needs, so that no push pays for it."""
    from . import cache, prereceive  # noqa: F401  (the gate and everything it imports at module level)
    from . import config as configmod
    from .checks import plugins

    cache.MEMO.enabled = True
    configmod.warm_up()
    plugins.fingerprint()
    for name in ("history", "suppress", "report", "documents", "kustomize", "reconcile.commands"):
        __import__(f"gitops_hooks.{name}")
    import jsonschema_rs  # noqa: F401
    import yaml  # noqa: F401

    from .cel import engine
    from .checks import admin_rules, admission, cel_crd

    engine.prepare(cel_crd.VARIABLES, cel_crd.OPTIONAL_VARIABLES, admission.VARIABLES, admin_rules.VARIABLES)


def _collect(full: bool) -> None:
    """A garbage collection, then every object that survives it (modules, validators, the result cache's
    rows in memory: tens of megabytes of lists) left out of later ones (gc.freeze): the collections
    during the next push, and this one after it, look at that push's objects only (a full one over the
    server's heap takes about 0.1 s). Done when the server is idle. `full`: everything unfrozen first,
    so that nothing kept is garbage that became so while it was frozen (the cycles of a row or a
    listing the server has let go of since)."""
    if full:
        gc.unfreeze()
    gc.collect()
    gc.freeze()


class Warmer:
    """Compiles, between pushes, the validators of every built-in kind of each Kubernetes version the
    server has been asked about (the newest bundled one from the start): one kind per idle moment, so a
    push that arrives waits for one compilation at most. A cold push's forked workers then inherit
    them instead of each compiling its own (lost when the worker ends)."""

    def __init__(self) -> None:
        self.done: set[tuple[str, bool]] = set()
        self.failed: set[tuple[tuple[str, bool], Any]] = set()

    def step(self) -> bool:
        """Compile one missing validator; False when there is nothing left to do."""
        from . import pipeline

        if not pipeline._KUBE_CACHE:
            pipeline.kubernetes_schemas("", True)
        for key, kube in list(pipeline._KUBE_CACHE.items()):
            if key in self.done:
                continue
            missing = next((gvk for gvk in kube.index if gvk not in kube._compiled
                            and (key, gvk) not in self.failed), None)
            if missing is None:
                self.done.add(key)
                continue
            try:
                kube.get(missing)
            except Exception:  # noqa: BLE001 - reported by the push that needs that kind, not here
                self.failed.add((key, missing))
            return True
        return False


@contextlib.contextmanager
def _as_hook(cwd: str | None, umask: str, env: dict[str, str]) -> Iterator[None]:
    """The hook's environment, working folder (unless None) and umask (files the gate writes, cache and
    log, are made as the hook would make them), restored after."""
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    saved_umask = os.umask(int(umask) & 0o777)
    try:
        os.environ.clear()
        os.environ.update(env)
        if cwd is not None:
            os.chdir(cwd)
        yield
    finally:
        os.umask(saved_umask)
        os.environ.clear()
        os.environ.update(saved_env)
        with contextlib.suppress(OSError):
            os.chdir(saved_cwd)


def _request(fields: list[str]) -> tuple[str, str, dict[str, str]] | None:
    """(folder, umask, environment) of a request the server understands, else None."""
    hook, cwd, _stdin, umask, *pairs = fields
    if hook != "pre-receive" or len(pairs) % 2 or not umask.isdigit():
        return None
    return cwd, umask, dict(zip(pairs[::2], pairs[1::2], strict=True))


def handle(fields: list[str]) -> tuple[int, str]:
    """Run one hook request ([hook, folder, stdin, umask, name, value, ...]) as `gitops-hooks <hook>`
    would; never raises."""
    from . import prereceive
    from .gitrepo import git_dir_from_env

    request = _request(fields)
    if request is None:
        return 1, f"{prereceive.PREFIX}: push refused: the gate server got a request it does not understand\n"
    out = io.StringIO()
    try:
        with _as_hook(*request), contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = prereceive.main(fields[2], git_dir_from_env(), os.environ, out=out)
    except BaseException as exc:  # noqa: BLE001 - fail closed: a refusal with a reason, the server goes on
        out.write(f"{prereceive.PREFIX}: push refused: internal error in the gate server "
                  f"({type(exc).__name__}: {str(exc)[:200]})\n".replace("\n", " ").rstrip() + "\n")
        code = 1
    return code, out.getvalue()


def finish(fields: list[str]) -> str:
    """After the answer: write what the request left to write (the result cache), with the hook's umask
    and environment. Never raises: the pusher has its verdict, and a row not written is only a row
    computed again. What went wrong, for the log; "" if nothing."""
    from . import cache

    request = _request(fields)
    try:
        if request is None:
            cache.flush_deferred()
        else:
            with _as_hook(None, *request[1:]):  # (the cache's paths are absolute: not in the repository)
                cache.flush_deferred()
    except Exception as exc:  # noqa: BLE001 - see above
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return ""


def _sweep(folder: Path, own_lock: int) -> None:
    """Remove what servers of older code left behind (their lock is free: nobody serves them)."""
    own = os.fstat(own_lock).st_ino
    for lock in folder.glob("gate-*.sock.lock"):
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            continue
        try:
            if os.fstat(fd).st_ino == own:
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a live server
        finally:
            os.close(fd)
        base = str(lock)[:-len(".sock.lock")]
        for suffix in (".sock", ".pid", ".sock.busy", ".sock.writing", ".sock.lock"):
            with contextlib.suppress(OSError):
                os.unlink(base + suffix)
        with contextlib.suppress(OSError):
            if time.time() - os.stat(base + ".log").st_mtime > 7 * 86400:
                os.unlink(base + ".log")


class _Stop:
    """SIGTERM ends the server at once when it is idle, and after the answer when a push is running (the
    pusher still gets its verdict)."""

    def __init__(self) -> None:
        self.busy = False
        self.requested = False

    def on_signal(self, signum: int, frame: Any) -> None:
        if not self.busy:
            raise SystemExit(0)
        self.requested = True


def _profiled(fields: list[str]) -> tuple[int, str]:
    import cProfile

    prof = cProfile.Profile()
    try:
        return prof.runcall(handle, fields)
    finally:
        folder = Path(os.environ["GITOPS_HOOKS_SERVER_PROFILE"])
        folder.mkdir(parents=True, exist_ok=True)
        prof.dump_stats(folder / f"push-{time.time():.3f}.prof")


def serve(path: str) -> int:
    lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0  # another server for this code is starting or running
    stamp = Path(path).name[len("gate-"):-len(".sock")]
    if gateclient.code_stamp(os.environ.get("PYTHONPATH", "")) != stamp:
        return 0  # the code changed between the client's look and our start
    _sweep(Path(path).parent, lock_fd)
    import faulthandler

    # One handle for the server's life: each push's line, and the stacks `kill -USR1` dumps.
    log = open(os.open(path[:-len(".sock")] + ".log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),  # noqa: SIM115
               "a", encoding="utf-8")
    faulthandler.register(signal.SIGUSR1, file=log, all_threads=True)
    try:
        warm_up()
    except Exception:  # noqa: BLE001 - no server; every push runs the gate in its own process
        _log(log, "warm-up failed:\n" + traceback.format_exc())
        return 1
    from . import cache

    cache.defer_writes()
    writing = os.open(path + ".writing", os.O_RDWR | os.O_CREAT, 0o600)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(old_umask)
    listener.listen(16)
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop.on_signal)
    idle = float(os.environ.get("GITOPS_HOOKS_SERVER_IDLE", IDLE_SECONDS))
    profile_dir = os.environ.get("GITOPS_HOOKS_SERVER_PROFILE", "")  # cProfile of each push (bench/)
    last = time.monotonic()
    served = 0
    pid_path = path[:-len(".sock")] + ".pid"
    with open(os.open(pid_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="ascii") as fh:
        fh.write(f"{os.getpid()}\n")
    _log(log, f"serving {path}")
    warmer = Warmer()
    warming, compiled = True, False
    collect_at: float | None = 0.0  # when to run _collect (None: nothing new since the last)
    full = True  # whether the next _collect is a full one
    try:
        while True:
            wait = 0.0 if warming else 2.0 if collect_at is None else min(2.0, max(0.0, collect_at - time.monotonic()))
            ready, _, _ = select.select([listener], [], [], wait)
            if not ready and warming:
                warming = warmer.step()
                if warming:
                    compiled = True
                    continue
                last = time.monotonic()
                if compiled:
                    versions = ", ".join(version or "newest" for version, _ in sorted(warmer.done))
                    _log(log, f"warm: validators of Kubernetes {versions} compiled; {_rss_mb():.0f} MB")
                    compiled = False
            if not ready and collect_at is not None and time.monotonic() >= collect_at:
                _collect(full)
                collect_at = None if full else collect_at - COLLECT_AFTER + FULL_COLLECT_AFTER
                full = not full
                continue
            if not ready:
                if time.monotonic() - last > idle:
                    _log(log, "idle: exiting")
                    return 0
                if gateclient.code_stamp(os.environ.get("PYTHONPATH", "")) != stamp:
                    _log(log, "the suite changed on disk: exiting")
                    return 0
                continue
            conn, _ = listener.accept()
            with conn:
                if gateclient.peer_uid(conn) != os.getuid():
                    continue
                conn.settimeout(REQUEST_SECONDS)  # a peer that connects and says nothing blocks no push
                try:
                    fields = gateclient.receive(conn)
                except OSError:
                    fields = None
                if fields is None or len(fields) < 4:
                    continue
                started = time.monotonic()
                stop.busy = True
                fcntl.flock(writing, fcntl.LOCK_EX)  # until the request's rows are written (finish)
                try:
                    code, text = _profiled(fields) if profile_dir else handle(fields)
                except BaseException:
                    stop.busy = False
                    raise
                _log(log, f"{fields[0]} in {fields[1]}: exit {code} in {time.monotonic() - started:.3f} s")
                with contextlib.suppress(OSError):
                    conn.sendall(gateclient.encode([str(code), text]))
            try:
                problem = finish(fields)
                if problem:
                    _log(log, f"result cache of {fields[1]} not written after the answer: {problem}")
            finally:
                fcntl.flock(writing, fcntl.LOCK_UN)
                stop.busy = False
            served += 1
            workers.reap()  # after the answer: the push's workers finish exiting meanwhile
            last = time.monotonic()
            collect_at = last + COLLECT_AFTER  # a push's reference cycles go once no other push follows
            full = False
            if stop.requested:
                _log(log, "stopped (SIGTERM) after finishing a push")
                return 0
            warming = True  # the push may have asked for another Kubernetes version
            if served >= MAX_REQUESTS or _rss_mb() > MAX_RSS_MB:
                _log(log, f"recycling after {served} pushes at {_rss_mb():.0f} MB")
                return 0
    finally:
        for leftover in (path, pid_path):  # ours: we hold the lock
            with contextlib.suppress(OSError):
                os.unlink(leftover)
        listener.close()


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1]))
