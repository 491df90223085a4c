"""Object identity: required fields, and each object defined once within its unit."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..documents import Document
from ..findings import Finding, Rule, Severity, finding, register
from ..schemas import split_api_version
from .base import CheckContext, TreeView, document_check, tree_check

register(
    Rule("object-required", "objects", Severity.ERROR, "apiVersion, kind or metadata.name is missing.",
         "The API server needs all three to know what the object is and where it goes. Objects created "
         "with metadata.generateName are not idempotent and do not belong in git.",
         "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n"),
    Rule("object-duplicate", "objects", Severity.ERROR, "The same object is defined twice.",
         "Two definitions of one (group, kind, namespace, name) in the same folder or kustomize build fight "
         "each other: the last one applied wins. Keep one, or give them different names.", ""),
)


@document_check
def required_fields(doc: Document, ctx: CheckContext) -> Iterator[Finding]:
    missing = []
    if not isinstance(doc.obj.get("apiVersion"), str) or not doc.obj.get("apiVersion"):
        missing.append("apiVersion")
    if not isinstance(doc.obj.get("kind"), str) or not doc.obj.get("kind"):
        missing.append("kind")
    if not doc.name and not doc.kind.endswith("List"):
        missing.append("metadata.name")
    if missing:
        yield finding(
            "object-required", doc.path, doc.line, doc.column,
            f"{doc.describe()}: missing {', '.join(missing)}", subject=doc.subject(),
        )


def identity(doc: Document) -> tuple[str, str, str, str]:
    return (doc.group, doc.kind, doc.namespace, doc.name)


@tree_check
def duplicates(tree: TreeView, ctx: CheckContext) -> Iterable[Finding]:
    groups: dict[str, str] = {}  # apiVersion -> its group (identity's), split once per apiVersion
    for unit, docs in tree.units.items():
        seen: dict[tuple[str, str, str, str], Document] = {}
        for doc in docs:
            name, kind = doc.name, doc.kind
            if not name or not kind:
                continue
            api_version = doc.api_version
            group = groups.get(api_version)
            if group is None:
                group = groups[api_version] = split_api_version(api_version)[0]
            key = (group, kind, doc.namespace, name)
            first = seen.get(key)
            if first is None:
                seen[key] = doc
                continue
            ns = f" in namespace {doc.namespace}" if doc.namespace else ""
            yield finding(
                "object-duplicate", doc.path, doc.line, doc.column,
                f"{doc.describe()}{ns} is already defined at {first.path}:{first.line}",
                "keep one definition" + (f" (both are part of {unit})" if unit.startswith(("kustomize", "helm")) else ""),
                subject=doc.subject(),
            )
