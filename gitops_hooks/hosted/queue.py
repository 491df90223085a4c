"""The durable queue of deliveries (SQLite in `state_dir/queue.sqlite3`, write-ahead log).

A delivery is committed to disk before the receiver answers 202, so nothing accepted is lost to a
restart or a `kill -9`. Each job runs once: a worker claims it (`running`), and finishes it (`done`) or
puts it back with a later `not_before` when it failed (a report the platform did not take, a fetch that
failed) until `max_attempts`, after which it is `failed` and logged, never silently dropped. A job left
`running` by a process that died is queued again when the service starts (`recover`).

A delivery gives one job per event: a push that names several branches (Bitbucket) gives one per
branch, stored together. Duplicates: the same delivery id twice (a redelivery), or a delivery whose
every event has the same repository, commit and purpose (`request:<number>`, `push:<ref>`) as a job
already known, is answered 200 and queues nothing. A newer
commit on the same request or ref supersedes an older job that has not started.

The service queues its own reconciliation rounds (purpose `round`, `put_round`): no delivery, at most
one per repository queued or running at a time.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from .model import Event

Outcome = Literal["queued", "duplicate"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id TEXT PRIMARY KEY,
    received REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    repository TEXT NOT NULL,
    purpose TEXT NOT NULL,
    sha TEXT NOT NULL,
    event TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    received REAL NOT NULL,
    updated REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    owner INTEGER NOT NULL DEFAULT 0,
    UNIQUE (repository, purpose, sha)
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (state, not_before);
"""


@dataclass(frozen=True)
class Job:
    id: int
    repository: str  # the configured repository's key (platform:name)
    purpose: str
    sha: str
    event: Event
    attempts: int
    received: float


def purpose_of(event: Event) -> str:
    if event.kind == "round":
        return "round"
    return f"request:{event.number}" if event.kind == "request" else f"push:{event.ref}"


def sha_of(event: Event) -> str:
    return event.head_sha if event.kind == "request" else event.after


F = TypeVar("F", bound=Callable[..., Any])


def locked(method: F) -> F:
    """One SQLite connection, used by the receiver's threads and the service's loop: one call at a time."""
    @functools.wraps(method)
    def run(self: Queue, *args: Any, **kw: Any) -> Any:
        with self.lock:
            return method(self, *args, **kw)
    return run  # type: ignore[return-value]


class Queue:
    def __init__(self, path: Path) -> None:
        self.lock = threading.RLock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a 202 promises the delivery is on disk
        self.db.executescript(SCHEMA)

    @locked
    def close(self) -> None:
        self.db.close()

    @locked
    def put(self, repository: str, events: Sequence[Event]) -> Outcome:
        """Store the jobs of one delivery's events (all committed when this returns, or none), or say it is
        a duplicate: its delivery id is known, or every event's job is."""
        now = time.time()
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.execute("INSERT OR IGNORE INTO deliveries VALUES (?, ?)", (events[0].delivery_id, now))
            added = cur.rowcount > 0 and sum(self._job(cur, repository, e, now) for e in events)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return "queued" if added else "duplicate"

    @staticmethod
    def _job(cur: sqlite3.Cursor, repository: str, event: Event, now: float) -> bool:
        """Insert one event's job unless (repository, purpose, sha) is known; it supersedes the queued
        jobs of the same purpose at another commit. Whether it was new."""
        purpose, sha = purpose_of(event), sha_of(event)
        cur.execute("INSERT OR IGNORE INTO jobs (repository, purpose, sha, event, received, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (repository, purpose, sha, json.dumps(asdict(event)), now, now))
        if cur.rowcount == 0:
            return False
        cur.execute("UPDATE jobs SET state = 'superseded', updated = ? WHERE repository = ? AND purpose = ? "
                    "AND sha != ? AND state = 'queued'", (now, repository, purpose, sha))
        return True

    @locked
    def put_round(self, repository: str, event: Event) -> bool:
        """Queue a round of `repository` unless one is queued or running; whether it was queued."""
        now = time.time()
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            busy = cur.execute("SELECT 1 FROM jobs WHERE repository = ? AND purpose = 'round' AND state IN "
                               "('queued', 'running') LIMIT 1", (repository,)).fetchone()
            if busy is None:
                cur.execute("INSERT INTO jobs (repository, purpose, sha, event, received, updated) "
                            "VALUES (?, 'round', ?, ?, ?, ?)", (repository, sha_of(event), json.dumps(asdict(event)),
                                                                now, now))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return busy is None

    @locked
    def claim(self, owner: int) -> Job | None:
        """The oldest ready job of a repository that has none running, marked running by `owner` (a pid);
        None when there is none. One job at a time per repository: they share its mirror."""
        now = time.time()
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            row = cur.execute("SELECT id, repository, purpose, sha, event, attempts, received FROM jobs "
                              "WHERE state = 'queued' AND not_before <= ? AND repository NOT IN "
                              "(SELECT repository FROM jobs WHERE state = 'running') ORDER BY id LIMIT 1",
                              (now,)).fetchone()
            if row is not None:
                cur.execute("UPDATE jobs SET state = 'running', attempts = attempts + 1, updated = ?, owner = ? "
                            "WHERE id = ?", (now, owner, row[0]))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        if row is None:
            return None
        return Job(row[0], row[1], row[2], row[3], Event(**json.loads(row[4])), row[5] + 1, row[6])

    @locked
    def done(self, job: Job, state: str = "done", note: str = "") -> None:
        self.db.execute("UPDATE jobs SET state = ?, last_error = ?, updated = ? WHERE id = ?",
                        (state, note[:1000], time.time(), job.id))

    @locked
    def retry(self, job: Job, error: str, max_attempts: int, delay: float) -> bool:
        """Put a failed job back for later; False (and `failed`) once it has had its attempts."""
        if job.attempts >= max_attempts:
            self.done(job, "failed", error)
            return False
        self.db.execute("UPDATE jobs SET state = 'queued', not_before = ?, last_error = ?, updated = ? WHERE id = ?",
                        (time.time() + delay, error[:1000], time.time(), job.id))
        return True

    @locked
    def recover(self, owner: int = 0) -> int:
        """Jobs a dead process (`owner`, or any when 0) left running go back to the queue; how many."""
        cur = self.db.execute("UPDATE jobs SET state = 'queued', updated = ? WHERE state = 'running' "
                              "AND (? = 0 OR owner = ?)", (time.time(), owner, owner))
        return cur.rowcount

    @locked
    def prune(self, days: float = 30) -> int:
        """Forget finished jobs and delivery ids older than `days` (a redelivery that late is new work)."""
        cutoff = time.time() - days * 86400
        gone = self.db.execute("DELETE FROM jobs WHERE state IN ('done', 'superseded', 'dropped', 'failed') "
                               "AND updated < ?", (cutoff,)).rowcount
        self.db.execute("DELETE FROM deliveries WHERE received < ?", (cutoff,))
        return int(gone)

    @locked
    def superseded(self, job: Job) -> bool:
        row = self.db.execute("SELECT 1 FROM jobs WHERE repository = ? AND purpose = ? AND id > ? LIMIT 1",
                              (job.repository, job.purpose, job.id)).fetchone()
        return row is not None

    @locked
    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())

    @locked
    def jobs(self) -> list[tuple[int, str, str, str, str, int]]:
        return self.db.execute("SELECT id, repository, purpose, sha, state, attempts FROM jobs ORDER BY id").fetchall()
