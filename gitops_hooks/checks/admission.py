"""ValidatingAdmissionPolicy and its bindings, evaluated at push against the objects they match.

Policies and bindings come from the pushed tree and from the administrator's `admission_policy_dirs`.
Matching follows the API server: resource rules (group, version, resource, operation, scope; with the
default `matchPolicy: Equivalent` any version of the group and resource), exclusions, namespace and
object selectors (namespace labels from Namespace objects of the tree, plus the label
`kubernetes.io/metadata.name` every namespace carries), the binding's own matchResources, then the
policy's matchConditions. CREATE or UPDATE is decided by the old commit of the ref. Params are objects of
the tree of the policy's paramKind. Validations, messageExpression, failurePolicy and the binding's
validationActions (Deny, Warn, Audit) decide the findings.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cel import activation, compile_expr, evaluate
from ..cel.engine import Compiled, Outcome, identifiers, rule_message
from ..cel.previous import identity, old_objects
from ..cel.structural import RESERVED
from ..config import folder_stamp
from ..documents import parse
from ..findings import Finding, Rule, Severity, finding, register
from ..schemas import split_api_version
from .base import CheckContext, TreeView, tree_check

GROUP = "admissionregistration.k8s.io"
VARIABLES = ("object", "oldObject", "request", "params", "namespaceObject", "variables")
NAME_LABEL = "kubernetes.io/metadata.name"
CLUSTER_KINDS = frozenset(
    "Namespace Node PersistentVolume ClusterRole ClusterRoleBinding CustomResourceDefinition StorageClass "
    "PriorityClass ValidatingWebhookConfiguration MutatingWebhookConfiguration ValidatingAdmissionPolicy "
    "ValidatingAdmissionPolicyBinding MutatingAdmissionPolicy MutatingAdmissionPolicyBinding APIService "
    "IngressClass RuntimeClass CSIDriver CSINode VolumeAttachment CertificateSigningRequest FlowSchema "
    "PriorityLevelConfiguration ClusterIssuer GatewayClass".split()
)

register(
    Rule("admission-denied", "admission", Severity.ERROR,
         "A ValidatingAdmissionPolicy (binding with action Deny) refuses an object of the push.",
         "The policy and its binding, found in the repository or in the administrator's admission_policy_dirs, "
         "are evaluated as the API server would evaluate them on apply: the push is refused with the policy's "
         "own message. An evaluation error counts as a refusal when the policy's failurePolicy is Fail.",
         "resources:\n  limits: {cpu: 500m, memory: 256Mi}\n"),
    Rule("admission-warning", "admission", Severity.WARNING,
         "A ValidatingAdmissionPolicy whose binding has the action Warn fails for an object.",
         "The cluster would admit the object with a warning; the gate reports the same warning.", ""),
    Rule("admission-not-evaluated", "admission", Severity.WARNING,
         "A ValidatingAdmissionPolicy could not be evaluated for an object; it was neither passed nor failed.",
         "Something the policy needs is not known from the repository (the labels of a namespace that is not in "
         "the tree, a binding without paramRef) or the policy uses a function this gate does not provide. The "
         "cluster will still evaluate it on apply.", ""),
)


@dataclass(frozen=True)
class Binding:
    name: str
    policy: str
    spec: dict[str, Any]


@dataclass
class Subject:
    """One object of the tree, as the admission chain sees it."""

    doc: Any
    group: str
    version: str
    resource: str
    namespaced: bool
    operation: str
    old: dict[str, Any] | None


@tree_check
def admission_policies(tree: TreeView, ctx: CheckContext) -> Iterator[Finding]:
    folders = tuple(ctx.policy.config.get("admission_policy_dirs") or ())
    policies, bindings = _collect(tree.objects, folders, folders_stamp(ctx))
    if not bindings:
        return
    namespaces = {d.name: d for d in tree.objects if d.kind == "Namespace" and d.api_version == "v1"}
    for doc in tree.objects:
        if not doc.kind or doc.kind in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"):
            continue
        subject: Subject | None = None
        for binding in bindings:
            policy = policies.get(binding.policy)
            if policy is None:
                continue
            subject = subject or _subject(doc, ctx)
            yield from _check(policy, binding, subject, tree, namespaces, ctx)


# ---------------------------------------------------------------------------- sources

def folders_stamp(ctx: CheckContext) -> str:
    """Names, sizes and times of the files in the administrator's folders, once per check context (the
    gate server's memo of tree findings keys on it too)."""
    stamp: str | None = ctx.extra.get("admission_stamp")
    if stamp is None:
        folders = ctx.policy.config.get("admission_policy_dirs") or ()
        stamp = ctx.extra["admission_stamp"] = repr(folder_stamp(folders)) if folders else ""
    return stamp


