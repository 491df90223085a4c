"""`kind: List` (and any `...List` kind with items): kubectl applies it item by item, so each item is a
Document of its own, at its own line, with a pointer prefix (`items/3`) for positions inside it."""

from __future__ import annotations

from typing import Any

from ..findings import Finding, finding
from .model import Document, ParsedFile


def is_list(obj: dict[str, Any]) -> bool:
    """A document kubectl applies item by item: `kind: List`, or any `...List` kind with `items`."""
    kind = obj.get("kind")
    return isinstance(kind, str) and kind.endswith("List") and ("items" in obj or kind == "List")


def expand_lists(parsed: ParsedFile) -> ParsedFile:
    """Each List document replaced by its items, each an object at its own line (nested Lists too); a
    List whose items are not a list of maps is a finding at the place that is not."""
    if not any(d.kind.endswith("List") for d in parsed.documents):
        return parsed
    out: list[Document] = []
    for doc in parsed.documents:
        _expand(doc, out, parsed.findings)
    parsed.documents[:] = out
    return parsed


def _expand(doc: Document, out: list[Document], findings: list[Finding]) -> None:
    if not is_list(doc.obj):
        out.append(doc)
        return
    items = doc.obj.get("items")
    if items is None:
        return  # an empty List
    if not isinstance(items, list):
        line, column = doc.locate(("items",))
        findings.append(finding("yaml-not-mapping", doc.path, line, column,
                                f"{doc.describe()}: items is {_what(items)}, not a list of objects", _LIST_HINT))
        return
    for i, item in enumerate(items):
        line, column = doc.locate(("items", i))
        if isinstance(item, dict):
            _expand(Document(doc.path, doc.index, line, column, item, doc.source, (*doc.prefix, "items", i)),
                    out, findings)
        else:
            findings.append(finding("yaml-not-mapping", doc.path, line, column,
                                    f"{doc.describe()}: item {i} is {_what(item)}, not an object", _LIST_HINT))


_LIST_HINT = "a List's items are objects, each with apiVersion, kind and metadata.name"


def _what(value: Any) -> str:
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, list):
        return "a list"
    return f"the scalar {str(value)[:40]!r}"
