"""Helm charts of the pushed tree, rendered with Helm's own engine and pointed back to their templates.

A release (chart folder, values, name, namespace) is rendered from a private copy of the chart's files
as they are in the pushed tree, in a child process (`helm_engine`) bounded by `limits.timeout_seconds`
and a memory limit, offline (what `helm template` does: no cluster, `lookup` is empty, no download).
Each rendered template becomes documents whose path is the template's file in the tree and whose lines
are the template's lines, found by aligning the rendered text with the template's text. Values are
validated against the chart's `values.schema.json`, as Helm does, at the line that sets them.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
import os
import posixpath
import re
import resource
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..documents import Document, Limits, Pointer, parse_yaml
from ..findings import Finding, finding
from ..gitrepo import Entry
from .helm_engine import DISTRIBUTION, MODULE

MEMORY_BYTES = 3 << 30  # address space of the engine's process (Go reserves over 1 GiB before it starts)
GO_HEAP = "768MiB"  # Go's own soft limit on its heap (GOMEMLIMIT)
SKIPPED = ("NOTES.txt",)


@dataclass(frozen=True)
class ValuesLayer:
    """Values given to a release, in the order Helm merges them (later wins), and where they are written."""

    label: str  # how a message names them: a file, or "flux/podinfo.yaml spec.values"
    values: dict[str, Any]
    path: str = ""  # the file that holds them ("" when they come from no file of the tree)
    index: int = 0  # the document of that file
    pointer: Pointer = ()  # where the values map sits in that document


@dataclass(frozen=True)
class Release:
    chart: str  # chart folder in the tree
    name: str
    namespace: str
    layers: tuple[ValuesLayer, ...] = ()
    by: str = ""  # what asks for the render: "HelmRelease flux/podinfo.yaml:1", "" for a chart alone
    origin: tuple[str, int] = ("", -1)  # the file and document index of the object that asks for it

    @property
    def label(self) -> str:
        files = [layer.label for layer in self.layers]
        values = ", ".join(files) if files else "default values"
        return f"release {self.name} of {self.chart or '.'} ({values})"

    def merged(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for layer in self.layers:
            out = merge(out, plain(layer.values))
        return out


@dataclass(frozen=True)
class RenderedDocument(Document):
    """An object a template produced: path and line are the template's; `rendered` has the output's."""

    rendered: Document | None = field(default=None, compare=False, repr=False)
    lines: tuple[int, ...] = field(default=(), compare=False, repr=False)  # output line - 1 -> template line
    release: str = field(default="", compare=False)

    def _map(self, line: int) -> int:
        return self.lines[line - 1] if 0 < line <= len(self.lines) else self.line

    def locate(self, pointer: Pointer, key: bool = False) -> tuple[int, int]:
        if self.rendered is None:
            return self.line, self.column
        line, column = self.rendered.locate(pointer, key)
        return self._map(line), column

    def raw_scalar(self, pointer: Pointer) -> str | None:
        return None if self.rendered is None else self.rendered.raw_scalar(pointer)

    def describe(self) -> str:
        """The object and the release that rendered it: every check's message names both."""
        return f"{Document.describe(self)} [{self.release}]"


@dataclass
class Outcome:
    documents: list[Document]
    findings: list[Finding]


def merge(base: dict[str, Any], over: Mapping[str, Any], drop_null: bool = False) -> dict[str, Any]:
    """Helm's coalescing of values: maps merge key by key, anything else replaces; a null removes the
    key from the chart's defaults (kept as null between user layers, for the engine to apply)."""
    out = dict(base)
    for key, value in over.items():
        if value is None and drop_null:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value, drop_null)
        else:
            out[key] = value
    return out


