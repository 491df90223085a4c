"""The gate server's memo of the manifests' findings: a push that changes no manifest finds again what
the last one found."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from ..checks import TREE_CHECKS
from ..findings import Finding
from ..gitrepo import Entry
from .keys import _plugins

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


def tree_key(run: RunState, manifests: list[Entry], direct_paths: set[str], consumed: set[str]) -> str | None:
    """What the findings of the manifests depend on, beyond the manifests' own blobs: a run with
    the same key finds the same (see TREE_MEMO). None where that cannot be vouched for or is not
    wanted: outside the resident gate server, without a result cache (GITOPS_HOOKS_NO_CACHE=1), with
    kubectl renders, kubeconform or plugins (their checks see the whole tree)."""
    from ..cache import MEMO
    from ..cel.previous import old_snapshot_manifests
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
    digest.update("".join(f"{e.path}\0{e.oid}\0{e.mode}\0{e.path in direct_paths:d}{e.path in consumed:d}\n"
                          for e in manifests).encode("utf-8", "surrogateescape"))
    if run.ctx.old_tree is None:  # (transition rules and admission UPDATE compare with its objects)
        digest.update(b"\1no old tree")
    else:
        try:
            old_entries = old_snapshot_manifests(run.ctx)
        except Exception:  # noqa: BLE001 - an old tree that cannot be listed: no memo
            return None
        digest.update(b"\1old tree\0" + "".join(f"{e.path}\0{e.oid}\n" for e in old_entries).encode(
            "utf-8", "surrogateescape"))
    return digest.hexdigest()
