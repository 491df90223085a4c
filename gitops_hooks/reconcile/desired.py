"""The desired set of an environment: the objects of its folder at a commit, after substitution.

Read the same way the gate reads them (documents, kustomize with remote bases, plugins and Helm off),
then `${VAR}` substitution with the environment's variables. Problems come back as findings, so the
pre-receive gate can refuse a push that reconciliation would choke on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import kustomize
from ..cache import NullCache
from ..config import Policy, matches
from ..documents import Document, Limits, ParsedFile, parse
from ..findings import Finding, Rule, Severity, finding, register
from ..gitrepo import Entry, Snapshot
from .environments import Environment
from .substitute import substitute_object

register(
    Rule("reconcile-variable", "reconcile", Severity.ERROR,
         "A ${VAR} in an environment's folder is not set for that environment.",
         "Reconciliation substitutes ${VAR} with the environment's variables, as Flux's post-build "
         "substitution does. A variable that is neither set on the server (`gitops-hooks env add --var`) nor "
         "given a default (`${VAR:=default}`) would make the apply fail, so the push is refused. Write "
         "`$${VAR}` to keep the text literally.",
         "metadata:\n  name: web-${CLUSTER_NAME:=dev}\n"),
    Rule("reconcile-desired", "reconcile", Severity.ERROR,
         "An environment's desired state cannot be built from this commit.",
         "The folder of an environment must hold objects that can be applied: every document needs "
         "apiVersion, kind and metadata.name, and an object may appear only once.", ""),
)


SSA_ANNOTATIONS = ("gitops-hooks.io/ssa", "kustomize.toolkit.fluxcd.io/ssa")
SSA_POLICIES = {"override": "Override", "ifnotpresent": "IfNotPresent", "ignore": "Ignore"}


def ssa_annotation(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """The leave-alone annotation an object carries (ours first, then Flux's), with its value."""
    ann = (obj.get("metadata") or {}).get("annotations")
    if not isinstance(ann, dict):
        return None
    for key in SSA_ANNOTATIONS:
        if key in ann:
            return key, str(ann[key])
    return None


def ssa_policy(obj: Mapping[str, Any]) -> str:
    found = ssa_annotation(obj)
    return "Override" if found is None else SSA_POLICIES.get(found[1].strip().lower(), "")


@dataclass(frozen=True)
class Desired:
    """One object to apply, with the file and line it came from."""

    obj: dict[str, Any]
    path: str
    line: int

    @property
    def api_version(self) -> str:
        return str(self.obj.get("apiVersion", ""))

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", ""))

    @property
    def group(self) -> str:
        return self.api_version.rsplit("/", 1)[0] if "/" in self.api_version else ""

    @property
    def name(self) -> str:
        return str((self.obj.get("metadata") or {}).get("name", ""))

    @property
    def namespace(self) -> str:
        return str((self.obj.get("metadata") or {}).get("namespace") or "")

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def ssa(self) -> str:
        """How the object is applied: Override (the default), IfNotPresent, Ignore; '' when the annotation
        holds something else."""
        return ssa_policy(self.obj)


@dataclass(frozen=True)
class DesiredSet:
    objects: tuple[Desired, ...]
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not any(f.severity is Severity.ERROR for f in self.findings)


def _in(path: str, prefix: str) -> bool:
    return not prefix or path.startswith(prefix)


# Per process, by path, blob id and limits: the rounds process (and the pushes it serves) parses a file once,
# not again for each commit that leaves it as it was. Parsed files are never changed by their readers.
_PARSED: dict[tuple[str, str, Limits], ParsedFile] = {}
MAX_PARSED = 50_000


def _parsed(e: Entry, read: Callable[[Entry], bytes], limits: Limits) -> ParsedFile:
    key = (e.path, e.oid, limits)
    hit = _PARSED.get(key)
    if hit is None:
        if len(_PARSED) >= MAX_PARSED:
            _PARSED.clear()
        hit = _PARSED[key] = parse(e.path, read(e), limits)
    return hit


def documents(snapshot: Snapshot, env: Environment, config: Mapping[str, Any]) -> tuple[list[Document], list[Finding]]:
    """Objects of the environment's folder: kustomize roots inside it rendered, plain files read."""
    policy = Policy(dict(config))
    limits = Limits.of(policy.limits)  # (nothing of pipeline/: the gate's modules stay unloaded)
    prefix = env.folder_prefix()
    entries = [e for e in snapshot.entries() if not matches(e.path, policy.path_exclude)]
    data: dict[str, bytes] = {}

    def read(e: Entry) -> bytes:
        if e.path not in data:
            data[e.path] = snapshot.read(e)
        return data[e.path]

    parsed: dict[str, ParsedFile] = {}
    for e in entries:
        if e.is_link or e.is_submodule or e.size > limits.max_file_bytes or e.path == ".gitops-hooks.yaml":
            continue
        if matches(e.path, policy.include) and not matches(e.path, policy.manifest_exclude):
            parsed[e.path] = _parsed(e, read, limits)
    findings: list[Finding] = [f for pf in parsed.values() for f in pf.findings if _in(f.path, prefix)]
    docs: list[Document] = []
    consumed: set[str] = set()
    if config["kustomize"]["enabled"]:
        docs, consumed = _kustomize(entries, parsed, read, prefix, config, findings)
    for path, pf in sorted(parsed.items()):
        if path in consumed or not _in(path, prefix):
            continue
        docs.extend(d for d in pf.documents if d.is_object)
    if env.helm == "render":
        docs = _helm_releases(docs, entries, parsed, read, prefix, config, findings)
    return docs, findings


def _helm_releases(docs: list[Document], entries: list[Entry], parsed: dict[str, ParsedFile], read: Any, prefix: str,
                   config: Mapping[str, Any], findings: list[Finding]) -> list[Document]:
    """The folder's HelmReleases and Applications of this repository's charts replaced by what they render."""
    from ..render.helm_gate import HelmStep, chart_dirs

    charts = chart_dirs(entries)
    manifests = [e for e in entries if e.path in parsed and not any(c == "" or e.path.startswith(c + "/") for c in charts)]
    step = HelmStep(entries, manifests, read, parsed.__getitem__, config["helm"], Limits.of(config["limits"]),
                    float(config["limits"]["timeout_seconds"]), NullCache(), asks=lambda p: _in(p, prefix),
                    alone=False).run()
    findings.extend(f for f in step.findings if f.rule != "helm-chart" or f.severity is not Severity.INFO
                    or "not rendered" in f.message)
    return [d for d in docs if (d.path, d.index) not in step.rendered_from] + \
        [d for d in step.documents if d.is_object and not _helm_test(d)]


def _helm_test(doc: Document) -> bool:
    """A chart's test (helm.sh/hook: test...): run by `helm test`, never installed."""
    annotations = doc.metadata.get("annotations")
    hook = annotations.get("helm.sh/hook") if isinstance(annotations, dict) else None
    return isinstance(hook, str) and any(h.strip().startswith("test") for h in hook.split(","))


def _kustomize(entries: list[Entry], parsed: dict[str, ParsedFile], read: Any, prefix: str,
               config: Mapping[str, Any], findings: list[Finding]) -> tuple[list[Document], set[str]]:
    """Kustomizations inside the folder, as Flux's kustomize-controller sees them: a kustomization at the
    folder's top is the whole desired set; otherwise each kustomization that no other one inside the folder
    refers to is rendered, and the files they read are not applied on their own. Kustomizations outside
    the folder do not matter, though those inside may read files outside (`../base`)."""
    plan = kustomize.find(entries, parsed, read)
    files = {e.path for e in entries if not e.is_link and not e.is_submodule}
    findings.extend(f for f in plan.findings if _in(f.path, prefix))
    unsafe = {f.path for f in plan.findings if f.rule == "kustomize-unsafe"}
    inside = {d: k for d, k in plan.kustomizations.items() if _in(k.path, prefix)}
    top = prefix.rstrip("/")
    referenced: set[str] = set()
    consumed: set[str] = {k.path for k in inside.values()}
    for k in inside.values():
        for _, entry in k.refs():
            target = k.resolve(entry)
            (consumed if target in files else referenced).add(target)
    roots = [top] if top in inside else sorted(d for d, k in inside.items() if d not in referenced and not k.is_component)
    docs: list[Document] = []
    for d in roots:
        if plan.kustomizations[d].path in unsafe:
            continue
        docs.extend(_render(plan, d, entries, read, parsed, files, config, findings))
    if top in inside:  # the top kustomization is everything: nothing else in the folder is applied
        consumed |= {e.path for e in entries if _in(e.path, prefix)}
    return docs, consumed


def _render(plan: kustomize.Plan, d: str, entries: list[Entry], read: Any, parsed: dict[str, ParsedFile],
            files: set[str], config: Mapping[str, Any], findings: list[Finding]) -> list[Document]:
    if kustomize.is_simple(plan, d, files):
        out: list[Document] = []
        for member in kustomize.simple_members(plan, d, files):
            pf = parsed.get(member)
            if pf is not None:
                out.extend(doc for doc in pf.documents if doc.is_object)
        return out
    text, problems = kustomize.kubectl_build(plan, d, entries, read, config["kustomize"]["kubectl"],
                                             float(config["limits"]["timeout_seconds"]))
    findings.extend(problems)
    if text is None:
        return []
    rendered, more = kustomize.documents_of(plan, d, text, parsed)
    findings.extend(more)
    return [doc for doc in rendered if doc.is_object]


def desired_set(snapshot: Snapshot, env: Environment, config: Mapping[str, Any]) -> DesiredSet:
    docs, findings = documents(snapshot, env, config)
    out: list[Desired] = []
    seen: dict[tuple[str, str, str, str], Desired] = {}
    for doc in docs:  # (the items of a List are documents of their own, see documents.expand_lists)
        d = _one(doc, doc.obj, env, findings)
        if d is None:
            continue
        key = (d.group, d.kind, d.namespace, d.name)
        first = seen.get(key)
        if first is not None:
            if first.obj != d.obj:  # the same object twice, identical (e.g. two overlays of one base): once
                findings.append(finding("reconcile-desired", doc.path, doc.line, 1,
                                        f"{doc.describe()}: also defined, differently, at {first.where}"))
            continue
        seen[key] = d
        out.append(d)
    return DesiredSet(tuple(out), tuple(sorted(set(findings))))


def _one(doc: Document, obj: dict[str, Any], env: Environment, findings: list[Finding]) -> Desired | None:
    if env.substitutes:
        obj, problems = substitute_object(obj, env.variables)
        for p in problems:
            line, col = _locate_text(doc, p.expression)
            what = f"{p.expression} {p.why}" if p.expression else p.why
            hint = ("set it with `gitops-hooks env add ... --var NAME=value` or give a default: ${NAME:=value}"
                    if p.why.startswith("is not set") else "")
            findings.append(finding("reconcile-variable", doc.path, line, col,
                                    f"{doc.describe()}: {what} (environment {env.name})",
                                    (hint + "; " if hint else "") + "write $${...} to keep the text as it is, or "
                                    "annotate the object kustomize.toolkit.fluxcd.io/substitute: disabled",
                                    doc.subject()))
        if problems:
            return None
    d = Desired(obj, doc.path, doc.line)
    bad = _shape_problem(d)
    if bad:
        findings.append(finding("reconcile-desired", doc.path, doc.line, 1, f"{doc.describe()}: {bad}"))
        return None
    return d


def _shape_problem(d: Desired) -> str:
    if not d.api_version or not d.kind:
        return "apiVersion and kind are required to apply an object"
    if not d.name:
        return "metadata.name is required to apply an object (generateName cannot be applied)"
    if not d.ssa:
        key, value = ssa_annotation(d.obj) or ("", "")
        return f"{key}: {value!r} is not a way to apply an object (write Override, IfNotPresent or Ignore)"
    return ""


def _locate_text(doc: Document, expression: str) -> tuple[int, int]:
    """Line and column of the first occurrence of the expression in the document's source, if known."""
    if doc.source is None or not expression:
        return doc.line, doc.column
    lines = doc.source.text.splitlines()
    for i in range(max(doc.line - 1, 0), len(lines)):
        col = lines[i].find(expression)
        if col >= 0:
            return i + 1, col + 1
    return doc.line, doc.column


def folder_exists(snapshot: Snapshot, env: Environment) -> bool:
    prefix = env.folder_prefix()
    return not prefix or any(e.path.startswith(prefix) for e in snapshot.entries())


def describe(d: Desired) -> str:
    kind = d.kind.lower()
    ident = f"{kind}.{d.group}" if d.group else kind
    return f"{ident}/{d.name}"

