"""One pipeline for every entry point: a snapshot of files in, findings out.

snapshot ─► charts and manifests ─► kustomize plan and renders ─► tree memo ─► per-blob checks (cache
lookup, phase-one parsing and CRD discovery, the worker pool) ─► objects and units ─► object and tree
checks ─► suppression and policy ─► Result

The steps, one module each (a run is one object, `run.Run`, whose class is built up step by step):
`state` (the run's files, parses and parse summaries from the cache), `manifests` (which files are
manifests), `renders` (the kustomize plan), `crds` (the tree's CRDs), `blobs` (per-blob checks) and
`pool` (their workers), `memo` (the gate server's memo of a tree's findings), `run` (the steps in
order, `check_snapshot`); beside them `context` (schemas and limits), `keys` (what cached results
are keyed by), `summaries` (what a parsed blob leaves for later runs) and `result`.
"""

from __future__ import annotations

from .context import _KUBE_CACHE, kubernetes_schemas, make_context
from .keys import code_fingerprint
from .manifests import chart_dirs
from .memo import TREE_MEMO, TREE_MEMO_FINDINGS, TREE_MEMO_SIZE, remember
from .pool import MAX_WORKERS, PARALLEL_MIN
from .result import Result, Stats
from .run import Run, check_snapshot
from .state import _LazyParsed
from .summaries import DocRef

_Run = Run  # (the name tests and tools knew)

__all__ = [
    "MAX_WORKERS", "PARALLEL_MIN", "TREE_MEMO", "TREE_MEMO_FINDINGS", "TREE_MEMO_SIZE", "_KUBE_CACHE", "DocRef",
    "Result", "Run", "Stats", "_LazyParsed", "_Run", "chart_dirs", "check_snapshot", "code_fingerprint",
    "kubernetes_schemas", "make_context", "remember",
]
