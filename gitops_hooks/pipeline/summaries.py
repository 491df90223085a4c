"""What a parsed blob leaves for later runs (no paths: blobs move): the identities of its objects, its
parse findings, the kinds its CRDs define and its suppression requests; findings rows as the cache keeps
them; DocRef, an object known by its identity and parsed again only when a check needs it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..documents import Document, ParsedFile, Pointer
from ..findings import Finding, Severity
from ..schemas import crd_versions, validation_rules


class DocRef:
    """An object known by its identity, from a cached summary; the full document is parsed on demand."""

    __slots__ = ("path", "index", "line", "column", "api_version", "kind", "namespace", "name", "prefix", "_load")

    def __init__(self, path: str, row: list[Any], load: Callable[[str, int, Pointer], Document]) -> None:
        self.path = path
        self.index, self.line, self.column, self.api_version, self.kind, self.namespace, self.name, prefix = row
        self.prefix: Pointer = tuple(prefix)
        self._load = load

    is_object = True
    from_blob = True  # the object is exactly what its file's blob says (not a kustomize render)
    group = Document.group
    subject = Document.subject
    describe = Document.describe

    @property
    def document(self) -> Document:
        return self._load(self.path, self.index, self.prefix)

    @property
    def obj(self) -> dict[str, Any]:
        return self.document.obj

    @property
    def metadata(self) -> dict[str, Any]:
        return self.document.metadata

    def locate(self, pointer: tuple[str | int, ...], key: bool = False) -> tuple[int, int]:
        return self.document.locate(pointer, key)


def _summary(pf: ParsedFile) -> dict[str, Any]:
    """What later pushes need of a parsed blob without parsing it again (no paths: blobs move)."""
    from .. import suppress

    docs = [d for d in pf.documents if d.is_object]
    return {
        "findings": [[f.rule, f.line, f.column, f.message, f.hint] for f in pf.findings],
        "docs": [[d.index, d.line, d.column, d.api_version, d.kind, d.namespace, d.name, list(d.prefix)]
                 for d in docs],
        "crd": any(d.kind == "CustomResourceDefinition" for d in docs),
        # kinds the blob's CRDs define, with their traits (validation_rules, scope): [group, version, kind,
        # rules, scope]. A later run knows which kinds need their schema for rules without reading it.
        "defines": [[*gvk, validation_rules(schema), scope] for d in docs if d.kind == "CustomResourceDefinition"
                    and d.api_version.startswith("apiextensions.k8s.io/")
                    for gvk, schema, scope in crd_versions(d.obj)],
        "suppress": [[list(k), [r.line, r.column, r.label, sorted(r.rules)]] for k, r in suppress.requests(docs).items()],
    }


def _findings_json(findings: list[Finding]) -> list[Any]:
    return [[f.path, f.line, f.column, f.rule, int(f.severity), f.message, f.hint,
             list(f.subject) if f.subject else None] for f in findings]


def _findings_from(rows: list[Any]) -> list[Finding]:
    return [Finding(r[0], r[1], r[2], r[3], Severity(r[4]), r[5], r[6], tuple(r[7]) if r[7] else None)
            for r in rows]
