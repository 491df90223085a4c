"""The check registry: what a check receives (CheckContext, TreeView), the four lists of checks and the
decorators that fill them. The families import it; `checks/__init__.py` imports the families."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..findings import Finding

if TYPE_CHECKING:
    from ..config import Policy
    from ..documents import Document, ParsedFile
    from ..gitrepo import Entry
    from ..schemas import CustomSchemas, KubernetesSchemas


@dataclass
class CheckContext:
    policy: Policy
    kube: KubernetesSchemas
    custom: CustomSchemas
    ref: str = ""
    old_tree: Any = None  # the snapshot before the push, when there is one (transition rules)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TreeView:
    """What tree checks see: every entry, the parsed manifest files and the objects to validate."""

    entries: list[Entry]
    parsed: Mapping[str, ParsedFile]  # read on first look (see pipeline.state._LazyParsed)
    objects: list[Document]
    # Objects grouped by the unit inside which each must be unique (a folder, a kustomize render).
    units: dict[str, list[Document]]


DocumentCheck = Callable[["Document", CheckContext], Iterable[Finding]]
FileCheck = Callable[["Entry", "bytes | None", CheckContext], Iterable[Finding]]
TreeCheck = Callable[[TreeView, CheckContext], Iterable[Finding]]
HistoryCheck = Callable[["Entry", bytes, str, CheckContext], Iterable[Finding]]

DOCUMENT_CHECKS: list[DocumentCheck] = []
FILE_CHECKS: list[FileCheck] = []
TREE_CHECKS: list[TreeCheck] = []
HISTORY_CHECKS: list[HistoryCheck] = []
ParsedCheck = Callable[["ParsedFile", CheckContext], Iterable[Finding]]
PARSED_CHECKS: list[ParsedCheck] = []


def parsed_check(fn: ParsedCheck) -> ParsedCheck:
    """Once per manifest file, with every document of it (objects or not)."""
    PARSED_CHECKS.append(fn)
    return fn


def document_check(fn: DocumentCheck) -> DocumentCheck:
    DOCUMENT_CHECKS.append(fn)
    return fn


def only_for(kinds: Iterable[str] | None = None,
             when: Callable[[CheckContext], bool] | None = None) -> Callable[[DocumentCheck], DocumentCheck]:
    """Declare where a document check can find anything: only in objects of these kinds, only in runs
    where `when(ctx)` holds. Elsewhere it would yield nothing, so the pipeline does not call it (a call
    per object and check adds up over thousands of objects)."""
    def mark(fn: DocumentCheck) -> DocumentCheck:
        fn.kinds = None if kinds is None else frozenset(kinds)  # type: ignore[attr-defined]
        fn.when = when  # type: ignore[attr-defined]
        return fn
    return mark


def document_checks(kind: str, ctx: CheckContext) -> list[DocumentCheck]:
    """The document checks to call for an object of this kind in this run (see `only_for`)."""
    memo: tuple[int, list[DocumentCheck], dict[str, list[DocumentCheck]]] | None = ctx.extra.get("document_checks")
    if memo is None or memo[0] != len(DOCUMENT_CHECKS):  # (a check registered since: start over)
        active = [c for c in DOCUMENT_CHECKS if (when := getattr(c, "when", None)) is None or when(ctx)]
        memo = (len(DOCUMENT_CHECKS), active, {})
        ctx.extra["document_checks"] = memo
    found = memo[2].get(kind)
    if found is None:
        found = memo[2][kind] = [c for c in memo[1] if (kinds := getattr(c, "kinds", None)) is None or kind in kinds]
    return found


def file_check(fn: FileCheck) -> FileCheck:
    FILE_CHECKS.append(fn)
    return fn


def tree_check(fn: TreeCheck) -> TreeCheck:
    TREE_CHECKS.append(fn)
    return fn


def history_check(fn: HistoryCheck) -> HistoryCheck:
    HISTORY_CHECKS.append(fn)
    return fn
