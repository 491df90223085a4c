"""A worker process of `gitops-hooks serve`: claims queued jobs one at a time and runs them.

It is a separate process so that the receiver answers within a second however long a check or a
reconcile takes, and so that the pipeline's forked helpers never share a process with the HTTP server's
threads. The parent wakes it by writing to its stdin; end of stdin (the parent is gone) or SIGTERM ends it
after the running job. It keeps its memory between jobs (parsed schemas, the gate's memo): the second
event of a repository is a warm one.

`python -m gitops_hooks.hosted.worker CONFIG`
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from . import jobs, platforms
from .config import Repository, ServeConfig, load
from .http import Http, HttpError
from .mirror import MirrorError
from .model import Report, Reporter
from .queue import Job, Queue, purpose_of

log = logging.getLogger("gitops_hooks.serve")


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s gitops-hooks serve: %(message)s")


def delay(attempts: int) -> float:
    """Seconds before the next attempt: 5, 10, 20, ... at most ten minutes."""
    return float(min(600, 5 * 2 ** max(0, attempts - 1)))


class Worker:
    def __init__(self, config: ServeConfig, queue: Queue) -> None:
        self.config, self.queue = config, queue
        self.stopping = False
        self._reporters: dict[str, Reporter] = {}
        self.log_path = config.state_dir / "log" / "serve.log"

    def reporter(self, repo: Repository) -> Reporter:
        if repo.key not in self._reporters:
            self._reporters[repo.key] = platforms.reporter(repo.platform, repo.name, repo.credentials, Http())
        return self._reporters[repo.key]

    def loop(self, wake: Any) -> None:
        while not self.stopping:
            job = self.queue.claim(os.getpid())
            if job is not None:
                self.process(job)
                continue
            if wake is None:
                return
            ready, _, _ = select.select([wake], [], [], 1.0)
            if ready and not os.read(wake.fileno(), 4096):
                return  # the parent is gone

    def process(self, job: Job) -> str:
        event = job.event
        repo = next((r for r in self.config.repositories if r.key == job.repository), None)
        fields = (f"platform={event.platform} repository={event.repository} "
                  f"event={purpose_of(event)} "
                  + (f"commit={job.sha[:12]} " if event.kind != "round" else "") + f"attempt={job.attempts}")
        started = time.monotonic()
        if repo is None:
            self.queue.done(job, "dropped", "the repository is no longer configured")
            log.info("job %s outcome=dropped (no longer configured)", fields)
            return "dropped"
        if event.kind == "round":
            return self._round(job, repo, fields, started)
        if self.queue.superseded(job):
            self.queue.done(job, "superseded")
            log.info("job %s outcome=superseded", fields)
            return "superseded"
        try:
            outcome = jobs.run(self.config.state_dir, repo, event, self.reporter(repo))
        except (HttpError, MirrorError, jobs.ReconcileFailed) as exc:
            return self._retry(job, fields, str(exc), started)
        except Exception as exc:  # noqa: BLE001 - fail closed: an error status, one line, the traceback to the log
            self._write_log(fields, traceback.format_exc())
            one = f"internal error ({type(exc).__name__}: {exc})".splitlines()[0][:300]
            self._error_status(repo, job, one)
            return self._retry(job, fields, one, started)
        self.queue.done(job, "done", f"{outcome.result}: {outcome.detail}")
        log.info("job %s outcome=%s seconds=%.3f%s%s", fields, outcome.result, time.monotonic() - started,
                 f" {outcome.phases}" if outcome.phases else "", f" ({outcome.detail})" if outcome.detail else "")
        return outcome.result

    def _round(self, job: Job, repo: Repository, fields: str, started: float) -> str:
        """A round is never retried and posts nothing: a failure is logged, the next round comes anyway."""
        try:
            outcome = jobs.round_job(self.config.state_dir, repo,
                                     lambda line: log.info("round repository=%s %s", repo.name, line))
        except Exception as exc:  # noqa: BLE001 - one line; the traceback to the log
            self._write_log(fields, traceback.format_exc())
            one = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            self.queue.done(job, "done", f"round-failed: {one}")
            log.warning("job %s outcome=round-failed seconds=%.3f: %s", fields, time.monotonic() - started, one)
            return "round-failed"
        self.queue.done(job, "done", f"{outcome.result}: {outcome.detail}")
        log.info("job %s outcome=%s seconds=%.3f (%s)", fields, outcome.result, time.monotonic() - started,
                 outcome.detail)
        return outcome.result

    def _retry(self, job: Job, fields: str, error: str, started: float) -> str:
        again = self.queue.retry(job, error, self.config.max_attempts, delay(job.attempts))
        state = f"retry-in={delay(job.attempts):g}s" if again else "failed (attempts spent; see the queue)"
        log.warning("job %s outcome=error %s seconds=%.3f: %s", fields, state, time.monotonic() - started, error)
        return "retry" if again else "failed"

    def _error_status(self, repo: Repository, job: Job, message: str) -> None:
        try:
            self.reporter(repo).report(job.event, Report(job.sha, "error", "gitops-hooks could not check this "
                                                         "commit: " + message, message))
        except Exception as exc:  # noqa: BLE001 - the job is retried anyway
            log.warning("job error status not posted: %s", str(exc).splitlines()[0][:300])

    def _write_log(self, fields: str, text: str) -> None:
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("a", encoding="utf-8") as fh:
                fh.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {fields}\n{text}\n")
        except OSError:
            pass


def main(argv: list[str]) -> int:
    setup_logging()
    from ..rulebook import register_all

    register_all()  # every rule known before the repositories' policies name them
    try:
        config = load(Path(argv[0]))
    except Exception as exc:  # noqa: BLE001 - one line
        log.error("worker: %s", str(exc).splitlines()[0])
        return 2
    from ..gateserver import warm_up

    warm_up()  # a resident process, as the gate server: decoded cache rows and tree results stay in memory
    worker = Worker(config, Queue(config.state_dir / "queue.sqlite3"))

    def stop(signum: int, frame: Any) -> None:
        worker.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.loop(sys.stdin)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
