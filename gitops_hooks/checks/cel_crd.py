"""CRD validation rules (`x-kubernetes-validations`) evaluated for custom resources, as the API server would.

Rules run at every level of the schema where they sit, with `self` (and `oldSelf` for transition rules),
`message` / `messageExpression`, `fieldPath` and `reason`. Plain rules depend on the object alone and are a
document check (cached with the object's blob); transition rules compare with the same object at the
old commit of the ref and run as a tree check on every push. A rule with `optionalOldSelf: true` also runs
on create, with `oldSelf` an empty optional (the gate rewrites `oldSelf` to `(__oldSelfBox.?value)`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

from ..cel import activation, compile_expr, evaluate
from ..cel.engine import replace_identifier, rule_message
from ..cel.previous import identity, old_objects
from ..cel.structural import MISSING, Site, dotted, field_path, rule_sites, to_cel
from ..findings import Finding, Rule, Severity, finding, register
from ..schemas import split_api_version
from .base import CheckContext, TreeView, document_check, tree_check

VARIABLES = ("self", "oldSelf")
OLD_BOX = "__oldSelfBox"  # optionalOldSelf: oldSelf is rewritten to `(__oldSelfBox.?value)`, an optional
OPTIONAL_VARIABLES = ("self", OLD_BOX)
MAX_PER_OBJECT = 20
REASONS = {
    "FieldValueInvalid": "Invalid value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueRequired": "Required value",
    "FieldValueDuplicate": "Duplicate value",
}

register(
    Rule("crd-rule", "cel", Severity.ERROR,
         "A custom resource breaks a validation rule (x-kubernetes-validations) of its CRD.",
         "The API server evaluates the CEL rules of a CustomResourceDefinition's schema on every create and "
         "update, and refuses the object when one is false. The gate evaluates the same rules (from the CRD in "
         "the repository, the administrator's schema_dirs, or the bundled CRDs) with defaults applied, so the "
         "push is refused with the rule's own message and the line of the field, instead of the apply failing "
         "later in the cluster.",
         "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: web\nspec:\n"
         "  rules:\n    - matches:\n        - path: {type: PathPrefix, value: /app}\n"),
    Rule("crd-rule-transition", "cel", Severity.ERROR,
         "A change breaks a transition rule (oldSelf) of the CRD, such as an immutable field.",
         "Transition rules compare the new object with the object the cluster has. The gate compares with the "
         "same object (same group, kind, namespace and name) at the ref's previous commit, so a change the API "
         "server would refuse on update (for example `self == oldSelf` on an immutable field) is refused at "
         "push. To change such a field, delete the object in one push and create it again in another.", ""),
    Rule("cel-not-evaluated", "cel", Severity.WARNING,
         "A CEL rule could not be evaluated here; it was neither passed nor failed.",
         "The rule uses a function or variable this gate does not provide (for example list indexOf or "
         "`authorizer`), or does not compile. The cluster will still evaluate it on apply. The finding names "
         "the function; make it an error with `rules: {cel-not-evaluated: error}` to refuse such pushes.", ""),
)


def _gvk(doc: Any) -> tuple[str, str, str]:
    group, version = split_api_version(doc.api_version)
    return group, version, doc.kind


def _rules(doc: Any, ctx: CheckContext) -> str:
    """`validation_rules` of the object's kind ("" for a kind no CRD defines)."""
    gvk = _gvk(doc)
    return ctx.custom.traits(gvk)[0] if doc.kind and gvk in ctx.custom else ""


def _schema(doc: Any, ctx: CheckContext) -> dict[str, Any] | None:
    """The raw openAPIV3Schema of the object's kind, when its CRD carries any rule (ctx.custom keeps
    both once loaded)."""
    raw = ctx.custom.raw(_gvk(doc)) if _rules(doc, ctx) else None
    return raw[0] if raw else None


@document_check
def crd_rules(doc: Any, ctx: CheckContext) -> Iterator[Finding]:
    schema = _schema(doc, ctx)
    if schema is None:
        return
    yield from _limit(doc, evaluate_rules(doc, schema, to_cel(doc.obj, schema), MISSING, transitions=False))


def _unchanged_paths(tree: TreeView, ctx: CheckContext) -> set[str]:
    """Files whose blob is the same at the old commit: their objects equal their old selves."""
    if ctx.old_tree is None:
        return set()
    try:
        old = {e.path: e.oid for e in ctx.old_tree.entries()}
    except Exception:  # noqa: BLE001 - no usable old tree: treat everything as changed
        return set()
    return {e.path for e in tree.entries if old.get(e.path) == e.oid}


