"""Suppression by annotation: `gitops-hooks.io/suppress: rule-id[,rule-id]` on one object.

Only rules the administrator lists under `suppressible` are suppressed; every suppression (and every
refused one) becomes a finding of its own, so the push output lists it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from .checks.policy import SUPPRESS_ANNOTATION
from .config import Policy
from .documents import Document
from .findings import Finding, finding

Subject = tuple[str, str, str, str]


@dataclass(frozen=True)
class Request:
    """What one object's annotation asks for, and where it is written."""

    path: str
    line: int
    column: int
    label: str
    rules: frozenset[str]


def requests(objects: Iterable[Document]) -> dict[Subject, Request]:
    out: dict[Subject, Request] = {}
    for doc in objects:
        annotations = doc.metadata.get("annotations")
        value = annotations.get(SUPPRESS_ANNOTATION) if isinstance(annotations, dict) else None
        if not isinstance(value, str):
            continue
        rules = frozenset(r.strip() for r in value.split(",") if r.strip())
        if rules:
            line, col = doc.locate(("metadata", "annotations", SUPPRESS_ANNOTATION), key=True)
            out[doc.subject()] = Request(doc.path, line, col, doc.describe(), rules)
    return out


def apply(findings: list[Finding], objects: Iterable[Document], policy: Policy) -> list[Finding]:
    """Drop suppressed findings; add one finding per suppression (used or refused)."""
    return apply_requests(findings, requests(objects), policy)


def apply_requests(findings: list[Finding], wanted: dict[Subject, Request], policy: Policy) -> list[Finding]:
    if not wanted:
        return findings
    allowed = set(policy.config.get("suppressible", []))
    out: list[Finding] = []
    used: Counter[tuple[Subject, str]] = Counter()
    refused: Counter[tuple[Subject, str]] = Counter()
    for f in findings:
        req = wanted.get(f.subject) if f.subject is not None else None
        if req is None or f.rule not in req.rules:
            out.append(f)
            continue
        assert f.subject is not None
        if f.rule in allowed:
            used[(f.subject, f.rule)] += 1
        else:
            refused[(f.subject, f.rule)] += 1
            out.append(f)
    for (subject, rule_id), count in sorted(used.items()):
        req = wanted[subject]
        out.append(finding("policy-suppressed", req.path, req.line, req.column,
                           f"{req.label}: {count} [{rule_id}] finding{'s' if count > 1 else ''} suppressed "
                           f"by its {SUPPRESS_ANNOTATION} annotation", subject=subject))
    for (subject, rule_id), _ in sorted(refused.items()):
        req = wanted[subject]
        out.append(finding("policy-suppress-refused", req.path, req.line, req.column,
                           f"{req.label}: {SUPPRESS_ANNOTATION} asks to suppress [{rule_id}], which the "
                           "administrator has not made suppressible; the finding stands",
                           "fix the object, or ask the administrator to list the rule under suppressible",
                           subject=subject))
    return out
