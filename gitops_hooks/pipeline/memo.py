"""The gate server's memos: the manifests' findings (a push that changes no manifest finds again what the
last one found), the objects of each blob, and each path's summary and findings rows as the last run that
checked it left them (a push that changes one file builds the objects of that file only and looks up
only its rows)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..checks import TREE_CHECKS
from ..documents import Document, Pointer
from ..findings import Finding
from ..gitrepo import MODE_TREE, Entry, GitTree, Snapshot
from .keys import _plugins
from .summaries import DocRef

if TYPE_CHECKING:
    from .state import RunState

# The manifests' part of a run's findings (their parse and blob findings, the tree checks' findings and
# their suppression requests, before any is applied) by `tree_key`, in the resident gate server: a
# push that changes no manifest (a README, a CI file) finds again what the last one found, without
# building thousands of objects and running the tree checks over them. Findings are immutable; the
# requests are copied before use.
TREE_MEMO: dict[str, tuple[tuple[Finding, ...], dict[Any, Any], int]] = {}
TREE_MEMO_SIZE = 8
TREE_MEMO_FINDINGS = 20_000  # a run with more findings is not kept (the server's memory)


def remember(key: str, value: tuple[tuple[Finding, ...], dict[Any, Any], int]) -> None:
    TREE_MEMO.pop(key, None)
    if len(value[0]) > TREE_MEMO_FINDINGS:
        return
    while len(TREE_MEMO) >= TREE_MEMO_SIZE:
        del TREE_MEMO[next(iter(TREE_MEMO))]  # the oldest
    TREE_MEMO[key] = value


def tree_key(run: RunState, manifests: list[Entry], direct_paths: set[str], consumed: set[str],
             charts: list[str]) -> str | None:
    """What the findings of the manifests depend on, beyond the manifests' own blobs: a run with
    the same key finds the same (see TREE_MEMO). None where that cannot be vouched for or is not
    wanted: outside the resident gate server, without a result cache (GITOPS_HOOKS_NO_CACHE=1), with
    kubectl renders, kubeconform or plugins (their checks see the whole tree)."""
    from ..cache import MEMO
    from ..cel.previous import old_manifest_filter, old_snapshot_manifests
    from ..checks.admission import folders_stamp

    where = getattr(run.cache, "path", None)  # per repository: a run that computes it fills its cache
    if not MEMO.enabled or where is None or getattr(run.cache, "db", None) is None \
            or run.policy.config.get("engine") == "kubeconform" or _plugins() \
            or any(not c.__module__.startswith("gitops_hooks.checks.") for c in TREE_CHECKS):
        return None
    digest = hashlib.sha256()
    # (the admission folders are edited in place; the ref matters through its policy, in run.base:
    # no check reads it)
    for part in (str(where), run.base, folders_stamp(run.ctx), repr(sorted(run._simple_units.items()))):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    tree = _by_folders(run.snapshot, lambda e: e.path in run.by_manifest)
    if tree is None:
        tree = "".join(f"{e.path}\0{e.oid}\0{e.mode}\n" for e in manifests)
    # (which manifests a kustomization consumes, or reads without standing for themselves)
    roles = sorted(consumed) + ["\1"] + sorted(e.path for e in manifests if e.path not in direct_paths)
    digest.update(f"{tree}\1{repr(sorted(charts))}\1{roles}".encode("utf-8", "surrogateescape"))
    if run.ctx.old_tree is None:  # (transition rules and admission UPDATE compare with its objects)
        digest.update(b"\1no old tree")
    else:
        try:
            old = _by_folders(run.ctx.old_tree, old_manifest_filter(run.ctx))
            if old is None:
                old = "".join(f"{e.path}\0{e.oid}\n" for e in old_snapshot_manifests(run.ctx))
        except Exception:  # noqa: BLE001 - an old tree that cannot be listed: no memo
            return None
        digest.update(b"\1old tree\0" + old.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _by_folders(snapshot: Snapshot, chosen: Callable[[Entry], bool]) -> str | None:
    """What a commit's manifests are made of, cheaply: the id of each folder at the top of its tree (which
    names everything in it) and the chosen files beside them; None for a snapshot that is not a commit's
    tree. A change beside the folders that is not a manifest (a README) leaves it as it was; one inside a
    folder changes it, manifest or not (a miss, never a wrong hit)."""
    tree = getattr(snapshot, "tree", None)
    if not isinstance(snapshot, GitTree) or tree is None:
        return None
    folders = [f"{item.name}/\0{item.id}\n" for item in tree if item.filemode == MODE_TREE]
    files = [f"{e.path}\0{e.oid}\0{e.mode}\n" for e in snapshot.entries() if "/" not in e.path and chosen(e)]
    return "".join(folders) + "\1" + "".join(files)


class CurrentRun:
    """How the DocRefs kept between runs (`docrefs`) parse their document: with the run now going on,
    whose tree holds their blob at their path (it is part of their key)."""

    __slots__ = ("document",)

    def __init__(self) -> None:
        self.document: Any = None

    def __call__(self, path: str, index: int, prefix: Pointer) -> Document:
        if self.document is None:
            raise RuntimeError(f"{path}: an object kept between runs was read outside a run")
        return self.document(path, index, prefix)


CURRENT = CurrentRun()
# The DocRefs of each blob at its path (by path, blob id and the parse fingerprint, which fix its summary's
# rows), in the resident gate server only (cache.MEMO.enabled: one run at a time).
_DOCREFS: dict[tuple[str, str, str], list[DocRef]] = {}
_DOCREFS_LIMIT = 200_000  # objects kept, all blobs together
_kept = 0


def docrefs(path: str, oid: str, parse_fp: str, rows: list[Any]) -> list[DocRef]:
    """The objects of a blob's summary rows as DocRefs that read through CURRENT; the same list (never
    to be changed) for every run that finds that blob at that path."""
    global _kept
    key = (path, oid, parse_fp)
    known = _DOCREFS.get(key)
    if known is None:
        if _kept + len(rows) > _DOCREFS_LIMIT:
            _DOCREFS.clear()
            _kept = 0
        known = _DOCREFS[key] = [DocRef(path, row, CURRENT) for row in rows]
        _kept += len(rows)
    return known


# What the runs left of each path, in the resident gate server: its blob's parse summary (by the parse
# fingerprint, which with the blob id fixes it) and its findings rows (by the cache, the run's base and
# the CRDs of the tree that define kinds, which with the blob id, mode, whether it is a manifest and
# whether its objects stand for themselves fix them: everything a cache key names). A path whose blob
# or role changed is looked up in the cache as before.
_SUMMARIES: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {}
_ROWS: dict[tuple[Any, ...], dict[str, tuple[str, int, bool, bool, list[Any]]]] = {}
_PATHS_LIMIT = 100_000  # paths kept, all tables together
_paths = 0


def _table(tables: dict[Any, dict[str, Any]], key: Any) -> dict[str, Any]:
    global _paths
    if _paths > _PATHS_LIMIT:
        _SUMMARIES.clear()
        _ROWS.clear()
        _paths = 0
    return tables.setdefault(key, {})


def rows_key(where: str, base: str, crd_source: dict[Any, str]) -> tuple[Any, ...]:
    return (where, base, frozenset(crd_source.items()))


def known_summaries(parse_fp: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """path -> (blob id, summary) as runs left them (read-only)."""
    return _SUMMARIES.get(parse_fp, {})


def known_rows(key: tuple[Any, ...]) -> dict[str, tuple[str, int, bool, bool, list[Any]]]:
    """path -> (blob id, mode, direct, manifest, findings rows) as runs left them (read-only)."""
    return _ROWS.get(key, {})


def keep(parse_fp: str, key: tuple[Any, ...], summaries: dict[str, tuple[str, dict[str, Any]]],
         rows: dict[str, tuple[str, int, bool, bool, list[Any]]]) -> None:
    """Add a run's summaries (path -> (blob id, summary)) and rows to the memo."""
    global _paths
    table = _table(_SUMMARIES, parse_fp)
    before = len(table)
    table.update(summaries)
    _paths += len(table) - before
    table_rows = _table(_ROWS, key)
    before = len(table_rows)
    table_rows.update(rows)
    _paths += len(table_rows) - before