@tree_check
def crd_transition_rules(tree: TreeView, ctx: CheckContext) -> Iterator[Finding]:
    unchanged = _unchanged_paths(tree, ctx)
    by_type: dict[tuple[str, str], str] = {}  # (apiVersion, kind) -> _transition_kinds
    for doc in tree.objects:
        if doc.path in unchanged and getattr(doc, "from_blob", False):
            continue  # the same bytes as before: a transition to itself (rendered objects are always checked)
        if not doc.kind or not doc.name:
            continue
        kinds = by_type.get((doc.api_version, doc.kind))
        if kinds is None:
            kinds = by_type[doc.api_version, doc.kind] = _transition_kinds(doc, ctx)
        if not kinds:
            continue
        old = old_objects(ctx).get(identity(doc)) if ctx.old_tree is not None else None
        if old is None and kinds != "optional":  # a new object: only optionalOldSelf rules run on create
            continue
        schema = _schema(doc, ctx)
        assert schema is not None
        old_value = to_cel(old.obj, schema) if old is not None else MISSING
        yield from _limit(doc, evaluate_rules(doc, schema, to_cel(doc.obj, schema), old_value, transitions=True))


def _transition_kinds(doc: Any, ctx: CheckContext) -> str:
    """"" (no transition rules), "plain" or "optional" (some with optionalOldSelf, which run on create too)."""
    rules = _rules(doc, ctx)
    return rules if rules in ("plain", "optional") else ""


def _limit(doc: Any, found: Iterable[Finding]) -> Iterator[Finding]:
    for count, f in enumerate(found):
        if count == MAX_PER_OBJECT:
            yield finding(f.rule, doc.path, doc.line, doc.column,
                          f"{doc.describe()}: more validation rules failed; not shown", subject=doc.subject())
            return
        yield f


def evaluate_rules(doc: Any, schema: dict[str, Any], value: Any, old: Any, transitions: bool) -> Iterator[Finding]:
    """Findings for the rules of one object: plain rules, or (transitions=True) only transition rules."""
    for site in rule_sites(schema, value, old):
        bindings = None
        for rule in site.rules:
            source = rule.get("rule")
            if not isinstance(source, str):
                continue
            compiled = compile_expr(source, VARIABLES)
            if compiled.uses_old_self != transitions:
                continue
            if transitions and rule.get("optionalOldSelf") is True:
                yield from _optional_old_self(doc, site, rule)
                continue
            if transitions and site.old is MISSING:
                continue
            if bindings is None:
                bindings = activation(VARIABLES, {"self": site.value, "oldSelf": None if site.old is MISSING else site.old})
            outcome = evaluate(compiled, bindings)
            if outcome.not_evaluated:
                yield _not_evaluated(doc, site, source, outcome.not_evaluated)
            elif outcome.error or outcome.value is not True:
                yield _failed(doc, site, rule, outcome.error, outcome.value, bindings, transitions)


def _optional_old_self(doc: Any, site: Site, rule: dict[str, Any]) -> Iterator[Finding]:
    """A rule with optionalOldSelf: oldSelf is an optional, empty on create (or where nothing was before)."""
    source = replace_identifier(str(rule["rule"]), "oldSelf", f"({OLD_BOX}.?value)")
    box = {} if site.old is MISSING else {"value": site.old}
    bindings = activation(OPTIONAL_VARIABLES, {"self": site.value, OLD_BOX: box})
    outcome = evaluate(compile_expr(source, OPTIONAL_VARIABLES), bindings)
    if outcome.not_evaluated:
        yield _not_evaluated(doc, site, str(rule["rule"]), outcome.not_evaluated)
    elif outcome.error or outcome.value is not True:
        rewritten = dict(rule, rule=source)
        if isinstance(rule.get("messageExpression"), str):
            rewritten["messageExpression"] = replace_identifier(rule["messageExpression"], "oldSelf", f"({OLD_BOX}.?value)")
        found = _failed(doc, site, rewritten, outcome.error, outcome.value, bindings, True, OPTIONAL_VARIABLES)
        yield dataclasses.replace(found, hint=f"rule: {_short(str(rule['rule']))}")


def _not_evaluated(doc: Any, site: Site, source: str, why: str) -> Finding:
    line, col = doc.locate(site.path)
    return finding("cel-not-evaluated", doc.path, line, col,
                   f"{doc.describe()}: {dotted(site.path)}: validation rule not evaluated: it {why}",
                   f"rule: {_short(source)}", subject=doc.subject())


def _failed(doc: Any, site: Site, rule: dict[str, Any], error: str, value: Any, bindings: Any,
            transition: bool, variables: tuple[str, ...] = VARIABLES) -> Finding:
    source = str(rule["rule"])
    if error:
        message = f"rule evaluation error: {error}"
    elif not isinstance(value, bool):
        message = f"the rule returned {type(value).__name__}, not a boolean"
    else:
        message = rule_message(rule, lambda m: evaluate(compile_expr(m, variables), bindings),
                               f"failed rule: {rule['rule']}")
    path = site.path
    extra = field_path(rule["fieldPath"]) if isinstance(rule.get("fieldPath"), str) else None
    if extra:
        path = path + extra
    reason = REASONS.get(str(rule.get("reason") or "FieldValueInvalid"), "Invalid value")
    line, col = doc.locate(path)
    rule_id = "crd-rule-transition" if transition else "crd-rule"
    return finding(rule_id, doc.path, line, col, f"{doc.describe()}: {dotted(path)}: {reason}: {message}",
                   f"rule: {_short(source)}", subject=doc.subject())


def _short(source: str) -> str:
    one = " ".join(source.split())
    return one if len(one) <= 160 else one[:157] + "..."
