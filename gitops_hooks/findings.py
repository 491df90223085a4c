"""Findings: what a check says about one place in the tree, and the rule catalogue they refer to."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field, replace


class Severity(enum.IntEnum):
    """Ordered so that max() gives the worst. OFF never reaches a report."""

    OFF = 0
    INFO = 1
    WARNING = 2
    ERROR = 3

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r} (use error, warning, info or off)") from None

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Rule:
    """One entry of the catalogue: every finding names exactly one rule."""

    id: str
    family: str
    severity: Severity
    summary: str
    explanation: str
    example: str = ""
    suppressible: bool = False
    source: str = "built-in"


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    line: int
    column: int
    rule: str
    severity: Severity
    message: str
    hint: str = ""
    # The object the finding is about, when there is one: (apiVersion, kind, namespace, name).
    subject: tuple[str, str, str, str] | None = field(default=None, compare=False)

    def with_severity(self, severity: Severity) -> Finding:
        return replace(self, severity=severity)


_CATALOGUE: dict[str, Rule] = {}


def register(*rules: Rule) -> None:
    for rule in rules:
        existing = _CATALOGUE.get(rule.id)
        if existing is not None and existing != rule:
            raise ValueError(f"rule id {rule.id!r} registered twice with different metadata")
        _CATALOGUE[rule.id] = rule


def catalogue() -> dict[str, Rule]:
    """The rules registered so far. Each family registers its rules when its module is imported; the
    entry points import them all first (`rulebook.register_all`)."""
    return dict(_CATALOGUE)


def rule(rule_id: str) -> Rule:
    """A registered rule; KeyError for an id nobody registered."""
    return _CATALOGUE[rule_id]


def finding(
    rule_id: str,
    path: str,
    line: int,
    column: int,
    message: str,
    hint: str = "",
    subject: tuple[str, str, str, str] | None = None,
) -> Finding:
    """Make a finding at the rule's default severity; policy adjusts it later."""
    return Finding(path, line, column, rule_id, rule(rule_id).severity, message, hint, subject)


def worst(findings: Iterable[Finding]) -> Severity:
    return max((f.severity for f in findings), default=Severity.OFF)
