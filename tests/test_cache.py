"""The result cache: reused across pushes, invalidated by its inputs, never a way in."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from conftest import Clone, Server, stop_gate_servers
from test_gate_e2e import DEPLOYMENT

from gitops_hooks.cache import ResultCache, evict, today

CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.io
spec:
  group: example.io
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {type: %s}
"""
WIDGET = "apiVersion: example.io/v1\nkind: Widget\nmetadata:\n  name: w\nspec:\n  size: 3\n"


def cache_db(server: Server) -> Path:
    return server.path / "gitops-hooks" / "cache" / "cache.sqlite"


def findings_of(push_lines: list[str]) -> list[str]:
    return [line for line in push_lines if ": error [" in line or ": warning [" in line]


def test_cache_is_filled_and_reused(server: Server, clone: Clone) -> None:
    for i in range(5):
        clone.write(f"apps/web{i}.yaml", DEPLOYMENT.replace("name: web", f"name: web{i}"))
    clone.commit()
    assert clone.push().accepted
    db = cache_db(server)
    assert db.is_file()
    rows = sqlite3.connect(db).execute("SELECT count(*) FROM kv").fetchone()[0]
    assert rows >= 10  # a parse summary and the findings of each of the five files, at least
    clone.write("README.md", "docs\n")
    clone.commit()
    assert clone.push().accepted


def test_changed_crd_revalidates_its_custom_resources(server: Server, clone: Clone) -> None:
    clone.write("crd.yaml", CRD % "integer")
    clone.write("widget.yaml", WIDGET)
    clone.commit()
    assert clone.push().accepted
    clone.write("crd.yaml", CRD % "string")  # the resource did not change, its schema did
    clone.commit()
    push = clone.push()
    assert not push.accepted
    expected = "widget.yaml:6:9: error [schema-invalid] widget.example.io/w: spec.size: 3 is not of type string"
    assert expected in push.remote_lines()


def test_changed_configuration_revalidates(server: Server, clone: Clone) -> None:
    clone.write("x.yaml", "apiVersion: example.io/v1\nkind: Gadget\nmetadata: {name: g}\n")
    clone.commit()
    assert clone.push().accepted
    server.configure("version: 1\nrules:\n  schema-unknown-kind: error\n")
    clone.write("README.md", "x\n")
    clone.commit()
    push = clone.push()
    assert not push.accepted
    assert any("error [schema-unknown-kind]" in line for line in push.remote_lines())


def test_corrupt_cache_file_is_rebuilt(server: Server, clone: Clone) -> None:
    clone.write("apps/web.yaml", DEPLOYMENT)
    clone.commit()
    assert clone.push().accepted
    db = cache_db(server)
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    db.write_bytes(b"this is not a database" * 100)
    clone.write("apps/web.yaml", DEPLOYMENT.replace("replicas: 2", "replicas: two"))
    clone.commit()
    push = clone.push()
    assert not push.accepted
    assert any("[schema-invalid]" in line for line in push.remote_lines())
    assert sqlite3.connect(db).execute("SELECT count(*) FROM kv").fetchone()[0] > 0


def test_forged_entries_are_not_trusted(server: Server, clone: Clone) -> None:
    """Someone who can write the cache file but not its key cannot make a bad blob pass."""
    clone.write("apps/web.yaml", DEPLOYMENT.replace("replicas: 2", "replicas: two"))
    clone.commit()
    assert not clone.push().accepted
    db = cache_db(server)
    con = sqlite3.connect(db)
    keys = [k for (k,) in con.execute("SELECT k FROM kv WHERE k LIKE '%checks:%'")]
    assert keys
    for k in keys:  # replace every findings entry by "no findings", without a valid MAC
        con.execute("UPDATE kv SET v = ? WHERE k = ?", (b"[]" + b"\0" * 16, k))
    con.commit()
    con.close()
    push = clone.push()
    assert not push.accepted
    assert any("[schema-invalid]" in line for line in push.remote_lines())


