"""The kustomize plan: kustomizations read directly where they only list files, rendered with `kubectl
kustomize` elsewhere (cached by the ids of every file the build reads), objects pointed back to their
source lines."""

from __future__ import annotations

import posixpath
from typing import Any

from .. import kustomize
from ..cache import fingerprint
from ..documents import Document
from ..findings import Finding
from .manifests import ChoosingManifests, _in_dirs
from .state import _LazyParsed
from .summaries import _findings_from, _findings_json


class KustomizePlan(ChoosingManifests):

    def kustomize_units(self, charts: list[str], out: list[Finding]) -> tuple[dict[str, list[Any]], list[Document], set[str]]:
        """Units of kustomize roots, the objects of kubectl renders, and the files kustomizations read."""
        units: dict[str, list[Any]] = {}
        rendered: list[Document] = []
        if not self.policy.config["kustomize"]["enabled"]:
            return units, rendered, set()
        kfiles = {e.path: self.parse(e.path) for e in self.entries  # (endswith first: a call less per path)
                  if e.path.endswith(kustomize.NAMES) and kustomize.is_kustomization(e.path)
                  and not e.is_link and not e.is_submodule}
        kplan = kustomize.find(self.entries, kfiles, self.read)
        out.extend(kplan.findings)
        files = {e.path for e in self.entries if not e.is_link and not e.is_submodule} if kplan.roots else set()
        broken = {f.path for f in kplan.findings}
        for d in kplan.roots:
            if kustomize.closure(kplan, d) & broken:
                continue  # already reported; kubectl would only repeat it
            unit = f"kustomize build {d or '.'}"
            if kustomize.is_simple(kplan, d, files):
                members = kustomize.simple_members(kplan, d, files)
                self._simple_members |= set(members)
                self._simple_units[unit] = [p for p in members if p in self.by_path]
                continue
            docs, problems = self.render(kplan, d, charts)
            out.extend(problems)
            self.stats.rendered += len(docs)
            units[unit] = list(docs)
            rendered.extend(docs)
        return units, rendered, kplan.consumed

    def render(self, kplan: kustomize.Plan, d: str, charts: list[str]) -> tuple[list[Document], list[Finding]]:
        """kubectl kustomize output, cached by the ids of every file under the folders the build reads."""
        # Files over the size limit are never read, not even to copy them for kubectl (they are refused anyway).
        entries = [e for e in self.entries if not _in_dirs(e.path, charts) and e.size <= self.limits.max_file_bytes]
        dirs = sorted({posixpath.dirname(p) for p in kustomize.closure(kplan, d)})
        inputs = sorted((e.path, e.oid, e.mode) for e in entries
                        if _in_dirs(e.path, dirs) or e.path in kplan.consumed)
        kubectl = kustomize.kubectl_command(self.policy.config["kustomize"]["kubectl"])  # which one renders
        key = f"render:{fingerprint(d, self.policy.config['kustomize'], kubectl, inputs)}"
        cached = self.cache.get(key)
        if cached is None:
            text, problems = kustomize.kubectl_build(
                kplan, d, entries, self.read, self.policy.config["kustomize"]["kubectl"],
                float(self.policy.limits["timeout_seconds"]),
            )
            cached = {"text": text, "findings": _findings_json(problems)}
            self.cache.put(key, cached)
        problems = _findings_from(cached["findings"])
        if cached["text"] is None:
            return [], problems
        docs, more = kustomize.documents_of(kplan, d, cached["text"], _LazyParsed(self, list(self.by_path)))
        return docs, problems + more
