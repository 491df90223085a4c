"""What a reconcile did, object by object: the change set that is streamed, recorded and summed up."""

from __future__ import annotations

from dataclasses import dataclass, field

ACTIONS = ("created", "configured", "unchanged", "pruned", "failed", "skipped", "triggered")


@dataclass(frozen=True)
class Change:
    action: str
    subject: str  # kubectl style: deployment.apps/web
    namespace: str = ""
    message: str = ""

    def line(self) -> str:
        """kubectl's progress line: `deployment.apps/web configured` (the note also keeps the namespace)."""
        text = f"{self.subject} {self.action}"
        return f"{text}: {self.message}" if self.message else text


@dataclass(frozen=True)
class ChangeSet:
    changes: tuple[Change, ...] = ()
    error: str = ""  # a failure of the whole run (unreachable cluster, refused prune, ...)
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.error and not any(c.action == "failed" for c in self.changes)

    def of(self, action: str) -> list[Change]:
        return [c for c in self.changes if c.action == action]

    def summary(self) -> str:
        parts = [f"{len(self.of(a))} {a}" for a in ACTIONS if self.of(a) or a in ("created", "configured", "pruned")]
        return ", ".join(parts)

    def plus(self, *changes: Change, error: str = "", note: str = "") -> ChangeSet:
        return ChangeSet(self.changes + changes, error or self.error, self.notes + ((note,) if note else ()))
