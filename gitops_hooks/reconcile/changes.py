"""What a reconcile did, object by object: the change set that is streamed, recorded and summed up."""

from __future__ import annotations

from dataclasses import dataclass, field

from .fields import Taken, summary

ACTIONS = ("created", "configured", "unchanged", "pruned", "failed", "skipped", "triggered")


@dataclass(frozen=True)
class Change:
    action: str
    subject: str  # kubectl style: deployment.apps/web
    namespace: str = ""
    message: str = ""
    taken: tuple[Taken, ...] = ()  # fields of git taken back from other managers by this apply

    def line(self) -> str:
        """kubectl's progress line: `deployment.apps/web configured` (the note also keeps the namespace);
        a correction says what it took back: `...configured: took back .spec.replicas from kubectl (scale)`."""
        text = f"{self.subject} {self.action}"
        note = "; ".join(x for x in (self.message, self.correction()) if x)
        return f"{text}: {note}" if note else text

    def correction(self) -> str:
        return summary(self.taken) if self.taken else ""


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

    @property
    def corrections(self) -> list[Change]:
        return [c for c in self.changes if c.taken]

    @property
    def changed(self) -> int:
        """Objects created, configured or pruned."""
        return sum(1 for c in self.changes if c.action in ("created", "configured", "pruned"))

    def summary(self) -> str:
        parts = [f"{len(self.of(a))} {a}" for a in ACTIONS if self.of(a) or a in ("created", "configured", "pruned")]
        return ", ".join(parts)

    def plus(self, *changes: Change, error: str = "", note: str = "") -> ChangeSet:
        return ChangeSet(self.changes + changes, error or self.error, self.notes + ((note,) if note else ()))
