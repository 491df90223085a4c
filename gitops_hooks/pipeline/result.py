"""The result of a run: its findings and its figures."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..findings import Finding, Severity


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
