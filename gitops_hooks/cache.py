"""The result cache: what a blob yields, kept by content id, reused across pushes.

Git blobs are content-addressed, so a blob's parse summary depends on its id alone, and its findings on its
id, its path and mode, and a fingerprint of everything else they depend on (configuration, Kubernetes
version, the CRDs that define its kinds, the suite's checks). Keys carry all of that, so an entry is never
stale: a changed input makes a new key.

Storage is SQLite (WAL, so readers never wait on a writer) inside the bare repository. Writes are batched
into one short transaction at the end of a run; if the database is busy the batch is dropped, the cache
is only an accelerator. In the gate server (`defer_writes`) a push does not wait for them: the rows of
blobs (handed over by `put_later`) are encoded, and every batch written, by `flush_deferred`, which the
server calls once it has answered the pusher, and which runs before the next cache of the process is
opened. The cache's size is bounded: each row carries the day it was last written or used (a row read is
stamped again once its stamp is a week old), and a count of the rows' bytes is kept beside them. When a
flush takes the count past the limit, a process of its own (started detached: the push does not wait)
deletes the least recently used rows until they take half of it. The file itself is larger by SQLite's
page overhead and the free space deleted rows leave in their pages, which later rows reuse.

Every value carries an HMAC made with a key kept beside the database (mode 0600): a corrupt or foreign
file, or an entry it does not vouch for, is ignored and rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

FORMAT = "v1"
MAC_BYTES = 16
MAX_BYTES = 256 * 1024 * 1024  # of rows, keys and values; `cache.max_mb` in the server's configuration
RESTAMP_DAYS = 7  # a row read is stamped with the day again once its stamp is this old
_ENCODER = json.JSONEncoder(separators=(",", ":"))  # one for every row (json.dumps makes one per call)


_DEFER = False  # set by the gate server: see defer_writes
_DEFERRED: list[ResultCache] = []  # caches whose flush waits for flush_deferred


def defer_writes() -> None:
    """From now on in this process (and the workers it forks), rows handed over by `put_later` stay
    unencoded and a cache's `flush` waits for `flush_deferred`: the gate server answers first."""
    global _DEFER
    _DEFER = True


def flush_deferred() -> bool:
    """Encode and write what deferred flushes left, oldest first; whether there was anything."""
    had = bool(_DEFERRED)
    while _DEFERRED:
        _DEFERRED.pop(0).flush(now=True)
    return had


