"""Objects as the API server hands them to CEL validation rules, walked together with their schema.

Before rules run the API server prunes nulls, applies schema defaults, and gives CEL escaped property
names (`namespace` is `__namespace__`, `a-b` is `a__dash__b`). `to_cel` does the same to a copy of the
object; `rule_sites` walks schema and value together (properties, items, additionalProperties) and yields
every place where `x-kubernetes-validations` sit, with the old value at the same place for transition
rules (list items are correlated only for `x-kubernetes-list-type: map`, as in Kubernetes).
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

Schema = dict[str, Any]
Path = tuple[str | int, ...]

RESERVED = frozenset(
    "true false null in as break const continue else for function if import let loop package namespace "
    "return var void while".split()
)
_ESCAPABLE = re.compile(r"[a-zA-Z_.\-/][a-zA-Z0-9_.\-/]*\Z")


class Missing:
    """No value here (the field is absent, or there is no old object)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = Missing()


@functools.lru_cache(maxsize=4096)
def escape(name: str) -> str | None:
    """The name CEL sees for a property, or None when CEL cannot reach it."""
    if name in RESERVED:
        return f"__{name}__"
    if not _ESCAPABLE.match(name):
        return None
    return (name.replace("__", "__underscores__").replace(".", "__dot__").replace("-", "__dash__")
            .replace("/", "__slash__"))


def to_cel(value: Any, schema: Schema) -> Any:
    """A copy of value with nulls pruned, defaults applied and property names escaped."""
    if isinstance(value, dict):
        return _object(value, schema)
    if isinstance(value, list):
        found = schema.get("items")
        items: Schema = found if isinstance(found, dict) else {}
        return [to_cel(x, items) for x in value if x is not None or items.get("nullable")]
    if schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _object(value: dict[str, Any], schema: Schema) -> dict[str, Any]:
    found = schema.get("properties")
    props: dict[str, Schema] = found if isinstance(found, dict) else {}
    extra = schema.get("additionalProperties")
    keep_unknown = bool(schema.get("x-kubernetes-preserve-unknown-fields")) or not props and not isinstance(extra, dict)
    out: dict[str, Any] = {}
    for key, sub in value.items():
        if key in props:
            name = escape(key)
            if name is not None and (sub is not None or props[key].get("nullable")):
                out[name] = to_cel(sub, props[key])
        elif isinstance(extra, dict):
            if sub is not None or extra.get("nullable"):
                out[key] = to_cel(sub, extra)
        elif keep_unknown or schema.get("x-kubernetes-embedded-resource") and key in ("apiVersion", "kind", "metadata"):
            out[key] = sub
    for key, sub_schema in props.items():
        name = escape(key)
        if name is not None and name not in out and "default" in sub_schema:
            out[name] = to_cel(copy.deepcopy(sub_schema["default"]), sub_schema)
    return out


@dataclass(frozen=True)
class Site:
    """A place in the object where rules sit: its path (original names), its value and old value."""

    path: Path
    schema: Schema
    value: Any
    old: Any  # MISSING when there is no correlated old value

    @property
    def rules(self) -> list[dict[str, Any]]:
        rules = self.schema.get("x-kubernetes-validations")
        return [r for r in rules if isinstance(r, dict)] if isinstance(rules, list) else []


def rule_sites(schema: Schema, value: Any, old: Any = MISSING, path: Path = ()) -> Iterator[Site]:
    """Every (schema, value) pair with x-kubernetes-validations, depth first, parents before children."""
    if not isinstance(schema, dict):
        return
    if schema.get("x-kubernetes-validations"):
        yield Site(path, schema, value, old)
    if isinstance(value, dict):
        yield from _object_sites(schema, value, old, path)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        items = schema["items"]
        for i, item in enumerate(value):
            yield from rule_sites(items, item, _old_item(schema, item, old), path + (i,))


def _object_sites(schema: Schema, value: dict[str, Any], old: Any, path: Path) -> Iterator[Site]:
    old_map = old if isinstance(old, dict) else {}
    props = schema.get("properties")
    if isinstance(props, dict):
        for key, sub in props.items():
            name = escape(key)
            if name is not None and name in value:
                yield from rule_sites(sub, value[name], old_map.get(name, MISSING), path + (key,))
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, sub_value in value.items():
            yield from rule_sites(extra, sub_value, old_map.get(key, MISSING), path + (key,))


def _old_item(schema: Schema, item: Any, old: Any) -> Any:
    if not isinstance(old, list) or schema.get("x-kubernetes-list-type") != "map" or not isinstance(item, dict):
        return MISSING
    keys = [escape(k) or k for k in schema.get("x-kubernetes-list-map-keys") or []]
    if not keys:
        return MISSING
    wanted = [item.get(k) for k in keys]
    for candidate in old:
        if isinstance(candidate, dict) and [candidate.get(k) for k in keys] == wanted:
            return candidate
    return MISSING


_FIELD_PART = re.compile(r"\.([A-Za-z0-9_\-/]+)|\['((?:[^'\\]|\\.)*)'\]")


def field_path(text: str) -> Path | None:
    """A rule's fieldPath (`.spec.foo`, `.map['key']`) as path parts; None when it is not understood."""
    parts: list[str | int] = []
    pos = 0
    while pos < len(text):
        m = _FIELD_PART.match(text, pos)
        if m is None:
            return None
        parts.append(m.group(1) if m.group(1) is not None else m.group(2).replace("\\'", "'"))
        pos = m.end()
    return tuple(parts)


def dotted(path: Path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (("." if out else "") + str(p))
    return out or "(object)"
