"""A run, step by step: charts and manifests, the kustomize plan, the tree memo, per-blob checks, the
objects and their units, object and tree checks, suppression and policy, the result (`check_snapshot`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..cache import MEMO, NullCache
from ..checks import TREE_CHECKS, CheckContext, TreeView, document_checks
from ..config import Policy
from ..documents import Document
from ..findings import Finding, finding
from ..gitrepo import Entry, Snapshot
from ..render.helm_gate import HelmStep, annotate
from . import memo
from .blobs import BlobChecks
from .context import make_context
from .manifests import chart_dirs
from .result import Result
from .state import _LazyParsed
from .summaries import DocRef


def check_snapshot(
    snapshot: Snapshot,
    policy: Policy,
    ref: str = "",
    progress: Callable[[int, int], None] | None = None,
    context: CheckContext | None = None,
    cache: NullCache | None = None,
) -> Result:
    """`progress(done, total)` is called as files are read (done < total: files taken so far of those
    the cache does not answer), then once with done == total, the number of manifests, when every file
    is read and what is left checks them."""
    started = time.perf_counter()
    ctx = context or make_context(policy, ref)
    run = Run(snapshot, policy, ctx, cache or NullCache(), progress)
    try:
        findings = run.findings()
    finally:
        memo.CURRENT.document = None  # (the run is over: objects kept between runs do not keep it alive)
    run.cache.flush()
    run.stats.seconds = time.perf_counter() - started
    return Result(snapshot.label, findings, run.stats)


Units = dict[str, list[Any]]


class Run(BlobChecks):
    """One pass of the pipeline over one snapshot, its steps in order."""

    def findings(self) -> list[Finding]:
        out: list[Finding] = []
        charts = self.charts(out)
        manifests = self.manifests(charts, out)
        self.stats.manifests = len(manifests)
        units, rendered, consumed = self.kustomize_units(charts, out)
        self.helm(manifests, units, rendered, out)
        direct_paths = {e.path for e in manifests if e.path not in consumed} | self._simple_members
        key = memo.tree_key(self, manifests, direct_paths, consumed, charts) if not rendered else None
        remembered = memo.TREE_MEMO.get(key) if key is not None else None
        if remembered is not None:  # the manifests' part as a run on the same manifests found it
            found, wanted, self.stats.objects = remembered
            self._all_read(manifests)
            return self._applied([*out, *found, *self._other_files(direct_paths)], dict(wanted))
        manifest_part = len(out)  # what `out` holds from here on comes from the manifests alone
        self.blob_work(manifests, direct_paths, rendered)
        self._all_read(manifests)
        summaries = [self.summary(e) for e in manifests]  # each looked up once (blob_work made them)
        out.extend(self.parse_findings(manifests, summaries))
        objects = self.objects(manifests, summaries, direct_paths, consumed, units, rendered)
        out.extend(self.object_findings(manifests, direct_paths, rendered, objects))
        out.extend(self.tree_findings(manifests, objects, units))
        wanted = self.suppression_requests(manifests, summaries, direct_paths, rendered)
        if key is not None:
            memo.remember(key, (tuple(out[manifest_part:]), dict(wanted), self.stats.objects))
        others = self._other_files(direct_paths)
        self.keep_rows(direct_paths)  # (every file's rows known now)
        return self._applied([*out, *others], wanted)

    def charts(self, out: list[Finding]) -> list[str]:
        """Folders with a Chart.yaml: their templates are not read as manifests (the Helm step renders them)."""
        return chart_dirs(self.entries)

    def helm(self, manifests: list[Entry], units: Units, rendered: list[Document], out: list[Finding]) -> None:
        """The Helm releases of the tree, rendered with Helm's engine: their objects join the rendered ones."""
        helm = HelmStep(self.entries, manifests, self.read, self.parse, self.policy.config["helm"], self.limits,
                        float(self.policy.limits["timeout_seconds"]), self.cache).run()
        out.extend(helm.findings)
        units.update(helm.units)
        rendered.extend(helm.documents)
        self.stats.rendered += len(helm.documents)

    def _all_read(self, manifests: list[Entry]) -> None:
        if self.progress is not None:
            self.progress(len(manifests), len(manifests))  # every file read: what is left checks them

    @staticmethod
    def parse_findings(manifests: list[Entry], summaries: list[dict[str, Any]]) -> list[Finding]:
        """What reading each manifest found (YAML, limits, List items), from its summary."""
        return [finding(r, e.path, line, col, msg, hint)
                for e, s in zip(manifests, summaries, strict=True) if s["findings"]
                for r, line, col, msg, hint in s["findings"]]

    def objects(self, manifests: list[Entry], summaries: list[dict[str, Any]], direct_paths: set[str],
                consumed: set[str], units: Units, rendered: list[Document]) -> list[Any]:
        """Every object to check (DocRefs of the blobs' objects, then the renders'), each also put in the
        unit inside which it must be unique (a folder, a kustomize build)."""
        for unit, paths in self._simple_units.items():
            units[unit] = [DocRef(p, row, self.document) for p in paths for row in self._rows(p)]
        refs: list[DocRef] = []
        load = self.document
        kept = MEMO.enabled  # the resident gate server: each blob's DocRefs built once (see memo.docrefs)
        if kept:
            memo.CURRENT.document = load
        for e, s in zip(manifests, summaries, strict=True):
            if e.path in direct_paths:
                docs = memo.docrefs(e.path, e.oid, self.parse_fp, s["docs"]) if kept \
                    else [DocRef(e.path, row, load) for row in s["docs"]]
                refs.extend(docs)
                if e.path not in consumed:  # (a tree's paths have no leading, trailing or double slash)
                    units.setdefault(f"folder {e.path.rpartition('/')[0] or '.'}", []).extend(docs)
        objects: list[Any] = [*refs, *rendered]
        self.stats.objects = len(objects)
        return objects

    def object_findings(self, manifests: list[Entry], direct_paths: set[str], rendered: list[Document],
                        objects: list[Any]) -> list[Finding]:
        """The blobs' findings (cached or computed by blob_work), the rendered objects' document checks,
        and kubeconform's where the schema check is delegated to it."""
        out: list[Finding] = []
        for e in manifests:
            out.extend(self.blob_findings(e, e.path in direct_paths))
        for doc in rendered:
            for check in document_checks(doc.kind, self.ctx):
                out.extend(annotate(doc, check(doc, self.ctx)))  # (a Helm release's objects name it)
        if self.policy.config.get("engine") == "kubeconform":
            from .. import kubeconform

            out.extend(kubeconform.check([o.document if isinstance(o, DocRef) else o for o in objects], self.ctx))
        return out

    def tree_findings(self, manifests: list[Entry], objects: list[Any], units: Units) -> list[Finding]:
        """The tree checks, once per run over every object (duplicates, admission, transition rules...)."""
        view = TreeView(self.entries, _LazyParsed(self, [e.path for e in manifests]), objects, units)
        return [f for tcheck in TREE_CHECKS for f in tcheck(view, self.ctx)]

    @staticmethod
    def suppression_requests(manifests: list[Entry], summaries: list[dict[str, Any]], direct_paths: set[str],
                             rendered: list[Document]) -> dict[Any, Any]:
        """The objects' requests to suppress findings (annotations), by subject."""
        from .. import suppress

        wanted = suppress.requests(rendered)
        for e, s in zip(manifests, summaries, strict=True):
            if e.path in direct_paths:
                for subject, (line, col, label, rules) in s["suppress"]:
                    wanted[tuple(subject)] = suppress.Request(e.path, line, col, label, frozenset(rules))
        return wanted

    def _other_files(self, direct_paths: set[str]) -> list[Finding]:
        """The findings of the files that are not manifests (file checks: secrets, scripts, pipelines)."""
        out: list[Finding] = []
        for e in self.entries:
            if e.path not in self.by_manifest:
                out.extend(self.blob_findings(e, e.path in direct_paths))
        return out

    def _applied(self, found: list[Finding], wanted: dict[Any, Any]) -> list[Finding]:
        """The run's answer: suppression requests, then the policy's severities and allowances."""
        from .. import suppress

        return sorted(set(self.policy.apply(suppress.apply_requests(found, wanted, self.policy))))