def _collect(objects: list[Any], folders: tuple[str, ...], stamp: str) -> tuple[dict[str, dict[str, Any]], list[Binding]]:
    policies: dict[str, dict[str, Any]] = {}
    bindings: list[Binding] = []
    found = [d for d in objects if d.kind in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
             and d.api_version.startswith(GROUP + "/")]
    for obj in [*_folder_objects(folders, stamp), *(d.obj for d in found)]:
        spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
        name = (obj.get("metadata") or {}).get("name") if isinstance(obj.get("metadata"), dict) else None
        if not isinstance(name, str):
            continue
        if obj.get("kind") == "ValidatingAdmissionPolicy":
            policies[name] = spec
        elif isinstance(spec.get("policyName"), str):
            bindings.append(Binding(name, spec["policyName"], spec))
    return policies, bindings


@functools.lru_cache(maxsize=4)
def _folder_objects(folders: tuple[str, ...], stamp: str) -> tuple[dict[str, Any], ...]:
    """The policies and bindings of the administrator's folders, read again when a file there changes
    (`stamp`: names, sizes and times; the resident gate server outlives edits)."""
    out: list[dict[str, Any]] = []
    for folder in folders:
        root = Path(folder)
        if not root.is_dir():
            raise FileNotFoundError(f"admission_policy_dirs: {folder} is not a folder")
        for path in sorted(root.rglob("*")):
            if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
                out.extend(d.obj for d in parse(str(path), path.read_bytes()).documents
                           if d.kind in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
                           and d.api_version.startswith(GROUP + "/"))
    return tuple(out)


# ---------------------------------------------------------------------------- matching

def plural(kind: str) -> str:
    """The resource name of a kind, as Kubernetes guesses it (lower case; -s, -es, -ies)."""
    lower = kind.lower()
    if lower.endswith(("s", "x", "z", "ch", "sh")):
        return lower + "es"
    if lower.endswith("y") and lower[-2:-1] not in "aeiou":
        return lower[:-1] + "ies"
    return lower + "s"


def _subject(doc: Any, ctx: CheckContext) -> Subject:
    group, version = split_api_version(doc.api_version)
    namespaced = bool(doc.namespace) or doc.kind not in CLUSTER_KINDS and _crd_scope(ctx, group, version, doc.kind)
    old = old_objects(ctx).get(identity(doc)) if ctx.old_tree is not None else None
    return Subject(doc, group, version, plural(doc.kind), namespaced, "UPDATE" if old else "CREATE",
                   old.obj if old else None)


def _crd_scope(ctx: CheckContext, group: str, version: str, kind: str) -> bool:
    gvk = (group, version, kind)
    return gvk not in ctx.custom or ctx.custom.traits(gvk)[1] != "Cluster"


def _rule_matches(rule: Any, s: Subject, any_version: bool) -> bool:
    if not isinstance(rule, dict):
        return False

    def has(key: str, value: str) -> bool:
        items = rule.get(key) or []
        return "*" in items or value in items

    scope = rule.get("scope") or "*"
    return (has("apiGroups", s.group) and (any_version or has("apiVersions", s.version))
            and (has("resources", s.resource) or "*/*" in (rule.get("resources") or []))
            and has("operations", s.operation)
            and (scope == "*" or (scope == "Namespaced") == s.namespaced))


def _resources_match(constraints: Any, s: Subject) -> bool:
    if not isinstance(constraints, dict):
        return True
    any_version = (constraints.get("matchPolicy") or "Equivalent") == "Equivalent"
    rules = constraints.get("resourceRules")
    if rules and not any(_rule_matches(r, s, any_version) for r in rules):
        return False
    return not any(_rule_matches(r, s, any_version) for r in constraints.get("excludeResourceRules") or [])


class Unknown(Exception):
    """Something needed to decide is not known from the repository."""


