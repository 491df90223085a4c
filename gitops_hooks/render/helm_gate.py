"""The gate's Helm step: find the releases of the tree's charts, render them (cached), and hand their
objects to the checks like any other manifest, each unit named after its release.

Renders are cached by what decides them: the chart folder's content (every path, mode and blob id
under it), the values' digest, the release name and namespace, and the engine's version. A push that
changes neither a chart nor its values renders nothing again.
"""

from __future__ import annotations

import posixpath
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..cache import NullCache, fingerprint
from ..documents import Document, Limits, ParsedFile, Pointer, parse_yaml
from ..findings import Finding, finding
from ..gitrepo import Entry
from . import helm
from .helm import Release, RenderedDocument, ValuesLayer
from .helm_sources import CHART_KINDS, Sources

FORMAT = "helm-v1"  # of cached renders
_KINDS_RE = re.compile(rb"^\s*kind:\s*[\"']?(" + b"|".join(k.encode() for k in CHART_KINDS) + rb")\b", re.M)
_KIND_NAMES = tuple(k.encode() for k in CHART_KINDS)
_ERROR_AT = re.compile(r"(?:template: |error at \()([^:\s()]+):(\d+)")  # where Helm's message says it failed
# blob id -> whether it may hold a HelmRelease, Application or ApplicationSet: in the resident gate server,
# a later push reads no blob again to find them (blob ids name their content)
_MAY_HOLD: dict[str, bool] = {}
_MAY_HOLD_SIZE = 500_000
INSTALL_HINT = "install the engine: pip install 'gitops-hooks[helm]' (./install.sh does)"


@dataclass
class Step:
    units: dict[str, list[Any]] = field(default_factory=dict)
    documents: list[Document] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    rendered_from: set[tuple[str, int]] = field(default_factory=set)  # (path, index) of objects whose releases rendered


def chart_dirs(entries: Iterable[Entry]) -> list[str]:
    return sorted(posixpath.dirname(e.path) for e in entries
                  if e.path.endswith("Chart.yaml") and posixpath.basename(e.path) == "Chart.yaml")


def annotate(doc: Any, found: Iterable[Finding]) -> Iterable[Finding]:
    """Findings of an object, naming its release and values when a template produced it (most messages
    do already, through `RenderedDocument.describe`)."""
    if not isinstance(doc, RenderedDocument):
        return found
    label = f"[{doc.release}]"
    return [f if label in f.message else replace(f, message=f"{f.message} {label}") for f in found]


