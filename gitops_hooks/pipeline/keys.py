"""What cached results are keyed by: the suite's own code and bundled schemas, the plugins, and for a
blob's findings everything they depend on beyond the blob itself."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

from ..gitrepo import Entry
from ..schemas import GVK, split_api_version


def _plugins() -> list[str]:
    from ..checks import plugins

    return plugins.fingerprint()


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """The suite's own code and bundled schemas: results from other code are never reused."""
    root = Path(__file__).resolve().parent.parent  # the gitops_hooks package
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    from ..schemas import bundled_crd_dir

    index = bundled_crd_dir() / "index.json"
    if index.is_file():
        h.update(index.read_bytes())
    return h.hexdigest()[:16]


# Keys already made, in a long-lived process (the gate server makes the same 2,000 for every push of a
# 2,000-file tree): by everything a key is made of, the CRD part only where the run's CRDs define kinds.
_KEYS: dict[tuple[Any, ...], str] = {}
_KEYS_LIMIT = 100_000


def blob_key(base: str, e: Entry, direct: bool, rows: list[Any] | None, crd_source: dict[GVK, str]) -> str:
    """The key of a blob's findings: the run's base, where the blob is and whether its objects stand for
    themselves, and the CRD blob defining each of its objects' kinds (`rows`: its summary's objects)."""
    if rows is None or not crd_source:
        known = (base, e.path, e.oid, e.mode, direct)
        key = _KEYS.get(known)
        if key is None:
            if len(_KEYS) >= _KEYS_LIMIT:
                _KEYS.clear()
            key = _KEYS[known] = _blob_key(base, e, direct, None, crd_source)
        return key
    return _blob_key(base, e, direct, rows, crd_source)


def _blob_key(base: str, e: Entry, direct: bool, rows: list[Any] | None, crd_source: dict[GVK, str]) -> str:
    parts = [base, e.path, str(e.mode), "direct" if direct else "consumed"]
    if rows is not None and crd_source:  # the CRD blob defining each object's kind
        # Only objects whose kind a CRD of the tree defines: a key does not change when a CRD of
        # other kinds comes or goes (blob_work relies on it). The blob id fixes the objects, so
        # their indexes and the CRDs' ids name which CRD defines which.
        for index, row in enumerate(rows):
            group, version = split_api_version(row[3])
            source = crd_source.get((group, version, row[4]))
            if source:
                parts.append(f"{index}={source}")
    # NUL cannot occur in a path or in the other parts: the joined text names them unambiguously
    # (a hash of JSON, as `fingerprint` makes, costs three times as much for thousands of blobs).
    digest = hashlib.sha256("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return f"checks:{e.oid}:{digest}"