def today() -> int:
    """Days since the epoch: the unit of a row's stamp."""
    return int(time.time() // 86400)


def row_name(key: str) -> str:
    """The name a key's row has in the database (and in `recorded`/`adopt`)."""
    return f"{FORMAT}:{key}"


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


class Memo:
    """Decoded, verified rows kept in memory between runs of one process (the resident gate server).

    A row's key names everything its value depends on, so a row read once can be served again without
    SQLite, HMAC and JSON: keyed by the database file, its secret and the key, exactly as on disk. Values
    are shared, so callers treat them as read-only. Off in ordinary processes (one run reads a row once).
    """

    LIMIT_BYTES = 32 * 1024 * 1024  # of stored JSON, all rows together; then the memo starts over
    LARGEST = 256 * 1024  # bigger rows (whole CRDs) are read from SQLite each time

    def __init__(self) -> None:
        self.enabled = False
        # (database, secret) -> row name -> [value, the row's stamp as last known]
        self.tables: dict[tuple[str, bytes], dict[str, list[Any]]] = {}
        self.size = 0

    def table(self, where: str, secret: bytes) -> dict[str, list[Any]]:
        """The rows kept of one database (a push looks up thousands: one dictionary, no tuple per row)."""
        if not self.enabled:
            return {}
        return self.tables.setdefault((where, secret), {})

    def get(self, where: str, secret: bytes, key: str) -> list[Any] | None:
        return self.table(where, secret).get(key)

    def put(self, where: str, secret: bytes, key: str, value: Any, size: int, stamp: int) -> None:
        if self.enabled and size <= self.LARGEST:
            if self.size + size > self.LIMIT_BYTES:
                for rows in self.tables.values():
                    rows.clear()  # (callers may hold a table: emptied, not replaced)
                self.size = 0
            self.table(where, secret)[key] = [value, stamp]
            self.size += size


MEMO = Memo()


class NullCache:
    """No cache: every lookup misses, nothing is kept."""

    def get(self, key: str) -> Any | None:
        return None

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        return {}

    def put(self, key: str, value: Any) -> None:
        return None

    def put_later(self, key: str, value: Any) -> None:
        """`put`, from a caller that hands the value over: nothing changes it afterwards, so its encoding
        may wait (see defer_writes)."""
        self.put(key, value)

    def flush(self, now: bool = False) -> None:
        return None

    def for_child(self) -> NullCache:
        """The cache of a forked worker: it records what it would store (`recorded`) and reads nothing,
        for the parent's database handle is the parent's alone."""
        return NullCache()

    def recorded(self) -> dict[str, Any]:
        return {}

    def adopt(self, rows: dict[str, Any]) -> None:
        """Store rows that a worker of this cache (`for_child`) recorded, with the next flush."""
        return None


class _Recorder(NullCache):
    """Rows by name: encoded (bytes), or the values themselves where the owner defers encoding."""

    def __init__(self, owner: ResultCache) -> None:
        self.owner = owner
        self.rows: dict[str, Any] = {}

    def put(self, key: str, value: Any) -> None:
        name, row = self.owner.encode(key, value)
        self.rows[name] = row

    def put_later(self, key: str, value: Any) -> None:
        if self.owner.deferred:
            self.rows[row_name(key)] = value
        else:
            self.put(key, value)

    def recorded(self) -> dict[str, Any]:
        return self.rows


class ResultCache(NullCache):
    def __init__(self, folder: Path, max_bytes: int = MAX_BYTES) -> None:
        self.folder = folder
        self.path = folder / "cache.sqlite"
        self.max_bytes = max_bytes
        self.pending: dict[str, bytes] = {}
        self.later: dict[str, Any] = {}  # rows by name, encoded at the flush (put_later, when deferred)
        self.deferred = _DEFER
        self.stale: set[str] = set()  # rows read whose stamp is RESTAMP_DAYS old: stamped again at flush
        self.today = today()
        self.db: sqlite3.Connection | None = None
        self.secret = b""
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.secret = self._secret()
            self.db = self._open()
        except (OSError, sqlite3.Error):
            self.db = None  # unusable: run without a cache

    def _secret(self) -> bytes:
        key_path = self.folder / "cache.key"
        try:
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            data = key_path.read_bytes()
            if len(data) == 32:
                return data
            key_path.unlink()  # damaged key: start over, the old entries no longer verify
            return self._secret()
        secret = os.urandom(32)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secret)
        return secret

    def _open(self) -> sqlite3.Connection:
        for attempt in range(2):
            db = sqlite3.connect(self.path, timeout=2.0, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                # The stamp before the value: finding the oldest rows does not read long values' pages.
                db.execute("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, t INTEGER NOT NULL DEFAULT 0, "
                           "v BLOB NOT NULL)")
                db.execute("SELECT count(*) FROM kv WHERE k = ''").fetchone()
            except sqlite3.DatabaseError:
                db.close()
                if attempt:
                    raise
                for suffix in ("", "-wal", "-shm"):  # corrupt or not a database: rebuild
                    try:
                        (self.folder / f"cache.sqlite{suffix}").unlink()
                    except FileNotFoundError:
                        pass
                continue
            try:
                _upgrade(db)
            except sqlite3.Error:
                db.close()
                raise
            return db
        raise sqlite3.DatabaseError("unreachable")

    def _mac(self, key: str, value: bytes) -> bytes:
        return hmac.new(self.secret, key.encode() + b"\0" + value, hashlib.sha256).digest()[:MAC_BYTES]

    def get(self, key: str) -> Any | None:
        if self.db is None:
            return None
        key = f"{FORMAT}:{key}"
        where = str(self.path)
        memo = MEMO.get(where, self.secret, key)
        if memo is not None:
            memo[1] = self._used(key, memo[1])
            return memo[0]
        try:
            row = self.db.execute("SELECT v, t FROM kv WHERE k = ?", (key,)).fetchone()
        except sqlite3.Error:
            return None
        value = None if row is None else self._verified(key, row[0])
        if value is not None:
            MEMO.put(where, self.secret, key, value, len(row[0]), self._used(key, row[1]))
        return value

    def _used(self, name: str, stamp: Any) -> int:
        """A row was read: the stamp it has after the next flush (today's, if its own is old or foreign)."""
        if type(stamp) is not int or stamp <= self.today - RESTAMP_DAYS:
            self.stale.add(name)
            return self.today
        return stamp

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        """Several lookups in a few queries (a push asks for thousands of blobs)."""
        if self.db is None or not keys:
            return {}
        found: dict[str, Any] = {}
        where = str(self.path)
        prefix = f"{FORMAT}:"
        if MEMO.enabled:
            old = self.today - RESTAMP_DAYS
            table = MEMO.table(where, self.secret)
            wanted = {}
            for k in keys:
                name = prefix + k
                memo = table.get(name)
                if memo is None:
                    wanted[name] = k
                    continue
                if memo[1] <= old:  # (a memo's stamp is an int: _used made it)
                    memo[1] = self._used(name, memo[1])
                found[k] = memo[0]
        else:
            wanted = {prefix + k: k for k in keys}
        names = list(wanted)
        try:
            for i in range(0, len(names), 500):
                chunk = names[i:i + 500]
                marks = ",".join("?" * len(chunk))
                for k, v, t in self.db.execute(f"SELECT k, v, t FROM kv WHERE k IN ({marks})", chunk):
                    value = self._verified(k, v)
                    if value is not None:
                        found[wanted[k]] = value
                        MEMO.put(where, self.secret, k, value, len(v), self._used(k, t))
        except sqlite3.Error:
            return found
        return found

    def _verified(self, key: str, raw: Any) -> Any | None:
        if not isinstance(raw, bytes) or len(raw) <= MAC_BYTES:
            return None
        value, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(key, value)):
            return None
        try:
            return json.loads(value)
        except ValueError:
            return None

    def encode(self, key: str, value: Any) -> tuple[str, bytes]:
        """The row's name and stored bytes: the value as JSON, then its MAC."""
        name = row_name(key)
        return name, self._row(name, value)

    def _row(self, name: str, value: Any) -> bytes:
        data = _ENCODER.encode(value).encode()
        return data + self._mac(name, data)

    def put(self, key: str, value: Any) -> None:
        if self.db is None:
            return
        name, row = self.encode(key, value)
        self.pending[name] = row

    def put_later(self, key: str, value: Any) -> None:
        if self.db is None:
            return
        if self.deferred:
            self.later[row_name(key)] = value
        else:
            self.put(key, value)

    def for_child(self) -> NullCache:
        return _Recorder(self) if self.db is not None else NullCache()

    def adopt(self, rows: dict[str, Any]) -> None:
        if self.db is not None:
            for name, row in rows.items():
                if type(row) is bytes:
                    self.pending[name] = row
                else:
                    self.later[name] = row

    def flush(self, now: bool = False) -> None:
        """Write the run's rows; deferred (see defer_writes) unless `now`."""
        if self.db is None or not (self.pending or self.later or self.stale):
            return
        if self.deferred and not now:
            if self not in _DEFERRED:
                _DEFERRED.append(self)
            return
        day = self.today
        where = str(self.path)
        for name, value in self.later.items():
            try:
                self.pending[name] = row = self._row(name, value)
            except (TypeError, ValueError):  # pragma: no cover - values are built of JSON types
                continue
            # Handed over (put_later): the value is the row's, decoded. The next push of the resident
            # server finds it in memory instead of reading back from SQLite what this one computed.
            MEMO.put(where, self.secret, name, value, len(row), day)
        self.later.clear()
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT OR REPLACE INTO kv (k, t, v) VALUES (?, ?, ?)",
                                [(k, day, v) for k, v in self.pending.items()])
            self.db.executemany("UPDATE kv SET t = ? WHERE k = ? AND t < ?",
                                [(day, k, day) for k in self.stale if k not in self.pending])
            over = False
            if self.pending:
                over = self._count(sum(len(k) + len(v) for k, v in self.pending.items()))
            self.db.execute("COMMIT")
            if over:
                start_eviction(self.folder, self.max_bytes)
        except sqlite3.Error:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        self.pending.clear()
        self.stale.clear()

    def _count(self, added: int) -> bool:
        """Add a flush's bytes to the count kept beside the rows (meta `bytes`); whether it is over the
        limit. The count errs high (a replaced row counts twice); eviction counts again, exactly."""
        assert self.db is not None
        row = self.db.execute("SELECT v FROM meta WHERE k = 'bytes'").fetchone()
        total = (row[0] if row is not None and type(row[0]) is int else 0) + added
        self.db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('bytes', ?)", (total,))
        return total > self.max_bytes


