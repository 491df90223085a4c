"""Objects of the tree before the push (the old commit of the ref), for transition rules and UPDATE.

Read lazily, once per check context, from the manifest files of the old tree (plain files; objects that
only a kustomize build produces are not known here, so they count as new).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config import matcher
from ..documents import Document, Limits, parse

Identity = tuple[str, str, str, str]  # (group, kind, namespace, name)


def identity(obj: Any) -> Identity:
    """Who an object is across versions of its API: group, kind, namespace, name."""
    api_version = obj.api_version
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    return group, obj.kind, obj.namespace, obj.name


def old_snapshot_manifests(ctx: Any) -> list[Any]:
    """The entries of the old tree (ctx.old_tree) whose objects count as its objects, once per check
    context (old_objects reads them; the gate server's memo of tree findings keys on them where the old
    tree is not a commit's)."""
    cached: list[Any] | None = ctx.extra.get("old_manifests")
    if cached is not None:
        return cached
    chosen = old_manifest_filter(ctx)
    out = ctx.extra["old_manifests"] = [e for e in ctx.old_tree.entries() if chosen(e)]
    return out


def old_manifest_filter(ctx: Any) -> Callable[[Any], bool]:
    """Whether an entry of the old tree is one whose objects count as its objects: a manifest by the
    policy, neither link nor submodule, within the size limit."""
    policy = ctx.policy
    limit = int(policy.limits["max_file_bytes"])
    excluded, included, manifest_excluded = (matcher(policy.path_exclude), matcher(policy.include),
                                             matcher(policy.manifest_exclude))

    def chosen(e: Any) -> bool:
        return not (e.is_link or e.is_submodule or e.size > limit or excluded(e.path) is not None) \
            and included(e.path) is not None and manifest_excluded(e.path) is None
    return chosen


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
        for e in old_snapshot_manifests(ctx):
            for doc in parse(e.path, snapshot.read(e), limits).documents:
                if doc.is_object and doc.name:
                    out.setdefault(identity(doc), doc)
    ctx.extra["old_objects"] = out
    return out
