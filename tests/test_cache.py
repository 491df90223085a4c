"""The result cache: reused across pushes, invalidated by its inputs, never a way in."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from conftest import Clone, Server
from test_gate_e2e import DEPLOYMENT

from gitops_hooks.cache import ResultCache

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
    assert "widget.yaml:6:9: error [schema-invalid] widget.example.io/w: spec.size: 3 is not of type string" in push.remote_lines()


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
