"""Which releases of the tree's charts to render: Flux HelmReleases, Argo CD Applications (and the
elements of ApplicationSet list generators) whose chart is a folder of this repository, and the charts
that nothing references (with their default values and each values file beside them).

"This repository" is a GitRepository named `flux-system` (what `flux bootstrap` creates for the
repository it writes to), or one whose `spec.url` the administrator lists in `helm.repository_urls`;
an Argo CD source whose `repoURL` is listed there. Charts from a HelmRepository, an OCI registry or
another git repository are never downloaded at push: an info finding says they were not rendered.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..documents import Document
from ..findings import Finding, finding
from .helm import Release, ValuesLayer, load_yaml_map

CHART_KINDS = ("HelmRelease", "Application", "ApplicationSet")
VALUES_PATTERNS = ("values-*.yaml", "values-*.yml", "ci/*-values.yaml", "ci/*-values.yml")
FLUX_BOOTSTRAP = "flux-system"


@dataclass
class Found:
    releases: list[Release]
    findings: list[Finding]
    referenced: set[str]  # chart folders some HelmRelease or Application renders


Lookup = Callable[[str, str, str], Document | None]  # (kind, namespace, name) -> the object in the tree


def normal_url(url: str) -> str:
    url = url.strip().rstrip("/")
    url = re.sub(r"\.git$", "", url)
    return re.sub(r"^(ssh://)?git@([^:/]+)[:/]", r"\2/", re.sub(r"^[a-z+]+://", "", url.lower()))


class Sources:
    def __init__(self, charts: list[str], objects: Iterable[Document], lookup: Lookup,
                 repository_urls: Iterable[str], values_text: Callable[[str], str | None]) -> None:
        self.charts = charts
        self.objects = list(objects)
        self.lookup = lookup
        self.urls = {normal_url(u) for u in repository_urls}
        self.values_text = values_text  # path in the tree -> text, or None if there is no such file
        self.out = Found([], [], set())

    def find(self, files: set[str], alone: bool = True) -> Found:
        for doc in self.objects:
            if doc.kind == "HelmRelease" and doc.group == "helm.toolkit.fluxcd.io":
                self.helm_release(doc)
            elif doc.kind == "Application" and doc.group == "argoproj.io":
                self.application(doc, doc.obj, (), doc.name)
            elif doc.kind == "ApplicationSet" and doc.group == "argoproj.io":
                self.application_set(doc)
        for chart in self.charts if alone else []:
            if chart not in self.out.referenced and not _is_subchart(chart, self.charts):
                self.alone(chart, files)
        return self.out

    def note(self, doc: Document, pointer: tuple[str | int, ...], message: str, rule: str = "helm-not-rendered",
             hint: str = "") -> None:
        line, col = doc.locate(pointer)
        self.out.findings.append(finding(rule, doc.path, line, col, message, hint))

    # ------------------------------------------------------------------------ Flux

    def helm_release(self, doc: Document) -> None:
        spec = _map(doc.obj, "spec")
        who = f"HelmRelease {doc.namespace + '/' if doc.namespace else ''}{doc.name}"
        if "chartRef" in spec:
            ref = _map(spec, "chartRef")
            self.note(doc, ("spec", "chartRef"), f"{who}: chart from {ref.get('kind', 'a chartRef')} "
                      f"{ref.get('name', '')}: not downloaded at push, not rendered")
            return
        chart_spec = _map(_map(spec, "chart"), "spec")
        if not chart_spec:
            return
        ref = _map(chart_spec, "sourceRef")
        kind, source = str(ref.get("kind", "")), str(ref.get("name", ""))
        if kind not in ("GitRepository", "HelmRepository", "Bucket"):
            return  # a partial HelmRelease (a kustomize patch), or a kind the schema check refuses
        if kind != "GitRepository":
            where = "an OCI registry" if kind == "HelmRepository" and self._is_oci(ref, doc) else f"{kind} {source}"
            self.note(doc, ("spec", "chart", "spec", "sourceRef"), f"{who}: chart {chart_spec.get('chart', '')!s} "
                      f"comes from {where}: not downloaded at push, not rendered")
            return
        if not self._is_this_repository(ref, doc):
            self.note(doc, ("spec", "chart", "spec", "sourceRef"), f"{who}: GitRepository {source} is not known as "
                      "this repository: chart not rendered",
                      "list its url under helm.repository_urls in the server's configuration")
            return
        chart = self.chart_at(str(chart_spec.get("chart", "")), "")
        if chart is None:
            self.note(doc, ("spec", "chart", "spec", "chart"), f"{who}: {chart_spec.get('chart')!s} is not a chart "
                      "folder of this commit (no Chart.yaml)", "helm-render")
            return
        namespace = str(spec.get("targetNamespace") or doc.namespace or "default")
        name = str(spec.get("releaseName") or (f"{spec['targetNamespace']}-{doc.name}"
                                                if spec.get("targetNamespace") else doc.name))
        layers = [layer for vf in chart_spec.get("valuesFiles") or [] if isinstance(vf, str)
                  for layer in self.values_file(posixpath.normpath(vf), doc, ("spec", "chart", "spec", "valuesFiles"))]
        for i, item in enumerate(spec.get("valuesFrom") or []):
            if isinstance(item, dict):
                layers.extend(self.values_from(doc, who, i, item))
        if isinstance(spec.get("values"), dict):
            layers.append(ValuesLayer(f"{doc.path} spec.values", spec["values"], doc.path, doc.index, ("spec", "values")))
        self.add(Release(chart, name, namespace, tuple(layers), f"{who} ({doc.path}:{doc.line})", (doc.path, doc.index)))

    def _is_oci(self, ref: dict[str, Any], doc: Document) -> bool:
        repo = self.lookup("HelmRepository", str(ref.get("namespace") or doc.namespace), str(ref.get("name", "")))
        spec = repo.obj.get("spec") if repo is not None else None
        return isinstance(spec, dict) and (spec.get("type") == "oci" or str(spec.get("url", "")).startswith("oci://"))

    def _is_this_repository(self, ref: dict[str, Any], doc: Document) -> bool:
        name = str(ref.get("name", ""))
        repo = self.lookup("GitRepository", str(ref.get("namespace") or doc.namespace), name)
        url = _map(repo.obj, "spec").get("url") if repo is not None else None
        if isinstance(url, str) and normal_url(url) in self.urls:
            return True
        return name == FLUX_BOOTSTRAP

    def values_from(self, doc: Document, who: str, i: int, item: dict[str, Any]) -> list[ValuesLayer]:
        kind, name = str(item.get("kind", "")), str(item.get("name", ""))
        key = str(item.get("valuesKey") or "values.yaml")
        source = self.lookup(kind, doc.namespace, name) if kind in ("ConfigMap", "Secret") else None
        text = _data(source.obj, key) if source is not None else None
        if text is None:
            if not item.get("optional"):
                self.note(doc, ("spec", "valuesFrom", i), f"{who}: values from {kind} {name} (key {key}) are not in "
                          "this commit: unknown at push, rendered without them")
            return []
        assert source is not None
        target = item.get("targetPath")
        if isinstance(target, str) and target:
            values = set_path({}, target, text)
        else:
            loaded = load_yaml_map(text)
            if loaded is None:
                self.note(source, ("data", key), f"{who}: {kind} {name} key {key} is not a YAML map of values",
                          "helm-values")
                return []
            values = loaded
        return [ValuesLayer(f"{kind} {name} ({source.path})", values, source.path, source.index, ("data", key))]

    # ------------------------------------------------------------------------ Argo CD

    def application(self, doc: Document, obj: dict[str, Any], at: tuple[str | int, ...], name: str) -> None:
        spec = _map(obj, "spec")
        sources: list[tuple[tuple[str | int, ...], dict[str, Any]]] = \
            [(("spec", "source"), spec["source"])] if isinstance(spec.get("source"), dict) else []
        sources += [(("spec", "sources", i), s) for i, s in enumerate(spec.get("sources") or []) if isinstance(s, dict)]
        dest = _map(spec, "destination")
        who = f"Application {name}"
        for pointer, source in sources:
            here = at + pointer
            if source.get("chart"):
                self.note(doc, here + ("chart",), f"{who}: chart {source['chart']!s} from {source.get('repoURL', '')!s}: "
                          "not downloaded at push, not rendered")
                continue
            if normal_url(str(source.get("repoURL", ""))) not in self.urls or not isinstance(source.get("path"), str):
                continue
            chart = self.chart_at(source["path"], "")
            if chart is None:
                continue  # a folder of manifests or a kustomization: checked as such
            helm = _map(source, "helm")
            layers = [layer for vf in helm.get("valueFiles") or [] if isinstance(vf, str)
                      for layer in self.values_file(posixpath.normpath(posixpath.join(chart, vf)), doc,
                                                    here + ("helm", "valueFiles"), bool(helm.get("ignoreMissingValueFiles")))]
            if isinstance(helm.get("values"), str):
                values = load_yaml_map(helm["values"])
                if values is None:
                    self.note(doc, here + ("helm", "values"), f"{who}: helm.values is not a YAML map", hint="",
                              rule="helm-values")
                else:
                    layers.append(ValuesLayer(f"{doc.path} helm.values", values, doc.path, doc.index, here + ("helm", "values")))
            if isinstance(helm.get("valuesObject"), dict):
                layers.append(ValuesLayer(f"{doc.path} helm.valuesObject", helm["valuesObject"], doc.path, doc.index,
                                          here + ("helm", "valuesObject")))
            params: dict[str, Any] = {}
            for p in helm.get("parameters") or []:
                if isinstance(p, dict) and isinstance(p.get("name"), str):
                    value = p.get("value", "")
                    params = set_path(params, p["name"], str(value) if p.get("forceString") else _scalar(value))
            if params:
                layers.append(ValuesLayer(f"{doc.path} helm.parameters", params, doc.path, doc.index,
                                          here + ("helm", "parameters")))
            release = str(helm.get("releaseName") or name)
            self.add(Release(chart, release, str(dest.get("namespace") or "default"), tuple(layers),
                             f"{who} ({doc.path}:{doc.line})", (doc.path, doc.index)))

    def application_set(self, doc: Document) -> None:
        spec = _map(doc.obj, "spec")
        template = spec.get("template")
        if not isinstance(template, dict):
            return
        go = bool(spec.get("goTemplate"))
        for g in spec.get("generators") or []:
            elements = _map(g, "list").get("elements")
            for element in elements or []:
                if isinstance(element, dict):
                    app = substitute(template, element, go)
                    meta = _map(app, "metadata")
                    self.application(doc, app, ("spec", "template"), str(meta.get("name") or doc.name))

    # ------------------------------------------------------------------------ charts alone

    def alone(self, chart: str, files: set[str]) -> None:
        base = chart + "/" if chart else ""
        name = posixpath.basename(chart) or "release"
        self.add(Release(chart, name, "default", (), ""))
        for path in sorted(files):
            if path.startswith(base) and any(fnmatch.fnmatchcase(path[len(base):], p) for p in VALUES_PATTERNS):
                text = self.values_text(path)
                values = load_yaml_map(text or "")
                if values is not None:
                    self.add(Release(chart, name, "default", (ValuesLayer(path, values, path),), ""))

    # ------------------------------------------------------------------------ shared

    def add(self, release: Release) -> None:
        self.out.releases.append(release)
        if release.by:
            self.out.referenced.add(release.chart)

    def chart_at(self, path: str, base: str) -> str | None:
        d = posixpath.normpath(posixpath.join(base, path.strip("/"))) if path.strip("/") not in ("", ".") else ""
        d = "" if d == "." else d
        return d if d in self.charts else None

    def values_file(self, path: str, doc: Document, pointer: tuple[str | int, ...],
                    missing_ok: bool = False) -> list[ValuesLayer]:
        text = self.values_text(path)
        if text is None:
            if not missing_ok:
                self.note(doc, pointer, f"values file {path} does not exist in this commit", "helm-values")
            return []
        values = load_yaml_map(text)
        if values is None:
            self.out.findings.append(finding("helm-values", path, 1, 1, "a values file must be one YAML map"))
            return []
        return [ValuesLayer(path, values, path)]


def _map(obj: Any, key: str) -> dict[str, Any]:
    """obj[key] where both are maps, else an empty map (fields of objects are read defensively)."""
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, dict) else {}


def _is_subchart(chart: str, charts: list[str]) -> bool:
    return any(other != chart and (other == "" or chart.startswith(other + "/")) for other in charts)


def _data(obj: dict[str, Any], key: str) -> str | None:
    for field_name in ("stringData", "data"):
        data = obj.get(field_name)
        if isinstance(data, dict) and isinstance(data.get(key), str):
            if field_name == "data" and obj.get("kind") == "Secret":
                try:
                    return base64.b64decode(data[key], validate=True).decode("utf-8")
                except (ValueError, UnicodeDecodeError):
                    return None
            return str(data[key])
    return None


def _scalar(value: Any) -> Any:
    """A `--set` value: numbers and booleans as such, the rest as text."""
    if not isinstance(value, str):
        return value
    if value in ("true", "false"):
        return value == "true"
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    return value


def set_path(values: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """values with `a.b.c` set to value (Helm's --set path, dots escaped with a backslash)."""
    parts = [p.replace("\0", ".") for p in dotted.replace("\\.", "\0").split(".")]
    out = json.loads(json.dumps(values))
    node = out
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value
    return out


_FAST = re.compile(r"\{\{\s*([\w.-]+)\s*\}\}")
_GO = re.compile(r"\{\{\s*\.([\w.]+)\s*\}\}")


def substitute(template: Any, element: dict[str, Any], go: bool) -> Any:
    """An ApplicationSet template with one list element's parameters put in (`{{key}}`, `{{.key}}`)."""
    def value_of(path: str) -> str | None:
        node: Any = element
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node if isinstance(node, str) else json.dumps(node)

    def fill(text: str) -> str:
        pattern = _GO if go else _FAST
        return pattern.sub(lambda m: v if (v := value_of(m.group(1))) is not None else m.group(0), text)

    if isinstance(template, dict):
        return {fill(k) if isinstance(k, str) else k: substitute(v, element, go) for k, v in template.items()}
    if isinstance(template, list):
        return [substitute(v, element, go) for v in template]
    return fill(template) if isinstance(template, str) else template
