"""The kubeconform engine: schema validation delegated to the `kubeconform` executable.

Selected by the administrator with `engine: kubeconform` in the server configuration. Every object of the
tree (plain files and kustomize renders alike) is written as one JSON file into a temporary folder and
kubeconform is run once over that folder with `-output json`, the configured Kubernetes version and schema
locations. Its results become the same findings as the built-in engine's (schema-invalid,
schema-unknown-kind, schema-unknown-builtin), placed on the object's line, and on the field's line where
kubeconform's message names a JSON pointer.

Schema locations: those the administrator lists under `kubeconform.schema_locations` (kubeconform's own
syntax, `default` for its public registry), or, when none are listed, a folder made for the run from the
same schemas the built-in engine uses (Kubernetes' own for the configured version, bundled CRDs, CRDs in the
tree and in `schema_dirs`), so that the engine works without network.

kubeconform's output formats (json, junit, text) are read into `Record`s; `findings()` maps records to
findings, given a way to find each record's document (`Resolver`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .documents import YAML11_BOOLS, Document, parse
from .findings import Finding, Rule, Severity, finding, register

if TYPE_CHECKING:
    from .checks import CheckContext

register(
    Rule("kubeconform-missing", "schema", Severity.ERROR,
         "engine: kubeconform is selected but the kubeconform executable cannot be found.",
         "The server configuration delegates schema validation to kubeconform, and no push can be checked "
         "without it. The administrator installs kubeconform on the server's PATH (or sets "
         "kubeconform.command to its path), or selects `engine: builtin`.", "engine: builtin\n"),
    Rule("kubeconform-error", "schema", Severity.ERROR,
         "kubeconform failed to check an object (its message is shown).",
         "kubeconform could not run, or could not load a schema or an object. The gate fails closed: the "
         "push is refused until the administrator fixes the engine or its schema locations.", ""),
)

Resolver = Callable[["Record"], "Document | None"]

_AT = re.compile(r"- at '(?P<pointer>[^']*)': (?P<message>.*?)(?=\s+- at '|\Z)", re.S)
_ADDITIONAL = re.compile(r"additional properties? (?P<names>'.*') not allowed")
_YAML_LINE = re.compile(r"\bline (\d+): (.*)")
_REQUIRED = re.compile(r"missing propert(?:y|ies):? (?P<names>'.*')")
_TYPE = re.compile(r"^got (?P<got>\w+), want (?P<want>[\w ]+)$")
_MISSING_SCHEMA = re.compile(r"could not find schema for (\S+)")
_CORE_GROUP_VERSION = re.compile(r"^v\d+(?:(?:alpha|beta)\d+)?$")


class KubeconformMissing(Exception):
    """kubeconform is selected but not found; the message is for the administrator."""


class OutputError(Exception):
    """kubeconform's output cannot be read."""


# ---------------------------------------------------------------------------- settings

@dataclass(frozen=True)
class Settings:
    command: str
    schema_locations: tuple[str, ...]
    kubernetes_version: str  # major.minor.patch, as kubeconform wants it
    strict: bool
    timeout: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any], kubernetes_version: str) -> Settings:
        kc = config.get("kubeconform") or {}
        return cls(
            command=str(kc.get("command") or "kubeconform"),
            schema_locations=tuple(str(x) for x in kc.get("schema_locations") or ()),
            kubernetes_version=_patch_version(kubernetes_version),
            strict=bool(config.get("strict", True)),
            timeout=float((config.get("limits") or {}).get("timeout_seconds", 60)),
        )


def _patch_version(version: str) -> str:
    parts = version.lstrip("v").split(".")
    return ".".join((parts + ["0", "0"])[:3])


def selected(config: Mapping[str, Any]) -> bool:
    return config.get("engine") == "kubeconform"


def find_binary(config: Mapping[str, Any]) -> str:
    """The kubeconform executable the configuration names; KubeconformMissing if there is none."""
    kc = config.get("kubeconform") or {}
    command = str(kc.get("command") or "kubeconform")
    found = shutil.which(command)
    if found is None:
        raise KubeconformMissing(
            f"engine: kubeconform is selected but {command!r} is not "
            + ("an executable file" if "/" in command else "on PATH")
            + "; install kubeconform, set kubeconform.command to its path, or select engine: builtin"
        )
    return found


