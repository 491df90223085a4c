"""What was last applied, object by object: the cheap check that lets a no-op reconcile skip its applies.

For each object applied successfully we keep, in `<bare>/gitops-hooks/state/<env>.applied.json`:
a digest of what we sent (the object as applied: substituted, namespaced, labelled), and the live
object's `resourceVersion` and a digest of its content without `status` and bookkeeping metadata, as the
apply returned it. The next reconcile lists the live members anyway (one LIST per kind and namespace, for
prune); an object whose desired digest is the same and whose live resourceVersion, or else live content,
is the same is in place and is not sent again. Anything else is applied: a changed file, a field changed
by hand or by another tool (it changes the live content), a deleted object (it is not listed). A status
update alone changes the resourceVersion but not the content, so it costs a digest, not a request.

The memo is only ever a shortcut: a lost or corrupt file means every object is applied once more.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .state import atomic_write, state_dir

LIVE_IGNORED = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp", "selfLink")


@dataclass(frozen=True)
class Entry:
    desired: str  # digest of the object as sent
    version: str  # live resourceVersion after the apply (or when last found in place)
    live: str  # digest of the live content, status and bookkeeping left out


@dataclass(frozen=True)
class Memo:
    commit: str = ""  # the last commit applied with every object in place
    time: str = ""
    entries: Mapping[str, Entry] = field(default_factory=dict)


def key_text(group: str, kind: str, namespace: str, name: str) -> str:
    return f"{group}|{kind}|{namespace}|{name}"


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]


def desired_digest(obj: Mapping[str, Any]) -> str:
    return _digest(obj)


def live_digest(obj: Mapping[str, Any]) -> str:
    out = {k: v for k, v in obj.items() if k not in ("status", "apiVersion", "kind")}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in LIVE_IGNORED}
    out["metadata"] = meta
    return _digest(out)


def version_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def entry_for(sent: Mapping[str, Any], live: Mapping[str, Any]) -> Entry:
    return Entry(desired_digest(sent), version_of(live), live_digest(live))


def in_place(entry: Entry | None, sent_digest: str, live: Mapping[str, Any] | None) -> bool:
    """The object was applied as it is in git and nobody changed it since."""
    if entry is None or live is None or entry.desired != sent_digest:
        return False
    version = version_of(live)
    return bool(version) and (version == entry.version or live_digest(live) == entry.live)


def path(git_dir: Path, env: str) -> Path:
    return state_dir(git_dir) / f"{env}.applied.json"


def load(git_dir: Path, env: str) -> Memo:
    try:
        data = json.loads(path(git_dir, env).read_text(encoding="utf-8"))
        entries = {str(k): Entry(*v) for k, v in (data.get("objects") or {}).items()}
        return Memo(str(data.get("commit", "")), str(data.get("time", "")), entries)
    except (OSError, ValueError, TypeError, AttributeError):
        return Memo()


def save(git_dir: Path, env: str, memo: Memo) -> None:
    data = {"commit": memo.commit, "time": memo.time,
            "objects": {k: [e.desired, e.version, e.live] for k, e in sorted(memo.entries.items())}}
    atomic_write(path(git_dir, env), json.dumps(data, separators=(",", ":")))
