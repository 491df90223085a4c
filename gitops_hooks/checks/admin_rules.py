"""Administrator rules: CEL expressions in the server configuration, with an id, a message, a severity
and a match, registered in the rule catalogue like built-in rules (source: server config).

    cel_rules:
      - id: replicas-at-least-two
        expression: "!has(object.spec.replicas) || object.spec.replicas >= 2"
        message: Deployments run at least two replicas
        severity: error              # error (default), warning or info
        match: {kinds: [apps/Deployment], namespaces: [prod], paths: ["apps/**"]}

`object` is the object as written in the repository. A false result is a finding of the rule's id at the
object's line; an evaluation error is a finding too (the rule could not hold); a function this gate does
not provide makes a `cel-not-evaluated` warning.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .. import findings as findings_mod
from ..cel import activation, compile_expr, evaluate
from ..cel.engine import first_line
from ..config import CONFIG_CHECKS, ConfigError, matches
from ..findings import Finding, Rule, Severity, finding
from .base import CheckContext, document_check, only_for

VARIABLES = ("object",)
SOURCE = "server config"
_REGISTERED: set[str] = set()  # configurations (as JSON) whose rules are checked and in the catalogue


@dataclass(frozen=True)
class AdminRule:
    id: str
    expression: str
    message: str
    severity: Severity
    message_expression: str = ""
    kinds: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    explanation: str = ""

    def applies(self, doc: Any) -> bool:
        if self.kinds and doc.kind not in self.kinds and f"{doc.group}/{doc.kind}" not in self.kinds:
            return False
        if self.namespaces and doc.namespace not in self.namespaces:
            return False
        return not self.paths or matches(doc.path, self.paths)

    def catalogue_entry(self) -> Rule:
        scope = "; ".join(f"{k}: {', '.join(v)}" for k, v in
                          (("kinds", self.kinds), ("namespaces", self.namespaces), ("paths", self.paths)) if v)
        text = (self.explanation + "\n\n" if self.explanation else "") + (
            f"Administrator rule from the server configuration (cel_rules). Each matching object must make "
            f"this CEL expression true:\n\n    {self.expression}\n\nApplies to {scope or 'every object'}.")
        return Rule(self.id, "admin", self.severity, self.message, text, source=SOURCE)


def parse_rules(config: Mapping[str, Any]) -> tuple[AdminRule, ...]:
    return _parse(json.dumps(config.get("cel_rules") or [], sort_keys=True))


@functools.lru_cache(maxsize=8)
def _parse(text: str) -> tuple[AdminRule, ...]:
    out = []
    for item in json.loads(text):
        match = item.get("match") or {}
        out.append(AdminRule(
            item["id"], item["expression"], item["message"], Severity.parse(item.get("severity") or "error"),
            item.get("messageExpression") or "", tuple(match.get("kinds") or ()),
            tuple(match.get("namespaces") or ()), tuple(match.get("paths") or ()), item.get("explanation") or "",
        ))
    return tuple(out)


def register_config_rules(config: Mapping[str, Any]) -> tuple[AdminRule, ...]:
    """Check the administrator's rules (ids free, expressions compile) and put them in the catalogue.

    Raises ConfigError naming the rule for a problem the administrator must fix."""
    text = json.dumps(config.get("cel_rules") or [], sort_keys=True)
    rules = _parse(text)
    if text in _REGISTERED:
        return rules
    builtin = {k: v for k, v in findings_mod.catalogue().items() if v.source != SOURCE}
    seen: set[str] = set()
    for n, r in enumerate(rules):
        where = f"cel_rules[{n}] ({r.id})"
        if r.id in builtin:
            raise ConfigError(f"{where}: the id is taken by a {builtin[r.id].source} rule; choose another")
        if r.id in seen:
            raise ConfigError(f"{where}: the id is used twice")
        seen.add(r.id)
        for field, source in (("expression", r.expression), ("messageExpression", r.message_expression)):
            if source:
                compiled = compile_expr(source, VARIABLES)
                if not compiled.ok:
                    raise ConfigError(f"{where}: {field}: the expression {compiled.not_evaluated}")
        # Replacing is deliberate: a changed configuration changes the administrator's own entries.
        findings_mod._CATALOGUE[r.id] = r.catalogue_entry()
    _REGISTERED.add(text)
    return rules


def _check_config(config: Mapping[str, Any]) -> None:
    if config.get("cel_rules"):  # compile the administrator's CEL rules and list them in the catalogue
        register_config_rules(config)


CONFIG_CHECKS.append(_check_config)


def configured(ctx: CheckContext) -> tuple[AdminRule, ...]:
    """The administrator's rules of this run's configuration."""
    every = ctx.extra.get("admin_rules")
    if every is None:
        every = ctx.extra["admin_rules"] = register_config_rules(ctx.policy.config)
    return every


@document_check
@only_for(when=lambda ctx: bool(configured(ctx)))
def admin_cel_rules(doc: Any, ctx: CheckContext) -> Iterator[Finding]:
    rules = [r for r in configured(ctx) if r.applies(doc)]
    if not rules:
        return
    bindings = activation(VARIABLES, {"object": doc.obj})
    for r in rules:
        outcome = evaluate(compile_expr(r.expression, VARIABLES), bindings)
        if outcome.not_evaluated:
            yield finding("cel-not-evaluated", doc.path, doc.line, doc.column,
                          f"{doc.describe()}: administrator rule {r.id} not evaluated: it {outcome.not_evaluated}",
                          subject=doc.subject())
        elif outcome.value is not True:
            message = _message(r, bindings) if not outcome.error else f"{r.message} (evaluation error: {outcome.error})"
            yield finding(r.id, doc.path, doc.line, doc.column, f"{doc.describe()}: {message}",
                          f"administrator rule: {r.expression}", subject=doc.subject())


def _message(r: AdminRule, bindings: Any) -> str:
    if r.message_expression:
        return first_line(evaluate(compile_expr(r.message_expression, VARIABLES), bindings)) or r.message
    return r.message
