"""One pipeline for every entry point: a snapshot of files in, findings out.

snapshot ─► classify entries ─► parse manifests ─► kustomize plan and renders ─► schemas (CRDs of the
tree, the administrator's folders, bundled) ─► document, file and tree checks ─► policy ─► Result
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import kubeconform, kustomize
from .checks import DOCUMENT_CHECKS, FILE_CHECKS, TREE_CHECKS, CheckContext, TreeView
from .config import Policy, matches
from .documents import Document, Limits, ParsedFile, parse
from .findings import Finding, Severity, finding
from .gitrepo import Entry, Snapshot
from .schemas import CustomSchemas, KubernetesSchemas, definition_closure, load_bundled


@dataclass
class Stats:
    files: int = 0
    manifests: int = 0
    objects: int = 0
    rendered: int = 0
    seconds: float = 0.0


@dataclass
class Result:
    label: str
    findings: list[Finding]
    stats: Stats = field(default_factory=Stats)

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity is Severity.ERROR)

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.severity is Severity.WARNING)

    @property
    def ok(self) -> bool:
        return self.errors == 0


_KUBE_CACHE: dict[tuple[str, bool], KubernetesSchemas] = {}


def kubernetes_schemas(version: str, strict: bool) -> KubernetesSchemas:
    key = (version, strict)
    if key not in _KUBE_CACHE:
        _KUBE_CACHE[key] = KubernetesSchemas(version, strict)
    return _KUBE_CACHE[key]


def limits_of(policy: Policy) -> Limits:
    lim = policy.limits
    return Limits(
        max_file_bytes=lim["max_file_bytes"],
        max_documents=lim["max_documents_per_file"],
        max_nodes=lim["max_alias_expansion"],
    )


def chart_dirs(entries: list[Entry]) -> list[str]:
    return sorted(posixpath.dirname(e.path) for e in entries if posixpath.basename(e.path) == "Chart.yaml")


def _in_dirs(path: str, dirs: list[str]) -> bool:
    return any(d == "" or path.startswith(d + "/") for d in dirs)


def make_context(policy: Policy, ref: str = "") -> CheckContext:
    kube = kubernetes_schemas(policy.kubernetes_version, policy.strict)
    meta_name = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    object_meta = definition_closure(kube.defs, meta_name)
    custom = CustomSchemas(policy.strict, object_meta, "tree")
    load_bundled(custom)
    for folder in policy.config.get("schema_dirs", []):
        _load_schema_dir(Path(folder), custom)
    return CheckContext(policy=policy, kube=kube, custom=custom, ref=ref)


def _load_schema_dir(folder: Path, custom: CustomSchemas) -> None:
    if not folder.is_dir():
        raise FileNotFoundError(f"schema_dirs: {folder} is not a folder")
    for path in sorted(folder.rglob("*")):
        if path.suffix not in (".yaml", ".yml", ".json") or not path.is_file():
            continue
        pf = parse(str(path), path.read_bytes())
        for doc in pf.documents:
            if doc.kind == "CustomResourceDefinition":
                custom.add_crd(doc.obj, f"{path}")


def check_snapshot(
    snapshot: Snapshot,
    policy: Policy,
    ref: str = "",
    progress: Callable[[int, int], None] | None = None,
    context: CheckContext | None = None,
) -> Result:
    started = time.perf_counter()
    ctx = context or make_context(policy, ref)
    entries = [e for e in snapshot.entries() if not matches(e.path, policy.path_exclude)]
    stats = Stats(files=len(entries))
    findings: list[Finding] = []
    limits = limits_of(policy)

    charts = chart_dirs(entries)
    for d in charts:
        findings.append(finding("helm-chart", posixpath.join(d, "Chart.yaml"), 1, 1,
                                f"Helm chart {d or '.'}: recognised as a chart; its templates are not validated"))

    manifest_paths = {
        e.path for e in entries
        if matches(e.path, policy.include) and not matches(e.path, policy.manifest_exclude)
        and not _in_dirs(e.path, charts) and e.path != ".gitops-hooks.yaml"
    }
    data_cache: dict[str, bytes] = {}

    def read(e: Entry) -> bytes:
        if e.path not in data_cache:
            data_cache[e.path] = snapshot.read(e)
        return data_cache[e.path]

    parsed: dict[str, ParsedFile] = {}
    total = len(manifest_paths)
    for e in entries:
        if e.is_submodule:
            findings.append(finding("tree-submodule", e.path, 1, 1, f"submodule {e.path} ({e.oid[:12]}): not checked"))
            continue
        if e.path not in manifest_paths:
            continue
        if e.is_link:
            findings.append(finding("tree-symlink", e.path, 1, 1, f"{e.path} is a symbolic link: not followed, not checked"))
            continue
        if e.size > limits.max_file_bytes:
            findings.append(finding("file-too-large", e.path, 1, 1,
                                    f"{e.size} bytes is over the limit of {limits.max_file_bytes} bytes"))
            continue
        parsed[e.path] = parse(e.path, read(e), limits)
        if progress is not None:
            progress(len(parsed), total)
    stats.manifests = len(parsed)
    for pf in parsed.values():
        findings.extend(pf.findings)

    # Kustomize: roots are rendered; files they consume are not standalone manifests.
    objects: list[Document] = []
    units: dict[str, list[Document]] = {}
    consumed: set[str] = set()
    if policy.config["kustomize"]["enabled"]:
        kplan = kustomize.find(entries, parsed, read)
        findings.extend(kplan.findings)
        consumed = kplan.consumed
        files = {e.path for e in entries if not e.is_link and not e.is_submodule}
        broken = {f.path for f in kplan.findings}
        for d in kplan.roots:
            if kustomize.closure(kplan, d) & broken:
                continue  # already reported; kubectl would only repeat it
            if kustomize.is_simple(kplan, d, files):
                docs = kustomize.simple_render(kplan, d, files, parsed)
            else:
                rendered = kustomize.kubectl_render(
                    kplan, d, [e for e in entries if not _in_dirs(e.path, charts)], read, parsed,
                    policy.config["kustomize"]["kubectl"], float(policy.limits["timeout_seconds"]),
                )
                findings.extend(rendered.findings)
                docs = rendered.documents
                stats.rendered += len(docs)
            units[f"kustomize build {d or '.'}"] = docs
            objects.extend(docs)

    for path, pf in parsed.items():
        if path in consumed:
            continue
        docs = [d for d in pf.documents if d.is_object]
        units.setdefault(f"folder {posixpath.dirname(path) or '.'}", []).extend(docs)
        objects.extend(docs)
    stats.objects = len(objects)

    for doc in objects:
        if doc.kind == "CustomResourceDefinition" and doc.api_version.startswith("apiextensions.k8s.io/"):
            ctx.custom.add_crd(doc.obj, f"{doc.path}:{doc.line}")

    for doc in objects:
        for check in DOCUMENT_CHECKS:
            findings.extend(check(doc, ctx))
    if kubeconform.selected(policy.config):  # the schema check is delegated to kubeconform
        findings.extend(kubeconform.check(objects, ctx))
    for e in entries:
        data = None if e.is_link or e.is_submodule or e.size > limits.max_file_bytes else None
        for fcheck in FILE_CHECKS:
            if data is None and not (e.is_link or e.is_submodule) and e.size <= limits.max_file_bytes:
                data = read(e)
            findings.extend(fcheck(e, data, ctx))
    view = TreeView(entries, parsed, objects, units)
    for tcheck in TREE_CHECKS:
        findings.extend(tcheck(view, ctx))

    final = sorted(set(policy.apply(findings)))
    stats.seconds = time.perf_counter() - started
    return Result(snapshot.label, final, stats)