def _upgrade(db: sqlite3.Connection) -> None:
    """Stamps and the byte count, which a database of an earlier version lacks (its rows get stamp 0,
    the oldest; the count is taken once). Not a sign of corruption if it fails: the run goes without a
    cache."""
    db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
    if "t" not in {row[1] for row in db.execute("PRAGMA table_info(kv)")}:
        try:
            db.execute("ALTER TABLE kv ADD COLUMN t INTEGER NOT NULL DEFAULT 0")
        except sqlite3.OperationalError:
            if "t" not in {row[1] for row in db.execute("PRAGMA table_info(kv)")}:  # (not a concurrent push)
                raise
    if db.execute("SELECT v FROM meta WHERE k = 'bytes'").fetchone() is None:
        db.execute("INSERT OR IGNORE INTO meta (k, v) VALUES ('bytes', (SELECT " + _SIZE_SUM + " FROM kv))")


def for_repository(git_dir: Path, max_bytes: int = MAX_BYTES) -> NullCache:
    flush_deferred()  # a push of several refs: what the run of the last ref found is there for this one
    if os.environ.get("GITOPS_HOOKS_NO_CACHE") == "1":
        return NullCache()
    return ResultCache(git_dir / "gitops-hooks" / "cache", max_bytes)


def for_user() -> NullCache:
    if os.environ.get("GITOPS_HOOKS_NO_CACHE") == "1":
        return NullCache()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return ResultCache(base / "gitops-hooks")