def _selector_matches(selector: Any, labels: dict[str, str], known: bool) -> bool:
    if not isinstance(selector, dict) or not selector:
        return True
    keys = set((selector.get("matchLabels") or {}).keys())
    keys |= {e.get("key") for e in selector.get("matchExpressions") or [] if isinstance(e, dict)}
    if not known and keys - {NAME_LABEL}:
        raise Unknown("its labels are not known from the repository")
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        if not _expression_matches(expr, labels):
            return False
    return True


def _expression_matches(expr: dict[str, Any], labels: dict[str, str]) -> bool:
    key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    raise Unknown(f"unknown selector operator {op!r}")


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    labels = meta.get("labels") if isinstance(meta, dict) else None
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def _matches(constraints: Any, s: Subject, namespaces: dict[str, Any]) -> bool:
    if not isinstance(constraints, dict):
        return True
    if not _resources_match(constraints, s):
        return False
    ns_selector = constraints.get("namespaceSelector")
    if s.doc.kind == "Namespace":
        if not _selector_matches(ns_selector, {**_labels(s.doc.obj), NAME_LABEL: s.doc.name}, True):
            return False
    elif s.namespaced:
        ns_name = s.doc.namespace or "default"
        ns = namespaces.get(ns_name)
        ns_labels = {**(_labels(ns.obj) if ns is not None else {}), NAME_LABEL: ns_name}
        if not _selector_matches(ns_selector, ns_labels, ns is not None):
            return False
    return _selector_matches(constraints.get("objectSelector"), _labels(s.doc.obj), True)


# ---------------------------------------------------------------------------- evaluation

@dataclass
class _Eval:
    """One policy and binding applied to one object (with one params object)."""

    policy_name: str
    binding: Binding
    spec: dict[str, Any]
    s: Subject
    data: dict[str, Any]

    @property
    def fail_closed(self) -> bool:
        return (self.spec.get("failurePolicy") or "Fail") == "Fail"

    def run(self, source: str) -> Any:
        compiled = compile_expr(source, VARIABLES)
        if "userInfo" in identifiers(source):  # who will apply is not known at push time
            return compiled, Outcome(not_evaluated="reads request.userInfo, which is not known at push")
        return compiled, evaluate(compiled, activation(VARIABLES, self.data))

    def finding(self, rule_id: str, message: str, hint: str = "") -> Finding:
        d = self.s.doc
        return finding(rule_id, d.path, d.line, d.column, f"{d.describe()}: {message}", hint, subject=d.subject())


def _check(policy: dict[str, Any], binding: Binding, s: Subject, tree: TreeView, namespaces: dict[str, Any],
           ctx: CheckContext) -> Iterator[Finding]:
    name = binding.policy
    try:
        if not _matches(policy.get("matchConstraints"), s, namespaces):
            return
        if not _matches(binding.spec.get("matchResources"), s, namespaces):
            return
    except Unknown as exc:
        yield _unknown(s, name, binding, f"namespace {s.doc.namespace or 'default'}: {exc}")
        return
    params, problem = _params(policy, binding, s, tree)
    if problem:
        e = _Eval(name, binding, policy, s, {})
        yield e.finding(*problem)
        return
    ns = namespaces.get(s.doc.namespace or "default") if s.namespaced else None
    for param in params:
        data = _bindings(s, param, ns.obj if ns is not None else None)
        yield from _validate(_Eval(name, binding, policy, s, data), ns is None and s.namespaced)


def _unknown(s: Subject, policy: str, binding: Binding, why: str) -> Finding:
    d = s.doc
    return finding("admission-not-evaluated", d.path, d.line, d.column,
                   f"{d.describe()}: ValidatingAdmissionPolicy '{policy}' with binding '{binding.name}' not "
                   f"evaluated: {why}", subject=d.subject())


