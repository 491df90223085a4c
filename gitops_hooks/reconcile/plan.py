"""Plans and diffs: a server-side dry run of the whole reconcile, compared with what is live."""

from __future__ import annotations

import difflib
from typing import Any

import yaml

from .apply import Applier, normalized
from .redact import MASK


def _masked_pair(live: dict[str, Any] | None, would: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    if would.get("kind") != "Secret":
        return live, would
    live = dict(live) if live is not None else None
    would = dict(would)
    for key in ("data", "stringData"):
        a = (live or {}).get(key) or {}
        b = would.get(key) or {}
        if live is not None and key in live:
            live[key] = {k: MASK for k in a}
        if key in would:
            would[key] = {k: MASK if a.get(k) == v else f"{MASK} (changed)" for k, v in b.items()}
    return live, would


def _yaml(obj: dict[str, Any] | None) -> list[str]:
    if obj is None:
        return []
    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False).splitlines(keepends=True)


def diff_text(applier: Applier) -> tuple[str, int]:
    """A unified diff per object that would change; and how many differ."""
    out: list[str] = []
    count = 0
    for key in sorted(applier.dry_results):
        live, would = applier.dry_results[key]
        a, b = normalized(live), normalized(would)
        if a == b:
            continue
        count += 1
        a, b = _masked_pair(a, b or {})
        group, kind, ns, name = key
        label = f"{kind}.{group}/{name}" if group else f"{kind}/{name}"
        label += f" -n {ns}" if ns else ""
        out.extend(difflib.unified_diff(_yaml(a), _yaml(b), f"live {label}", f"desired {label}"))
    return "".join(out), count
