"""Live-state leakage: fields the API server writes, found in git (a `kubectl get -o yaml` dump).

Empty values (`status: {}`, `creationTimestamp: null`, as `kubectl create --dry-run -o yaml` writes them)
carry no cluster state and are not reported.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

from ..documents import Document, Pointer
from ..findings import Finding, Rule, Severity, finding, register
from .base import CheckContext, document_check

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

register(
    Rule("live-state-field", "live-state", Severity.ERROR,
         "A field the API server writes (status, uid, resourceVersion, managedFields, ...) is in git.",
         "status, metadata.uid, resourceVersion, creationTimestamp, generation, managedFields, selfLink and "
         "deletionTimestamp describe one object in one cluster at one moment. Committed, they make the "
         "manifest a dump of live state: applying it fails (a stale resourceVersion conflicts) or "
         "misleads reviewers. Strip them, e.g. with `kubectl get -o yaml | kubectl neat`, or write the "
         "manifest by hand.",
         "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: apps\n"
         "data:\n  mode: fast\n"),
    Rule("live-state-last-applied", "live-state", Severity.ERROR,
         "The kubectl last-applied-configuration annotation is in git.",
         "kubectl writes kubectl.kubernetes.io/last-applied-configuration on client-side apply. In git it "
         "is a copy of an older version of the object that confuses three-way merges. Remove the "
         "annotation.", "metadata:\n  name: web\n  annotations:\n    team: shop\n"),
    Rule("live-state-generate-name", "live-state", Severity.ERROR,
         "metadata.generateName: the object gets a new random name on every create.",
         "A reconciler creates the object again on each sync and can never find the one it made: "
         "generateName is not idempotent. Give the object a fixed metadata.name.",
         "metadata:\n  name: migrate-2024-05-01\n"),
)

LIVE_METADATA = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields",
                 "selfLink", "deletionTimestamp")
STRIP = ("strip the fields the API server writes (kubectl get -o yaml | kubectl neat), "
         "or write the manifest by hand")


def _present(value: Any) -> bool:
    return value not in (None, "", {}, [])


def live_fields(obj: dict[str, Any]) -> list[Pointer]:
    out: list[Pointer] = []
    if _present(obj.get("status")):
        out.append(("status",))
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        out.extend(("metadata", k) for k in LIVE_METADATA if _present(meta.get(k)))
    return out


def _items(doc: Document) -> Iterator[tuple[Pointer, dict[str, Any]]]:
    """The object itself, and for a List (a typical `kubectl get -o yaml` output) each of its items."""
    yield (), doc.obj
    items = doc.obj.get("items")
    if doc.kind.endswith("List") and isinstance(items, list):
        for i, item in enumerate(items):
            if isinstance(item, dict):
                yield ("items", i), item


def _label(doc: Document, prefix: Pointer, obj: dict[str, Any]) -> str:
    if not prefix:
        return doc.describe()
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    return f"{doc.describe()} item {prefix[-1]} ({obj.get('kind', 'object')}/{meta.get('name', '?')})"


_WRITTEN_METADATA = frozenset((*LIVE_METADATA, "generateName"))


def _clean(obj: dict[str, Any]) -> bool:
    """No field this check reports, found without a look at each one (most objects, most of the time)."""
    if "status" in obj or "items" in obj:  # (items: the objects of a List)
        return False
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return True
    if not _WRITTEN_METADATA.isdisjoint(meta):
        return False
    annotations = meta.get("annotations")
    return not isinstance(annotations, dict) or LAST_APPLIED not in annotations


@document_check
def live_state(doc: Document, ctx: CheckContext) -> Iterator[Finding]:
    if _clean(doc.obj):
        return
    for prefix, obj in _items(doc):
        label = functools.partial(_label, doc, prefix, obj)  # built only for a finding (describe() costs)
        for pointer in live_fields(obj):
            line, col = doc.locate(prefix + pointer, key=True)
            dotted = ".".join(str(p) for p in pointer)
            yield finding("live-state-field", doc.path, line, col,
                          f"{label()}: {dotted} is live state written by the API server",
                          STRIP, subject=doc.subject())
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            continue
        annotations = meta.get("annotations")
        if isinstance(annotations, dict) and LAST_APPLIED in annotations:
            line, col = doc.locate(prefix + ("metadata", "annotations", LAST_APPLIED), key=True)
            yield finding("live-state-last-applied", doc.path, line, col,
                          f"{label()}: the {LAST_APPLIED} annotation is a copy kubectl keeps of a past apply",
                          "remove the annotation", subject=doc.subject())
        if _present(meta.get("generateName")):
            line, col = doc.locate(prefix + ("metadata", "generateName"), key=True)
            yield finding("live-state-generate-name", doc.path, line, col,
                          f"{label()}: metadata.generateName makes a new object on every sync (not idempotent)",
                          "give the object a fixed metadata.name", subject=doc.subject())
