"""`gitops-hooks serve`: the receiver in this process, the jobs in worker processes.

Stays in the foreground (systemd and containers run it so). SIGTERM or SIGINT: stop accepting
deliveries, let each worker finish its running job, exit 0. Jobs a killed service left running are
queued again at the next start. A worker that dies is started again (its running job queued again).
Every `reconcile_every` the service queues a reconciliation round of each repository that has
environments (`Rounds`), the first one interval after the start.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from typing import IO

from .config import Repository, ServeConfig
from .model import Event
from .queue import Queue
from .receiver import Receiver, make_app

log = logging.getLogger("gitops_hooks.serve")
RESTART_EVERY = 10.0  # seconds between starts of one worker slot (a worker that cannot start is not spun)


class Workers:
    def __init__(self, config: ServeConfig, queue: Queue) -> None:
        self.config, self.queue = config, queue
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started: list[float] = []
        self.stopping = False

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "gitops_hooks.hosted.worker", str(self.config.path)],
                                stdin=subprocess.PIPE, close_fds=True)

    def start(self) -> None:
        self.procs = [self._start() for _ in range(self.config.workers)]
        self.started = [time.monotonic()] * len(self.procs)

    def notify(self) -> None:
        for p in self.procs:
            self._poke(p.stdin)

    @staticmethod
    def _poke(pipe: IO[bytes] | None) -> None:
        if pipe is None:
            return
        try:
            os.set_blocking(pipe.fileno(), False)
            os.write(pipe.fileno(), b"\n")
        except (BlockingIOError, BrokenPipeError, OSError):
            pass  # a full pipe already wakes it; a dead worker is restarted by `watch`

    def alive(self) -> bool:
        return bool(self.procs) and all(p.poll() is None for p in self.procs)

    def watch(self) -> None:
        """Start again a worker that died (its running job back to the queue), at most every 10 s."""
        for i, p in enumerate(self.procs):
            if p.poll() is not None and not self.stopping and time.monotonic() - self.started[i] >= RESTART_EVERY:
                back = self.queue.recover(p.pid)
                log.warning("worker %d exited with %s; starting another (%d job(s) queued again)", p.pid,
                            p.returncode, back)
                self.procs[i], self.started[i] = self._start(), time.monotonic()

    def stop(self) -> None:
        self.stopping = True
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            p.wait()


class Rounds:
    """When each repository's next round is due; `tick` queues the due ones (a queued or running round of
    a repository is not doubled: the queue refuses it)."""

    def __init__(self, config: ServeConfig, queue: Queue, now: float) -> None:
        self.queue = queue
        self.repos = [r for r in config.repositories if r.reconcile_every > 0 and r.policy.get("environments")]
        self.due = {r.key: now + r.reconcile_every for r in self.repos}

    def tick(self, now: float) -> bool:
        """Queue the due rounds; whether any was queued."""
        queued = False
        for r in self.repos:
            if now >= self.due[r.key]:
                self.due[r.key] = now + r.reconcile_every
                queued = self.queue.put_round(r.key, round_event(r)) or queued
        return queued


def round_event(repo: Repository) -> Event:
    return Event(repo.platform, repo.name, "round", f"round-{time.time_ns()}", "round",
                 sender="gitops-hooks serve", after=f"round-{time.time_ns()}")


async def _serve(config: ServeConfig, queue: Queue, workers: Workers) -> None:
    from aiohttp import web

    receiver = Receiver(config, queue, workers.notify)
    runner = web.AppRunner(make_app(receiver, workers.alive), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, shutdown_timeout=5.0)
    await site.start()
    log.info("listening on http://%s:%d/webhook (%d repositories, state in %s)", config.host, config.port,
             len(config.repositories), config.state_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    rounds = Rounds(config, queue, time.monotonic())
    while not stop.is_set():
        try:
            if rounds.tick(time.monotonic()):
                workers.notify()
        except sqlite3.Error as exc:  # the next tick tries again
            log.warning("round not queued: %s", exc)
        try:
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        except TimeoutError:
            workers.watch()
    log.info("stopping: no new deliveries; waiting for the running jobs to finish")
    await runner.cleanup()


def run(config: ServeConfig) -> int:
    from .worker import setup_logging

    setup_logging()
    try:
        config.state_dir.mkdir(parents=True, exist_ok=True)
        lock = open(config.state_dir / "serve.lock", "a")  # noqa: SIM115 - held for the life of the service
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        queue = Queue(config.state_dir / "queue.sqlite3")
    except BlockingIOError:
        log.error("state_dir %s is in use by another gitops-hooks serve", config.state_dir)
        return 2
    except (OSError, sqlite3.Error) as exc:
        log.error("state_dir %s cannot be used: %s", config.state_dir, getattr(exc, "strerror", None) or exc)
        return 2
    queue.prune()
    back = queue.recover()
    if back:
        log.info("%d job(s) left running by a previous process queued again", back)
    workers = Workers(config, queue)
    workers.start()
    try:
        asyncio.run(_serve(config, queue, workers))
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", config.host, config.port, exc.strerror or exc)
        return 2
    finally:
        workers.stop()
        queue.close()
        lock.close()
    log.info("stopped")
    return 0


def describe(config: ServeConfig) -> list[str]:
    """What `serve --check` prints for a good configuration."""
    from . import platforms

    out = [f"{config.path}: ok", f"listen: {config.host}:{config.port}, state_dir: {config.state_dir}"]
    missing = sorted({r.platform for r in config.repositories} - set(platforms.available()))
    if missing:
        raise ValueError(f"{config.path}: no platform module in this installation for: {', '.join(missing)}")
    for r in config.repositories:
        how = "GitHub App" if r.credentials.app_id else ("token" if r.credentials.token else "no credentials")
        envs = sorted(r.policy.get("environments") or {})
        rounds = f"; rounds every {r.reconcile_every:g} s" if envs and r.reconcile_every else ""
        out.append(f"{r.platform} {r.name}: {r.clone_url} ({how}; API {r.credentials.api_url}; "
                   f"environments: {', '.join(envs) or 'none'}{rounds})")
    return out
