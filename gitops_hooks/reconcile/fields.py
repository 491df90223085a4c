"""Field ownership: which manager owned which fields before a forced apply, and which of them it lost.

`metadata.managedFields` lists one entry per manager, operation and subresource, each with the fields it
owns in the FieldsV1 form: `f:<name>` for a field, `k:<json>` for a list item found by its keys,
`v:<json>` for an item of a set, `i:<n>` for an index, and `.` for the node itself. A forced apply moves
the fields whose values it changes from their managers to ours; comparing the entries before and after
says what was taken back and from whom, with no request of its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

FieldPath = tuple[str, ...]


@dataclass(frozen=True)
class Taken:
    """A field of git taken back from the manager that had changed it."""

    path: str  # .spec.replicas, .spec.template.spec.containers[name="web"].image
    manager: str  # kubectl (scale), kubectl-edit

    def text(self) -> str:
        return f"{self.path} from {self.manager}"


def manager_label(entry: Mapping[str, Any]) -> str:
    name = str(entry.get("manager") or "unknown")
    sub = str(entry.get("subresource") or "")
    return f"{name} ({sub})" if sub else name


def _entry_key(entry: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(entry.get("manager") or ""), str(entry.get("operation") or ""), str(entry.get("subresource") or ""))


def owned(fields: Any, prefix: FieldPath = ()) -> set[FieldPath]:
    """Every path a FieldsV1 tree owns: its leaves, and the nodes marked with `.`."""
    out: set[FieldPath] = set()
    if not isinstance(fields, dict):
        return out
    for key, sub in fields.items():
        if key == ".":
            out.add(prefix)
        elif isinstance(sub, dict) and sub:
            out |= owned(sub, prefix + (key,))
        else:
            out.add(prefix + (key,))
    return out


def by_manager(obj: Mapping[str, Any] | None) -> dict[tuple[str, str, str], tuple[str, set[FieldPath]]]:
    entries = ((obj or {}).get("metadata") or {}).get("managedFields") or []
    return {_entry_key(e): (manager_label(e), owned(e.get("fieldsV1"))) for e in entries if isinstance(e, dict)}


def taken_back(before: Mapping[str, Any] | None, after: Mapping[str, Any], ours: str) -> tuple[Taken, ...]:
    """Fields other managers owned in `before` that `ours` owns in `after` and they no longer do."""
    old, new = by_manager(before), by_manager(after)
    mine: set[FieldPath] = set()
    for (name, _, _), (_, paths) in new.items():
        if name == ours:
            mine |= paths
    out: list[Taken] = []
    for key, (label, paths) in sorted(old.items()):
        if key[0] == ours:
            continue
        lost = (paths - new.get(key, ("", set()))[1]) & mine
        out.extend(Taken(render(p), label) for p in _outermost(lost))
    return tuple(out)


def _outermost(paths: Iterable[FieldPath]) -> list[FieldPath]:
    """Drop a path when a shorter one that contains it is there too (a list item and its fields)."""
    ordered = sorted(paths, key=lambda p: (len(p), p))
    kept: list[FieldPath] = []
    for p in ordered:
        if not any(p[:len(k)] == k for k in kept):
            kept.append(p)
    return sorted(kept)


def render(path: FieldPath) -> str:
    """The API server's own notation, as in its conflict messages: `.spec.containers[name="web"].image`."""
    out = ""
    for part in path:
        kind, _, rest = part.partition(":")
        if kind == "f":
            out += f".{rest}"
        elif kind == "k":
            try:
                keys = json.loads(rest)
                out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(keys.items())) + "]"
            except (ValueError, AttributeError):
                out += f"[{rest}]"
        elif kind == "v":
            out += f"[={rest}]"
        elif kind == "i":
            out += f"[{rest}]"
        else:
            out += f".{part}"
    return out or "."


def summary(taken: Iterable[Taken]) -> str:
    """`took back .spec.replicas from kubectl (scale)`; fields grouped by the manager they came from."""
    groups: dict[str, list[str]] = {}
    for t in taken:
        groups.setdefault(t.manager, []).append(t.path)
    return "took back " + "; ".join(f"{', '.join(paths)} from {m}" for m, paths in groups.items())