def plain(value: Any) -> Any:
    """Values as JSON has them, which is what Helm sees of YAML: keys are text, dates are text."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def engine_version() -> str | None:
    """The engine's version (its distribution's), without loading its library; None if not installed."""
    if importlib.util.find_spec(MODULE) is None:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


def chart_files(entries: Iterable[Entry], chart: str) -> list[Entry]:
    prefix = chart + "/" if chart else ""
    return [e for e in entries if e.path.startswith(prefix)]


def chart_digest(files: list[Entry]) -> str:
    """What the chart's git tree id says: every path, mode and blob id under its folder."""
    h = hashlib.sha256()
    for e in sorted(files, key=lambda e: e.path):
        h.update(f"{e.path}\0{e.mode}\0{e.oid}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:32]


def missing_dependencies(chart: str, chart_yaml: dict[str, Any], files: list[Entry]) -> list[str]:
    """Dependencies Chart.yaml declares that are not vendored under charts/ (as a folder or an archive)."""
    vendored = set()
    base = posixpath.join(chart, "charts") + "/" if chart else "charts/"
    for e in files:
        if e.path.startswith(base):
            rest = e.path[len(base):]
            if "/" in rest:
                vendored.add(rest.split("/", 1)[0])
            elif rest.endswith(".tgz"):
                vendored.add(rest[:-4].rsplit("-", 1)[0])
    deps = chart_yaml.get("dependencies") or []
    return [str(d.get("name")) for d in deps if isinstance(d, dict) and str(d.get("name")) not in vendored]


# ---------------------------------------------------------------------------- the engine


def run_engine(jobs: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
    """Render in a child process: each job answers {"manifests": ...} or {"error": ...}."""
    env = {key: os.environ[key] for key in ("PATH", "LANG") if key in os.environ}
    with tempfile.TemporaryDirectory(prefix="gitops-hooks-helm-home-") as home:
        env.update(HOME=home, GOMEMLIMIT=GO_HEAP, HELM_CACHE_HOME=home, HELM_CONFIG_HOME=home,
                   HELM_DATA_HOME=home, NO_PROXY="*", HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "gitops_hooks.render.helm_engine"], input=json.dumps({"jobs": jobs}),
                capture_output=True, text=True, timeout=timeout, env=env, cwd=home, check=False,
                preexec_fn=lambda: _bounded(timeout),
            )
        except subprocess.TimeoutExpired:
            return [{"error": f"rendering took longer than {timeout:.0f} s (its share of limits.timeout_seconds)"}] * len(jobs)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        reason = "out of memory" if "out of memory" in proc.stderr or "cannot allocate" in proc.stderr else last
        return [{"error": f"the Helm engine failed: {reason[:300]}"}] * len(jobs)
    try:
        results: list[dict[str, Any]] = json.loads(proc.stdout)["results"]
    except (ValueError, KeyError, TypeError):
        return [{"error": "the Helm engine failed: its answer could not be read"}] * len(jobs)
    return results


def _bounded(timeout: float) -> None:
    """In the child: its memory, and its CPU time (it dies of it should the parent be gone)."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    cpu = int(timeout) + 2
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def materialize(files: list[Entry], chart: str, read: Callable[[Entry], bytes], into: Path) -> Path:
    """The chart's regular files copied out of the tree (links and submodules are left out)."""
    root = into / "chart"
    root.mkdir()
    cut = len(chart) + 1 if chart else 0
    for e in files:
        if e.is_link or e.is_submodule or ".." in e.path.split("/"):
            continue
        target = root / e.path[cut:]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(read(e))
    return root


# ---------------------------------------------------------------------------- output to documents


_KEY_RE = re.compile(r"^(-\s+)?([^\s:{}#][^:{}]*?):(\s|$)")


def _key(text: str) -> str | None:
    """What a line of a template and a line of its output have in common: its key, or its text."""
    if "{{" in text:
        text = text.split("{{", 1)[0]
    text = text.strip()
    if not text:
        return None
    m = _KEY_RE.match(text)
    return m.group(0).strip() if m else text


def line_map(template: str, output: str) -> tuple[int, ...]:
    """For each line of the output, the template line it most likely comes from (1-based)."""
    tkeys = [_key(t) for t in template.splitlines()]
    okeys = [_key(o) for o in output.splitlines()]
    matcher = difflib.SequenceMatcher(None, tkeys, okeys, autojunk=False)
    found: dict[int, int] = {}
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            if okeys[block.b + k] is not None:
                found[block.b + k] = block.a + k + 1
    out, last = [], 1
    for i in range(len(okeys)):
        last = found.get(i, last)
        out.append(last)
    return tuple(out)


def documents_of(release: Release, manifests: Mapping[str, str], templates: Mapping[str, str],
                 limits: Limits) -> Outcome:
    """The objects of a render, each with its template's path and lines."""
    docs: list[Document] = []
    problems: list[Finding] = []
    for key in sorted(manifests):
        text = manifests[key]
        if posixpath.basename(key) in SKIPPED or not text.strip():
            continue
        path = posixpath.join(release.chart, key.split("/", 1)[1]) if "/" in key else key
        if release.chart == "":
            path = key.split("/", 1)[1] if "/" in key else key
        if len(text.encode()) > limits.max_file_bytes:
            problems.append(finding("helm-render", path, 1, 1, f"{release.label}: the template renders "
                                    f"{len(text.encode())} bytes, over limits.max_file_bytes"))
            continue
        parsed = parse_yaml(path, text, limits)
        lines = line_map(templates.get(path, ""), text)
        for f in parsed.findings:
            problems.append(f.__class__(f.path, lines[f.line - 1] if 0 < f.line <= len(lines) else 1, 1, f.rule,
                                        f.severity, f"{release.label}: {f.message}", f.hint, f.subject))
        for doc in parsed.documents:
            line = lines[doc.line - 1] if 0 < doc.line <= len(lines) else 1
            docs.append(RenderedDocument(path, doc.index, line, 1, doc.obj, None, rendered=doc, lines=lines,
                                         release=release.label))
    return Outcome(docs, problems)


# ---------------------------------------------------------------------------- values


def values_problems(release: Release, schema: dict[str, Any], defaults: dict[str, Any],
                    locate: Callable[[ValuesLayer, Pointer], int], defaults_path: str) -> list[Finding]:
    """Values that the chart's values.schema.json refuses, at the line of the layer that set them."""
    import jsonschema

    merged = merge(plain(defaults), release.merged(), drop_null=True)
    try:
        validator_cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
        validator = validator_cls(schema)
        errors = sorted(validator.iter_errors(merged), key=lambda e: list(map(str, e.absolute_path)))
    except (jsonschema.SchemaError, TypeError, ValueError) as exc:
        schema_path = posixpath.join(release.chart, "values.schema.json")
        return [finding("helm-values", schema_path, 1, 1, f"values.schema.json cannot be used: {str(exc)[:200]}")]
    out = []
    for err in errors[:20]:
        pointer = tuple(err.absolute_path)
        at = "/".join(str(p) for p in pointer) or "(top)"
        layer = next((lay for lay in reversed(release.layers) if _sets(lay.values, pointer)), None) \
            or ValuesLayer(defaults_path, defaults, defaults_path)
        path, line = layer.path, locate(layer, pointer)
        out.append(finding("helm-values", path, line, 1,
                           f"{release.label}: {at}: {err.message[:300]} (values.schema.json)",
                           "give the value the type and form the chart's values.schema.json asks for"))
    return out


def _sets(values: Any, pointer: Pointer) -> bool:
    for part in pointer:
        if isinstance(values, dict) and part in values:
            values = values[part]
        elif isinstance(values, list) and isinstance(part, int) and part < len(values):
            values = values[part]
        else:
            return False
    return True


def load_yaml_map(text: str) -> dict[str, Any] | None:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else ({} if data is None else None)