def _params(policy: dict[str, Any], binding: Binding, s: Subject, tree: TreeView) -> tuple[list[Any], tuple[str, str] | None]:
    kind = policy.get("paramKind")
    if not isinstance(kind, dict):
        return [None], None
    ref = binding.spec.get("paramRef")
    label = f"ValidatingAdmissionPolicy '{binding.policy}' with binding '{binding.name}'"
    if not isinstance(ref, dict):
        return [], ("admission-not-evaluated", f"{label} not evaluated: the policy has paramKind but the binding no paramRef")
    group = split_api_version(str(kind.get("apiVersion") or ""))[0]
    namespace = ref.get("namespace") or (s.doc.namespace or "default" if s.namespaced else "")
    found = []
    for d in tree.objects:
        if d.kind != kind.get("kind") or d.group != group or d.namespace != namespace and d.namespace:
            continue
        if ref.get("name") and d.name == ref["name"] or ref.get("selector") is not None and _selector_matches(
                ref.get("selector"), _labels(d.obj), True):
            found.append(d.obj)
    if found:
        return found, None
    if (ref.get("parameterNotFoundAction") or "Deny") == "Deny":
        return [], ("admission-denied", f"{label} denied request: no params found for policy binding with "
                                        "`Deny` parameterNotFoundAction")
    return [], None


def _escaped(value: Any) -> Any:
    """Objects as CEL sees them in admission: reserved words as field names are reachable as __name__."""
    if isinstance(value, dict):
        out = {k: _escaped(v) for k, v in value.items()}
        for k in value:
            if k in RESERVED:
                out[f"__{k}__"] = out[k]
        return out
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    return value


def _bindings(s: Subject, param: Any, namespace: dict[str, Any] | None) -> dict[str, Any]:
    d = s.doc
    request = {
        "kind": {"group": s.group, "version": s.version, "kind": d.kind},
        "resource": {"group": s.group, "version": s.version, "resource": s.resource},
        "name": d.name, "namespace": d.namespace if s.namespaced else "", "operation": s.operation,
        "userInfo": {"username": "", "groups": []}, "dryRun": False, "options": {},
    }
    return {"object": _escaped(d.obj), "oldObject": _escaped(s.old), "request": request,
            "params": _escaped(param), "namespaceObject": _escaped(namespace), "variables": {}}


def _validate(e: _Eval, namespace_unknown: bool) -> Iterator[Finding]:
    label = f"ValidatingAdmissionPolicy '{e.policy_name}' with binding '{e.binding.name}'"
    for cond in e.spec.get("matchConditions") or []:
        compiled, outcome = e.run(str(cond.get("expression", "")))
        if outcome.not_evaluated or outcome.error:
            yield from _trouble(e, label, compiled, outcome, namespace_unknown)
            return
        if outcome.value is not True:
            return
    for var in e.spec.get("variables") or []:
        compiled, outcome = e.run(str(var.get("expression", "")))
        if outcome.not_evaluated:
            yield from _trouble(e, label, compiled, outcome, namespace_unknown)
            return
        if not outcome.error:
            e.data["variables"] = {**e.data["variables"], str(var.get("name")): outcome.value}
    actions = e.binding.spec.get("validationActions") or ["Deny"]
    for v in e.spec.get("validations") or []:
        expr = str(v.get("expression", ""))
        compiled, outcome = e.run(expr)
        if outcome.not_evaluated or outcome.error:
            yield from _trouble(e, label, compiled, outcome, namespace_unknown)
            continue
        if outcome.value is True:
            continue
        message = rule_message(v, lambda m: e.run(m)[1], f"failed expression: {expr}")
        if "Deny" in actions:
            yield e.finding("admission-denied", f"{label} denied request: {message}", f"expression: {_one_line(expr)}")
        elif "Warn" in actions:
            yield e.finding("admission-warning", f"Validation failed for {label}: {message}",
                            f"expression: {_one_line(expr)}")


def _trouble(e: _Eval, label: str, compiled: Compiled, outcome: Any, namespace_unknown: bool) -> Iterator[Finding]:
    if outcome.not_evaluated:
        yield _unknown(e.s, e.policy_name, e.binding, f"expression '{_one_line(compiled.source)}' {outcome.not_evaluated}")
    elif namespace_unknown and "namespaceObject" in compiled.source:
        yield _unknown(e.s, e.policy_name, e.binding, "it reads namespaceObject and the namespace is not in the tree")
    elif e.fail_closed:
        yield e.finding("admission-denied", f"{label} denied request: expression '{_one_line(compiled.source)}' resulted in "
                                            f"error: {outcome.error} (failurePolicy Fail)")


def _one_line(source: str) -> str:
    text = " ".join(source.split())
    return text if len(text) <= 200 else text[:197] + "..."