def test_cache_round_trip_and_mac(tmp_path: Path) -> None:
    c = ResultCache(tmp_path)
    c.put("a", {"x": [1, 2]})
    c.flush()
    assert ResultCache(tmp_path).get("a") == {"x": [1, 2]}
    (tmp_path / "cache.key").write_bytes(b"\1" * 32)  # another key: entries no longer verify
    assert ResultCache(tmp_path).get("a") is None


# ---------------------------------------------------------------------------- size

def _rows(db: Path) -> dict[str, tuple[int, int]]:
    """name -> (stamp, bytes of key and value)"""
    con = sqlite3.connect(db)
    try:
        return {k: (t, size) for k, t, size in con.execute("SELECT k, t, length(k) + length(v) FROM kv")}
    finally:
        con.close()


def test_cache_stays_within_its_limit_least_recently_used_first(server: Server, clone: Clone) -> None:
    server.configure("version: 1\ncache:\n  max_mb: 1\n")
    clone.write("apps/web.yaml", DEPLOYMENT)
    clone.commit()
    assert clone.push().accepted
    db = cache_db(server)
    day = today()
    con = sqlite3.connect(db)
    junk = b"x" * 10_000 + b"\0" * 16  # (no valid MAC: never served, only weighed)
    con.executemany("INSERT INTO kv (k, t, v) VALUES (?, ?, ?)",  # 2 MB used 100 days ago, 0.2 MB yesterday
                    [(f"v1:old:{i}", day - 100, junk) for i in range(200)]
                    + [(f"v1:recent:{i}", day - 1, junk) for i in range(20)])
    con.execute("DELETE FROM meta")  # the byte count the cache keeps no longer holds: it counts again
    con.commit()
    con.close()
    clone.write("apps/web.yaml", DEPLOYMENT.replace("replicas: 2", "replicas: two"))  # new rows to store
    clone.commit()
    push = clone.push()
    assert not push.accepted
    assert any("[schema-invalid]" in line for line in push.remote_lines())
    deadline = time.monotonic() + 60  # the eviction runs after the push, in the background
    while sum(size for _, size in _rows(db).values()) > 512 * 1024 and time.monotonic() < deadline:
        time.sleep(0.1)
    rows = _rows(db)
    total = sum(size for _, size in rows.values())
    assert total <= 512 * 1024  # down to half the limit...
    assert total + len(junk) > 512 * 1024  # ...and no further
    assert len([k for k in rows if k.startswith("v1:old:")]) < 150  # the least recently used went
    assert len([k for k in rows if k.startswith("v1:recent:")]) == 20  # and only they
    assert [k for k, (t, _) in rows.items() if t == day and "checks:" in k]  # this push's own rows stay
    clone.write("apps/web.yaml", DEPLOYMENT)  # and the cache still serves what it kept
    clone.commit()
    assert clone.push().accepted


def test_rows_read_are_stamped_again(tmp_path: Path) -> None:
    day = today()
    c = ResultCache(tmp_path)
    c.put("a", [1])
    c.put("b", [2])
    c.flush()
    con = sqlite3.connect(tmp_path / "cache.sqlite")
    con.execute("UPDATE kv SET t = ? WHERE k = 'v1:a'", (day - 30,))
    con.execute("UPDATE kv SET t = ? WHERE k = 'v1:b'", (day - 3,))
    con.commit()
    c = ResultCache(tmp_path)
    assert c.get_many(["a", "b"]) == {"a": [1], "b": [2]}
    c.flush()
    stamps = dict(con.execute("SELECT k, t FROM kv"))
    assert stamps == {"v1:a": day, "v1:b": day - 3}  # a week old or more: stamped again; younger: no write