# ---------------------------------------------------------------------------- eviction

_SIZE_SUM = "coalesce(sum(length(k) + length(v)), 0)"  # length() of a blob reads the row's header only
EVICT_BATCH = 2000  # rows deleted per transaction: pushes' own writes wait at most one batch


def _evict_lock(folder: Path) -> int | None:
    """An exclusive lock on the cache's eviction, or None if an evictor holds it."""
    import fcntl

    fd = os.open(folder / "evict.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def start_eviction(folder: Path, max_bytes: int) -> None:
    """Start `evict` in the background, detached: the push does not wait for it. Through `sh -c '… &'`,
    which exits at once, so the evictor is nobody's child here (no zombie in the gate server). Never fails."""
    import subprocess
    import sys

    if not sys.executable:
        return
    try:
        fd = _evict_lock(folder)
        if fd is None:
            return  # one is at work already
        os.close(fd)
        # (-P: not the working folder on the path; PYTHONPATH, like the gate's own, is kept)
        subprocess.run(["/bin/sh", "-c", '"$@" </dev/null >/dev/null 2>&1 &', "sh", sys.executable, "-P", "-m",
                        "gitops_hooks.cache", "evict", str(folder), str(max_bytes)],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       start_new_session=True, close_fds=True, cwd="/", check=False, timeout=10)
    except (OSError, subprocess.SubprocessError):
        pass


def evict(folder: Path, max_bytes: int) -> int:
    """Delete the least recently used rows until the rows take half of max_bytes, if they take more than
    max_bytes; then set the count kept beside them to the exact figure. Rows go in batches (pushes write
    between them): every row of the oldest stamps, then of the next stamp the first rows by rowid, as
    many as it takes. Returns the number of rows deleted (0 if another evictor is at work)."""
    fd = _evict_lock(folder)
    if fd is None:
        return 0
    db = sqlite3.connect(folder / "cache.sqlite", timeout=30.0, isolation_level=None)
    try:
        total = db.execute(f"SELECT {_SIZE_SUM} FROM kv").fetchone()[0]
        deleted = 0
        if total > max_bytes:
            remove = total - max_bytes // 2
            whole, part, budget = None, None, 0  # stamps <= whole go; of stamp `part`, `budget` bytes
            for day, size in db.execute(f"SELECT t, {_SIZE_SUM} FROM kv GROUP BY t ORDER BY t").fetchall():
                if remove <= 0:
                    break
                if size <= remove:
                    whole, remove = day, remove - size
                else:
                    part, budget = day, remove
                    break
            if whole is not None:
                deleted += _delete(db, "t <= ?", whole, None)
            if part is not None and budget > 0:
                deleted += _delete(db, "t IS ?", part, budget)
        db.execute("BEGIN IMMEDIATE")
        db.execute(f"INSERT OR REPLACE INTO meta (k, v) VALUES ('bytes', (SELECT {_SIZE_SUM} FROM kv))")
        db.execute("COMMIT")
        return deleted
    finally:
        db.close()
        os.close(fd)


def _delete(db: sqlite3.Connection, where: str, stamp: Any, budget: int | None) -> int:
    """Delete the rows whose stamp matches (`where`): all, or the first by rowid until `budget` bytes are
    gone. One pass over the table in rowid order; a row stamped again meanwhile stays."""
    deleted, last = 0, 0
    while budget is None or budget > 0:
        rows = db.execute(f"SELECT rowid, length(k) + length(v) FROM kv WHERE rowid > ? AND {where} "
                          "ORDER BY rowid LIMIT ?", (last, stamp, EVICT_BATCH)).fetchall()
        if not rows:
            break
        last = rows[-1][0]
        taken = []
        for rowid, size in rows:
            if budget is not None:
                if budget <= 0:
                    break
                budget -= size
            taken.append((rowid, stamp))
        before = db.total_changes
        db.execute("BEGIN IMMEDIATE")
        db.executemany(f"DELETE FROM kv WHERE rowid = ? AND {where}", taken)
        db.execute("COMMIT")
        deleted += db.total_changes - before
    return deleted


if __name__ == "__main__":  # started by start_eviction: python -P -m gitops_hooks.cache evict FOLDER MAX_BYTES
    import sys

    if len(sys.argv) == 4 and sys.argv[1] == "evict":
        try:
            evict(Path(sys.argv[2]), int(sys.argv[3]))
        except (OSError, ValueError, sqlite3.Error):
            sys.exit(1)
