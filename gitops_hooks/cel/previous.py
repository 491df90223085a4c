"""Objects of the tree before the push (the old commit of the ref), for transition rules and UPDATE.

Read lazily, once per check context, from the manifest files of the old tree (plain files; objects that
only a kustomize build produces are not known here, so they count as new).
"""

from __future__ import annotations

from typing import Any

from ..config import matches
from ..documents import Document, Limits, parse

Identity = tuple[str, str, str, str]  # (group, kind, namespace, name)


def identity(obj: Any) -> Identity:
    """Who an object is across versions of its API: group, kind, namespace, name."""
    api_version = obj.api_version
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    return group, obj.kind, obj.namespace, obj.name


def old_objects(ctx: Any) -> dict[Identity, Document]:
    cached: dict[Identity, Document] | None = ctx.extra.get("old_objects")
    if cached is not None:
        return cached
    out: dict[Identity, Document] = {}
    snapshot = ctx.old_tree
    if snapshot is not None:
        policy = ctx.policy
        limit = int(policy.limits["max_file_bytes"])
        limits = Limits(max_file_bytes=limit)
        for e in snapshot.entries():
            if e.is_link or e.is_submodule or e.size > limit or matches(e.path, policy.path_exclude):
                continue
            if not matches(e.path, policy.include) or matches(e.path, policy.manifest_exclude):
                continue
            for doc in parse(e.path, snapshot.read(e), limits).documents:
                if doc.is_object and doc.name:
                    out.setdefault(identity(doc), doc)
    ctx.extra["old_objects"] = out
    return out