def command_line(binary: str, settings: Settings, locations: Iterable[str],
                 inputs: Iterable[str]) -> list[str]:
    cmd = [binary, "-output", "json", "-kubernetes-version", settings.kubernetes_version]
    if settings.strict:
        cmd.append("-strict")
    for loc in locations:
        cmd += ["-schema-location", loc]
    return cmd + list(inputs)


# ---------------------------------------------------------------------------- records

@dataclass(frozen=True)
class Record:
    """One resource in kubeconform's report."""

    filename: str
    kind: str
    name: str
    api_version: str  # kubeconform calls it "version"
    status: str  # valid, invalid, error, skipped, empty
    message: str
    errors: tuple[tuple[str, str], ...] = ()  # (JSON pointer, message) from validationErrors


# Status words of the current JSON output, and of older releases (VALID, INVALID, ...).
_STATUS = {"statusvalid": "valid", "statusinvalid": "invalid", "statuserror": "error",
           "statusskipped": "skipped", "statusempty": "empty", "": "empty", "valid": "valid",
           "invalid": "invalid", "error": "error", "skipped": "skipped"}
_TEXT_STATUS = {"is invalid": "invalid", "failed validation": "error", "is valid": "valid"}


def parse_json(text: str) -> list[Record]:
    """Records of `kubeconform -output json` (with or without -summary and -verbose)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OutputError(f"kubeconform printed no JSON report ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("resources", []), list):
        raise OutputError("kubeconform's JSON report has no list of resources")
    out = []
    for r in data.get("resources") or []:
        errors = tuple((str(e.get("path", "")), str(e.get("msg", "")))
                       for e in r.get("validationErrors") or ())
        status = _STATUS.get(str(r.get("status", "")).lower(), "error")
        out.append(Record(str(r.get("filename", "")), str(r.get("kind", "")), str(r.get("name", "")),
                          str(r.get("version", "")), status, str(r.get("msg", "")), errors))
    return out


def parse_junit(text: str) -> list[Record]:
    """Records of `kubeconform -output junit`: a testcase per resource, classname `Kind@apiVersion`."""
    import xml.etree.ElementTree as ET  # (only here: the gate imports this module to know its rules)

    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise OutputError(f"kubeconform's JUnit report is not XML: {exc}") from None
    out = []
    for suite in root.iter("testsuite"):
        for case in suite.iter("testcase"):
            kind, _, api_version = (case.get("classname") or "").partition("@")
            name = (case.get("name") or "").rpartition("/")[2]
            status, message = "valid", ""
            for tag, st in (("failure", "invalid"), ("error", "error"), ("skipped", "skipped")):
                el = case.find(tag)
                if el is not None:
                    status, message = st, el.get("message") or el.text or ""
            out.append(Record(suite.get("name") or "", kind, name, api_version, status, message))
    return out


_TEXT_LINE = re.compile(r"^(?P<file>.+?) - (?:(?P<kind>\S+) (?P<name>\S+) )?"
                        r"(?P<verb>is invalid|failed validation|is valid|skipped)(?:: (?P<msg>.*))?$")


def parse_text(text: str) -> list[Record]:
    """Records of `kubeconform -output text` (one line each; no apiVersion in this format)."""
    out = []
    for line in text.splitlines():
        m = _TEXT_LINE.match(line)
        if not m:
            continue
        status = _TEXT_STATUS.get(m["verb"], "skipped")
        out.append(Record(m["file"], m["kind"] or "", m["name"] or "", "", status, m["msg"] or ""))
    return out


# ---------------------------------------------------------------------------- records to findings

def findings(records: Iterable[Record], resolve: Resolver, is_builtin_group: Callable[[str], bool],
             kubernetes_version: str, source_path: Callable[[Record], str] | None = None) -> list[Finding]:
    """The findings a user sees for kubeconform's records; `resolve` finds each record's document."""
    out: list[Finding] = []
    for rec in records:
        if rec.status in ("valid", "skipped", "empty"):
            continue
        doc = resolve(rec)
        path = doc.path if doc is not None else (source_path(rec) if source_path else rec.filename)
        if rec.status == "invalid":
            out.extend(_invalid(rec, doc, path))
        else:
            out.append(_error(rec, doc, path, is_builtin_group, kubernetes_version))
    return out


def _invalid(rec: Record, doc: Document | None, path: str) -> list[Finding]:
    errors = [(m["pointer"], " ".join(m["message"].split())) for m in _AT.finditer(rec.message)]
    errors = errors or list(rec.errors) or [("", rec.message)]
    specific = [e for e in errors if e[1] != "validation failed"]
    out = []
    for pointer, message in specific or errors:
        out.append(_schema_finding(rec, doc, path, _pointer(pointer, doc), message))
    return out


def _schema_finding(rec: Record, doc: Document | None, path: str, where: tuple[str | int, ...],
                    message: str) -> Finding:
    hint = ""
    key = False
    m = _ADDITIONAL.search(message)
    t = _TYPE.search(message)
    if m:
        names = re.findall(r"'([^']*)'", m["names"])
        where, key = (where + (names[0],), True) if names else (where, False)
        message = f"unknown field{'s' if len(names) > 1 else ''} {', '.join(repr(n) for n in names)}"
        hint = "strict validation refuses fields the schema does not define (check spelling and indentation)"
    elif t and doc is not None:
        message, hint = _type_message(doc, where, t["want"])
    elif r := _REQUIRED.search(message):
        names = re.findall(r"'([^']*)'", r["names"])
        message = f"missing required field{'s' if len(names) > 1 else ''} {', '.join(repr(n) for n in names)}"
    line, col = doc.locate(where, key=key) if doc is not None else (1, 1)
    subject = doc.subject() if doc is not None else None
    return finding("schema-invalid", path, line, col, f"{_describe(rec, doc)}: {_dotted(where)}: {message}",
                   hint, subject=subject)


def _type_message(doc: Document, where: tuple[str | int, ...], want: str) -> tuple[str, str]:
    """kubeconform's "got string, want null or integer" in the built-in engine's words, with its hints."""
    types = [t for t in want.split(" or ") if t != "null"]
    value = _value(doc.obj, where)
    message = f"{_show(value)} is not of type {' or '.join(types) or 'null'}"
    raw = doc.raw_scalar(where)
    yaml_bool = raw is not None and raw in YAML11_BOOLS | {"true", "false"}
    if isinstance(value, bool) and yaml_bool and "string" in types:
        return message, f"YAML reads the unquoted {raw} as a boolean (kubectl does too); quote it: \"{raw}\""
    if isinstance(value, str) and ("integer" in types or "number" in types) and value.strip().isdigit():
        return message, "remove the quotes to write a number"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and "string" in types:
        return message, "quote the value to write a string"
    return message, ""


def _value(obj: Any, where: tuple[str | int, ...]) -> Any:
    for p in where:
        if isinstance(obj, list) and isinstance(p, int) and p < len(obj):
            obj = obj[p]
        elif isinstance(obj, dict):
            obj = obj.get(p)
        else:
            return None
    return obj


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value[:60])
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return "a map" if isinstance(value, dict) else "a list"
    return str(value)


def _error(rec: Record, doc: Document | None, path: str, is_builtin_group: Callable[[str], bool],
           kubernetes_version: str) -> Finding:
    line, col = (doc.line, doc.column) if doc is not None else (1, 1)
    subject = doc.subject() if doc is not None else None
    missing = _MISSING_SCHEMA.search(rec.message)
    if missing:
        api_version = rec.api_version or (doc.api_version if doc is not None else "")  # text output has none
        group = _group(api_version)
        what = f"{rec.kind} {api_version}".strip()
        if is_builtin_group(group):
            return finding("schema-unknown-builtin", path, line, col,
                           f"{what} is not served by Kubernetes {kubernetes_version} "
                           "(kubeconform found no schema)",
                           "check the kind and apiVersion; a removed API needs its replacement",
                           subject=subject)
        return finding("schema-unknown-kind", path, line, col, f"no schema for {what}: not validated",
                       "commit its CustomResourceDefinition, or ask the administrator to add a schema "
                       "location for it (kubeconform.schema_locations)", subject=subject)
    first = rec.message.splitlines()[0] if rec.message else "unknown error"
    if "error converting YAML to JSON" in rec.message or "unmarshal" in rec.message:
        m = _YAML_LINE.search(rec.message)
        yaml_line = int(m.group(1)) if m else line
        rule = "yaml-duplicate-key" if "already set in map" in rec.message else "yaml-syntax"
        detail = m.group(2) if m else " ".join(rec.message.rsplit("yaml:", 1)[-1].split())
        return finding(rule, path, yaml_line, 1, f"kubeconform: {detail}", subject=subject)
    if "missing 'kind' key" in rec.message or "missing 'apiVersion' key" in rec.message:
        field = "kind" if "'kind'" in rec.message else "apiVersion"
        return finding("object-required", path, line, col, f"{_describe(rec, doc)}: missing {field}",
                       subject=subject)
    return finding("kubeconform-error", path, line, col, f"kubeconform: {first}", subject=subject)


def _group(api_version: str) -> str:
    if "/" in api_version:
        return api_version.rsplit("/", 1)[0]
    return "" if _CORE_GROUP_VERSION.match(api_version) or not api_version else api_version


def _pointer(pointer: str, doc: Document | None) -> tuple[str | int, ...]:
    """A JSON pointer as a path into the document: numbers index lists where the object has a list."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]] if pointer else []
    out: list[str | int] = []
    node: Any = doc.obj if doc is not None else None
    for p in parts:
        if isinstance(node, list) and p.isdigit():
            out.append(int(p))
            node = node[int(p)] if int(p) < len(node) else None
        else:
            out.append(p)
            node = node.get(p) if isinstance(node, dict) else None
    return tuple(out)


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (("." if out else "") + str(p))
    return out or "(object)"