def test_cache_of_an_earlier_version_is_upgraded_and_served(server: Server, clone: Clone, gate_runtime: Path) -> None:
    # (an object no other test pushes: the gate server finds nothing to reuse, this repository's cache fills)
    clone.write("apps/web.yaml", DEPLOYMENT.replace("replicas: 2", "replicas: two").replace("name: web", "name: up"))
    clone.commit()
    first = clone.push()
    assert not first.accepted
    _stop_servers(gate_runtime)  # new code, new gate server: nothing of the old one's memory is left
    db = cache_db(server)
    con = sqlite3.connect(db)
    kept = list(con.execute("SELECT k, v FROM kv"))
    assert [k for k, _ in kept if ":checks:" in k]
    con.execute("DROP TABLE kv")
    con.execute("DROP TABLE meta")
    con.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB NOT NULL)")  # as the earlier version made it
    con.executemany("INSERT INTO kv (k, v) VALUES (?, ?)", kept)
    con.commit()
    con.close()
    clone.write("apps/flags.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\n")  # a new manifest:
    clone.commit()  # the run cannot reuse the gate server's memo of the last one, it reads the cache
    again = clone.push()
    assert not again.accepted
    assert findings_of(again.remote_lines()) == findings_of(first.remote_lines())
    rows = _rows(db)
    assert {k for k, _ in kept} <= set(rows)
    assert {rows[k][0] for k, _ in kept} == {today()}  # each row read (verified), then stamped


def _stop_servers(runtime: Path) -> None:
    pids = [int(p.read_text(encoding="ascii")) for p in (runtime / "gitops-hooks").glob("gate-*.pid")]
    stop_gate_servers(runtime)
    deadline = time.monotonic() + 20
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_eviction_takes_whole_days_oldest_first_then_part_of_one(tmp_path: Path) -> None:
    day = today()
    c = ResultCache(tmp_path)
    c.flush()
    con = sqlite3.connect(tmp_path / "cache.sqlite")
    value = b"v" * 990
    rows = [(f"v1:{age:03}:{i:03}", day - age, value) for age in (1, 50, 9, 20) for i in range(100)]
    con.executemany("INSERT INTO kv (k, t, v) VALUES (?, ?, ?)", rows)  # 100 rows of 1000 bytes per day
    con.commit()
    size = 1000  # each row: its 10-byte name and 990-byte value
    assert evict(tmp_path, 500 * size) == 0  # 400 rows: under the limit, nothing goes
    assert evict(tmp_path, 300 * size) == 250  # over: down to half, 150 rows
    left = sorted(con.execute("SELECT t, count(*) FROM kv GROUP BY t"))
    assert left == [(day - 9, 50), (day - 1, 100)]  # 50 and 20 days old: all; 9 days: half; yesterday: none
    assert con.execute("SELECT v FROM meta WHERE k = 'bytes'").fetchone() == (150 * size,)


def test_in_the_gate_server_rows_are_written_after_the_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """defer_writes (the gate server): a run's flush writes nothing until flush_deferred, which the server
    calls once it has answered; then the rows, a forked worker's included, are what an immediate write
    stores. Opening the next cache writes what is left first (a push of several refs)."""
    from gitops_hooks import cache

    monkeypatch.setattr(cache, "_DEFER", False)
    monkeypatch.setattr(cache, "_DEFERRED", [])
    cache.defer_writes()
    summary = {"docs": [[0, 1, 1, "v1", "ConfigMap", "", "x"]], "crd": False}
    rows = [["secret-plaintext", 3, 5, "a message", "a hint", None]]
    c = ResultCache(tmp_path / "gitops-hooks" / "cache")
    c.put_later("parse:a", summary)
    worker = c.for_child()
    worker.put_later("checks:b", rows)
    worker.put("crd:c", [["an object", 1]])  # encoded at once: a value the caller may still change
    c.adopt(worker.recorded())
    c.flush()
    db = tmp_path / "gitops-hooks" / "cache" / "cache.sqlite"
    count = lambda: sqlite3.connect(db).execute("SELECT count(*) FROM kv").fetchone()[0]  # noqa: E731
    assert count() == 0
    assert cache.flush_deferred()
    assert count() == 3
    assert not cache.flush_deferred()  # nothing twice
    monkeypatch.setattr(cache, "_DEFER", False)
    fresh = ResultCache(tmp_path / "gitops-hooks" / "cache")
    assert fresh.get_many(["parse:a", "checks:b", "crd:c"]) == {
        "parse:a": summary, "checks:b": rows, "crd:c": [["an object", 1]]}
    cache.defer_writes()
    c = ResultCache(tmp_path / "gitops-hooks" / "cache")
    c.put_later("checks:d", rows)
    c.flush()
    assert count() == 3
    cache.for_repository(tmp_path)  # the next ref's run
    assert count() == 4