class HelmStep:
    def __init__(self, entries: list[Entry], manifests: list[Entry], read: Callable[[Entry], bytes],
                 parse: Callable[[str], ParsedFile], config: dict[str, Any], limits: Limits, timeout: float,
                 cache: NullCache, asks: Callable[[str], bool] | None = None, alone: bool = True) -> None:
        """asks: which files' HelmReleases and Applications count (all by default); alone: whether charts
        that none of them renders are rendered with their own values files."""
        self.asks = asks or (lambda _: True)
        self.alone = alone
        self.entries = entries
        self.by_path = {e.path: e for e in entries}
        self.manifests = manifests
        self.read = read
        self.parse = parse
        self.config = config
        self.limits = limits
        self.timeout = max(1.0, min(timeout * 0.8, timeout - 2))  # the push's own limit is the whole
        self.cache = cache
        self.texts: dict[str, ParsedFile] = {}

    def run(self) -> Step:
        step = Step()
        charts = chart_dirs(self.entries)
        if not self.config.get("enabled", True):
            step.findings.extend(finding("helm-chart", posixpath.join(d, "Chart.yaml"), 1, 1, f"Helm chart {d or '.'}: "
                                         "not rendered (helm.enabled is false)") for d in charts)
            return step
        objects = [d for e in self.manifests if self.asks(e.path) and self._may_hold(e)
                   for d in self.parse(e.path).documents if d.kind in CHART_KINDS]
        if not charts and not objects:
            return step
        sources = Sources(charts, objects, self.lookup, self.config.get("repository_urls", []), self.text)
        found = sources.find({e.path for e in self.entries}, self.alone)
        step.findings.extend(found.findings)
        version = helm.engine_version()
        if version is None:
            for chart in sorted({r.chart for r in found.releases}):
                step.findings.append(finding("helm-chart", posixpath.join(chart, "Chart.yaml"), 1, 1,
                                             f"Helm chart {chart or '.'}: not rendered, no Helm engine is installed",
                                             INSTALL_HINT))
            return step
        ready = [r for r in found.releases if self._ready(r, step)]
        outcomes = self.render(ready, version)
        for release, result in zip(ready, outcomes, strict=True):
            self.add(step, release, result)
        rendered: dict[str, list[str]] = {}
        for release in ready:
            rendered.setdefault(release.chart, []).append(release.label)
        for chart, labels in sorted(rendered.items()):
            step.findings.append(finding("helm-chart", posixpath.join(chart, "Chart.yaml"), 1, 1,
                                         f"Helm chart {chart or '.'}: rendered as " + "; ".join(labels)))
        return step

    # ------------------------------------------------------------------------ reading the tree

    def _bytes(self, e: Entry) -> bytes:
        if e.is_link or e.is_submodule or e.size > self.limits.max_file_bytes:
            return b""
        return self.read(e)

    def _may_hold(self, e: Entry) -> bool:
        found = _MAY_HOLD.get(e.oid)
        if found is None:
            if len(_MAY_HOLD) >= _MAY_HOLD_SIZE:
                _MAY_HOLD.clear()
            data = self._bytes(e)  # (the kinds' names looked for first: a regex over every line costs more)
            found = _MAY_HOLD[e.oid] = any(k in data for k in _KIND_NAMES) and _KINDS_RE.search(data) is not None
        return found

    def text(self, path: str) -> str | None:
        e = self.by_path.get(path)
        if e is None or e.is_link or e.is_submodule:
            return None
        return self._bytes(e).decode("utf-8", "replace")

    def parsed(self, path: str) -> ParsedFile:
        if path not in self.texts:
            self.texts[path] = parse_yaml(path, self.text(path) or "", self.limits)
        return self.texts[path]

    def lookup(self, kind: str, namespace: str, name: str) -> Document | None:
        """The object of that kind and name in the tree (in that namespace, or with none written)."""
        needle, kneedle = name.encode(), kind.encode()
        loose = None
        for e in self.manifests:
            data = self._bytes(e)
            if needle not in data or kneedle not in data:
                continue
            for d in self.parse(e.path).documents:
                if d.kind == kind and d.name == name:
                    if d.namespace == namespace:
                        return d
                    loose = loose or (d if not d.namespace else None)
        return loose

    def locate(self, layer: ValuesLayer, pointer: Pointer) -> int:
        pf = self.parse(layer.path) if layer.path in {e.path for e in self.manifests} else self.parsed(layer.path)
        doc = next((d for d in pf.documents if d.index == layer.index), None)
        return doc.locate(tuple(layer.pointer) + tuple(pointer))[0] if doc is not None else 1

    # ------------------------------------------------------------------------ rendering

    def _ready(self, release: Release, step: Step) -> bool:
        chart_yaml = helm.load_yaml_map(self.text(posixpath.join(release.chart, "Chart.yaml")) or "")
        path = posixpath.join(release.chart, "Chart.yaml")
        if chart_yaml is None:
            step.findings.append(finding("helm-render", path, 1, 1, "Chart.yaml is not a YAML map"))
            return False
        missing = helm.missing_dependencies(release.chart, chart_yaml, helm.chart_files(self.entries, release.chart))
        if missing:
            line = self.parsed(path).documents[0].locate(("dependencies",))[0] if self.parsed(path).documents else 1
            problem = finding("helm-render", path, line, 1, f"{release.label}: dependency "
                              f"{', '.join(missing)} is not vendored under charts/ (nothing is downloaded at push)",
                              "run `helm dependency build` and commit the charts/ folder")
            if problem not in step.findings:
                step.findings.append(problem)
            return False
        return True

    def key(self, release: Release, version: str) -> str:
        files = helm.chart_files(self.entries, release.chart)
        return "helm:" + fingerprint(FORMAT, version, helm.chart_digest(files), release.merged(), release.name,
                                     release.namespace)

    def render(self, releases: list[Release], version: str) -> list[dict[str, Any]]:
        keys = [self.key(r, version) for r in releases]
        results: dict[str, Any] = self.cache.get_many(sorted(set(keys)))
        todo = [(k, r) for k, r in zip(keys, releases, strict=True) if k not in results]
        if todo:
            jobs, seen = [], set()
            with tempfile.TemporaryDirectory(prefix="gitops-hooks-helm-") as tmp:
                folders: dict[str, Path] = {}
                for k, r in todo:
                    if k in seen:
                        continue
                    seen.add(k)
                    if r.chart not in folders:
                        place = Path(tmp) / str(len(folders))
                        place.mkdir()
                        folders[r.chart] = helm.materialize(helm.chart_files(self.entries, r.chart), r.chart,
                                                            self.read, place)
                    jobs.append((k, {"chart": str(folders[r.chart]), "values": r.merged(), "name": r.name,
                                     "namespace": r.namespace}))
                answers = helm.run_engine([j for _, j in jobs], self.timeout)
            for (k, _), answer in zip(jobs, answers, strict=True):
                results[k] = answer
                if "engine failed" not in answer.get("error", "") and "longer than" not in answer.get("error", ""):
                    self.cache.put(k, answer)
        return [results[k] for k in keys]

    def add(self, step: Step, release: Release, result: dict[str, Any]) -> None:
        chart_path = posixpath.join(release.chart, "Chart.yaml")
        schema_text = self.text(posixpath.join(release.chart, "values.schema.json"))
        if schema_text is not None:
            step.findings.extend(self.schema_problems(release, schema_text))
        if "error" in result:  # (a render that took too long was bounded by its share of the push's time)
            step.findings.append(self.render_error(release, str(result["error"]), chart_path))
            return
        step.rendered_from.add(release.origin)
        templates = {p: self.text(p) or "" for p in self._templates(release.chart)}
        outcome = helm.documents_of(release, result["manifests"], templates, self.limits)
        crds = [d for p in self._crd_files(release.chart) for d in self.parsed(p).documents if d.is_object]
        step.findings.extend(outcome.findings)
        docs = crds + outcome.documents
        step.units[f"helm {release.label}"] = list(docs)
        step.documents.extend(d for d in docs if d not in crds or d not in step.documents)

    def _templates(self, chart: str) -> list[str]:
        return [e.path for e in helm.chart_files(self.entries, chart) if "/templates/" in "/" + e.path[len(chart):]]

    def _crd_files(self, chart: str) -> list[str]:
        base = posixpath.join(chart, "crds") + "/" if chart else "crds/"
        return [e.path for e in self.entries if e.path.startswith(base) and e.path.endswith((".yaml", ".yml"))]

    def schema_problems(self, release: Release, text: str) -> list[Finding]:
        import json

        schema_path = posixpath.join(release.chart, "values.schema.json")
        try:
            schema = json.loads(text)
        except ValueError as exc:
            return [finding("helm-values", schema_path, 1, 1, f"values.schema.json is not JSON: {exc}")]
        if not isinstance(schema, dict):
            return [finding("helm-values", schema_path, 1, 1, "values.schema.json must be a JSON object")]
        defaults_path = posixpath.join(release.chart, "values.yaml")
        defaults = helm.load_yaml_map(self.text(defaults_path) or "") or {}
        return helm.values_problems(release, schema, defaults, self.locate, defaults_path)

    def render_error(self, release: Release, error: str, chart_path: str) -> Finding:
        """Helm's error, at the template and line it names when it names one."""
        m = _ERROR_AT.search(error)
        if m and "/" in m.group(1):
            path = posixpath.join(release.chart, m.group(1).split("/", 1)[1])
            if path in self.by_path:
                return finding("helm-render", path, int(m.group(2)), 1, f"{release.label}: {_short(error)}")
        return finding("helm-render", chart_path, 1, 1, f"{release.label}: {_short(error)}")


def _short(error: str) -> str:
    return " ".join(error.split())[:400]