def _describe(rec: Record, doc: Document | None) -> str:
    if doc is not None and (doc.kind or doc.name):
        return doc.describe()
    group = _group(rec.api_version)
    kind = rec.kind.lower() or "object"
    ident = f"{kind}.{group}" if group else kind
    return f"{ident}/{rec.name}" if rec.name else ident


# ---------------------------------------------------------------------------- resolvers

class SourceResolver:
    """Find a record's document in the source files by file, kind and name (kubeconform gives no lines)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._docs: dict[str, list[Document]] = {}

    def documents(self, filename: str) -> list[Document]:
        if filename not in self._docs:
            path = self.root / filename
            try:
                data = path.read_bytes()
            except OSError:
                data = b""
            self._docs[filename] = parse(filename, data).documents
        return self._docs[filename]

    def __call__(self, rec: Record) -> Document | None:
        docs = self.documents(rec.filename)
        for doc in docs:
            if doc.kind == rec.kind and doc.name == rec.name and (not rec.api_version
                                                                   or doc.api_version == rec.api_version):
                return doc
        if not rec.kind and not rec.name and len(docs) == 1:
            return docs[0]
        return None


# ---------------------------------------------------------------------------- the engine in the pipeline

def check(objects: list[Document], ctx: CheckContext) -> list[Finding]:
    """Validate the objects with kubeconform; findings as the built-in engine would give them."""
    config = ctx.policy.config
    try:
        binary = find_binary(config)
    except KubeconformMissing as exc:
        return [finding("kubeconform-missing", ".", 1, 1, f"push refused: {exc}; tell the administrator")]
    docs = [d for d in objects if d.api_version and d.kind]
    if not docs:
        return []
    settings = Settings.from_config(config, ctx.kube.version)
    by_file = {f"{n:06d}.json": doc for n, doc in enumerate(docs)}
    # Generated schemas are named as kubeconform looks them up, which two kinds may share
    # (`{{ .ResourceKind }}{{ .KindSuffix }}` keeps only the first label of the group): one run per batch.
    batches = [list(by_file)] if settings.schema_locations else _batches(by_file)
    records: list[Record] = []
    with tempfile.TemporaryDirectory(prefix="gitops-hooks-kubeconform-") as tmp:
        for n, names in enumerate(batches):
            folder = Path(tmp) / str(n)
            _write_inputs({name: by_file[name] for name in names}, folder / "objects")
            locations = list(settings.schema_locations) or [
                _write_schemas([by_file[name] for name in names], ctx, folder / "schemas")]
            result = _run(command_line(binary, settings, locations, [str(folder / "objects")]), settings.timeout)
            if isinstance(result, Finding):
                return [result]
            records.extend(result)
    return findings(records, lambda rec: by_file.get(Path(rec.filename).name), ctx.kube.is_builtin_group,
                    ctx.kube.version)


def _batches(by_file: Mapping[str, Document]) -> list[list[str]]:
    """Input files grouped so that, within a group, each schema file name belongs to one kind."""
    batches: list[tuple[dict[str, tuple[str, str]], list[str]]] = []
    for name, doc in by_file.items():
        schema_name, key = schema_file_name(doc.api_version, doc.kind), (doc.api_version, doc.kind)
        for owners, members in batches:
            if owners.setdefault(schema_name, key) == key:
                members.append(name)
                break
        else:
            batches.append(({schema_name: key}, [name]))
    return [members for _, members in batches]


def _run(cmd: list[str], timeout: float) -> list[Record] | Finding:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return finding("kubeconform-error", ".", 1, 1,
                       f"kubeconform took longer than {timeout:g} s (limits.timeout_seconds)")
    except OSError as exc:
        return finding("kubeconform-error", ".", 1, 1, f"kubeconform could not run: {exc}")
    try:
        return parse_json(proc.stdout)
    except OutputError as exc:
        detail = (proc.stderr.strip().splitlines() or [""])[0][:200]
        return finding("kubeconform-error", ".", 1, 1,
                       f"{exc} (exit {proc.returncode}{': ' + detail if detail else ''})")


def _write_inputs(docs: Mapping[str, Document], folder: Path) -> None:
    folder.mkdir(parents=True)
    for name, doc in docs.items():
        (folder / name).write_text(json.dumps(doc.obj, default=str), encoding="utf-8")


def schema_file_name(api_version: str, kind: str) -> str:
    """The file kubeconform looks up for `{{ .ResourceKind }}{{ .KindSuffix }}.json`."""
    group, _, version = api_version.rpartition("/")
    suffix = f"-{group.split('.')[0].lower()}-{version.lower()}" if group else f"-{version.lower()}"
    return f"{kind.lower()}{suffix}.json"


def _write_schemas(docs: list[Document], ctx: CheckContext, folder: Path) -> str:
    """Standalone JSON schemas for the kinds present, from the built-in engine's sources; the location."""
    from .schemas import crd_to_jsonschema, definition_closure, split_api_version

    folder.mkdir(parents=True)
    written: dict[str, tuple[str, str]] = {}
    for doc in docs:
        name = schema_file_name(doc.api_version, doc.kind)
        if name in written:
            continue
        group, version = split_api_version(doc.api_version)
        gvk = (group, version, doc.kind)
        schema: dict[str, Any] | None = None
        raw = ctx.custom.raw(gvk) if gvk in ctx.custom else None
        if raw is not None:
            schema = crd_to_jsonschema(raw[0], ctx.policy.strict, ctx.custom.meta())
        elif gvk in ctx.kube.index:
            schema = definition_closure(ctx.kube.defs, ctx.kube.index[gvk])
        if schema is not None:
            schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
            (folder / name).write_text(json.dumps(schema), encoding="utf-8")
        written[name] = (doc.api_version, doc.kind)
    return str(folder / "{{ .ResourceKind }}{{ .KindSuffix }}.json")
