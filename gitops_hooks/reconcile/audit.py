"""The audit trail: a git note under refs/notes/gitops on each reconciled commit.

A note holds YAML records per environment, oldest first (at most 20 per environment): who pushed, when,
the result, the change set and, once known, the health. A reconcile that finds everything in place
after a success only refreshes the `checked` time of the last record. Notes are written under a file lock with
`git notes`, which moves the notes ref only once the new notes commit is complete, so a note is never
half-written; a writer killed midway leaves the previous note in place.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from .changes import ChangeSet
from .state import locked, state_dir

NOTES_REF = "refs/notes/gitops"
PUSHER_VARS = ("GL_USERNAME", "GITHUB_USER_LOGIN", "REMOTE_USER", "USER")


def pusher(env: Mapping[str, str]) -> str:
    for var in PUSHER_VARS:
        if env.get(var):
            return f"{env[var]} ({var})"
    try:  # a local or ssh push runs the hook as the pushing account
        import pwd

        return f"{pwd.getpwuid(os.getuid()).pw_name} (account)"
    except (KeyError, ImportError):
        return "unknown"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Record:
    environment: str
    commit: str
    ref: str
    pusher: str
    time: str
    result: str  # applied, failed, triggered, dry-run
    changes: Mapping[str, list[str]]
    error: str = ""
    health: str = ""  # waiting, healthy, failed, timed out, or empty when not checked
    health_detail: tuple[str, ...] = ()
    attempts: int = 1
    checked: str = ""  # the last quiet reconcile that found this commit in place

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"environment": self.environment, "commit": self.commit, "ref": self.ref,
                               "pusher": self.pusher, "time": self.time, "result": self.result,
                               "attempts": self.attempts,
                               "changes": {k: list(v) for k, v in self.changes.items()}}
        if self.error:
            out["error"] = self.error
        if self.health:
            out["health"] = self.health
        if self.health_detail:
            out["health_detail"] = list(self.health_detail)
        if self.checked:
            out["checked"] = self.checked
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Record:
        return cls(str(d.get("environment", "")), str(d.get("commit", "")), str(d.get("ref", "")),
                   str(d.get("pusher", "")), str(d.get("time", "")), str(d.get("result", "")),
                   {str(k): [str(x) for x in v or []] for k, v in (d.get("changes") or {}).items()},
                   str(d.get("error", "")), str(d.get("health", "")), tuple(d.get("health_detail") or ()),
                   int(d.get("attempts", 1)), str(d.get("checked", "")))

    def counts(self) -> str:
        return ", ".join(f"{len(self.changes.get(a, []))} {a}" for a in
                         ("created", "configured", "unchanged", "pruned", "failed"))


def changes_of(cs: ChangeSet) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {a: [] for a in ("created", "configured", "unchanged", "pruned", "failed")}
    for c in cs.changes:
        text = c.subject + (f" -n {c.namespace}" if c.namespace else "")
        if c.action in ("failed", "skipped", "triggered") and c.message:
            text += f": {c.message}"
        out.setdefault(c.action, []).append(text)
        if c.taken:
            out.setdefault("corrected", []).append(f"{text}: {c.correction()}")
    return out


def _git(git_dir: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_AUTHOR_NAME="gitops-hooks", GIT_AUTHOR_EMAIL="gitops-hooks@localhost",
               GIT_COMMITTER_NAME="gitops-hooks", GIT_COMMITTER_EMAIL="gitops-hooks@localhost")
    return subprocess.run(["git", "--git-dir", str(git_dir), *args], input=input, capture_output=True, text=True,
                          env=env, check=False)


def read_note(git_dir: Path, commit: str) -> list[Record]:
    proc = _git(git_dir, "notes", f"--ref={NOTES_REF}", "show", commit)
    if proc.returncode != 0:
        return []
    try:
        data = yaml.load(proc.stdout, Loader=SAFE_LOADER)
    except yaml.YAMLError:
        return []
    items = data.get("reconciles") if isinstance(data, dict) else None
    return [Record.from_dict(x) for x in items or [] if isinstance(x, dict)]


# libyaml's when PyYAML has it (a note lists every object: ten times faster, the same text), else PyYAML's own
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
SAFE_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
MAX_RECORDS = 20  # per environment and commit; the oldest go first


def quiet(r: Record) -> bool:
    """A run that found everything in place: nothing created, configured, pruned or failed."""
    return r.result == "applied" and not r.error and not any(
        r.changes.get(a) for a in ("created", "configured", "pruned", "failed"))


def write(git_dir: Path, record: Record) -> None:
    """Add the record to the commit's note. A quiet run after a success only refreshes the last record's
    `checked` time, so a periodic `gitops-hooks reconcile` does not fill the note with no-ops."""
    def change(records: list[Record]) -> list[Record]:
        if records and quiet(record) and records[-1].result == "applied" and not records[-1].error:
            return records[:-1] + [replace(records[-1], checked=record.time)]
        return (records + [record])[-MAX_RECORDS:]

    _update(git_dir, record.commit, record.environment, change)


def update_health(git_dir: Path, environment: str, commit: str, health: str, detail: list[str]) -> None:
    def change(records: list[Record]) -> list[Record]:
        if not records:
            return records
        return records[:-1] + [replace(records[-1], health=health, health_detail=tuple(detail))]

    _update(git_dir, commit, environment, change)


def _update(git_dir: Path, commit: str, environment: str, change: Callable[[list[Record]], list[Record]]) -> None:
    with locked(state_dir(git_dir) / "notes.lock", blocking=True):
        records = read_note(git_dir, commit)
        mine = [r for r in records if r.environment == environment]
        new = change(mine)
        if new == mine:
            return
        records = sorted([r for r in records if r.environment != environment], key=lambda r: r.environment) + new
        text = "# gitops-hooks reconcile records, oldest first\n" + yaml.dump(
            {"reconciles": [r.to_dict() for r in records]}, Dumper=SAFE_DUMPER, sort_keys=False, allow_unicode=True,
            width=200)
        error = "git notes failed"
        for attempt in range(20):
            proc = _git(git_dir, "notes", f"--ref={NOTES_REF}", "add", "-f", "-F", "-", commit, input=text)
            if proc.returncode == 0:
                return
            error = (proc.stderr.strip().splitlines() or [error])[-1]
            time.sleep(0.05 * (attempt + 1))
        raise OSError(f"cannot write the audit note: {error}")


def history(git_dir: Path, environment: str, limit: int = 50) -> list[Record]:
    proc = _git(git_dir, "notes", f"--ref={NOTES_REF}", "list")
    out: list[Record] = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        out.extend(r for r in read_note(git_dir, parts[1]) if r.environment == environment)
    out.sort(key=lambda r: r.time, reverse=True)
    return out[:limit]
