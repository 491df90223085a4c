"""What the platform tests share: the real payloads of ../shared/webhooks, an Http client whose sleeps
are recorded instead of slept, and the one reporting round every platform must pass against its double.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from conftest import SHARED

from gitops_hooks.hosted.http import Http
from gitops_hooks.hosted.model import Event, Report, Reporter

WEBHOOKS = SHARED / "webhooks"
MARKER = "<!-- gitops-hooks:summary -->"


def real(name: str) -> bytes:
    return (WEBHOOKS / name).read_bytes()


def edited(name: str, change: Callable[[dict[str, Any]], None]) -> bytes:
    """A real payload with one change made (then signed afresh by the test)."""
    data = json.loads(real(name))
    change(data)
    return json.dumps(data).encode()


@dataclass
class Sleeps:
    waits: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def http() -> tuple[Http, Sleeps]:
    sleeps = Sleeps()
    return Http(timeout=5.0, retries=3, backoff=0.01, sleep=sleeps), sleeps


def summary(text: str) -> str:
    return f"{MARKER}\n### gitops-hooks: {text}\n\n| file | line | rule |\n|---|---|---|\n| apps/web.yaml | 7 | schema |\n"


def failing(sha: str) -> Report:
    return Report(sha=sha, state="failure", title="1 error: apps/web.yaml:7 replicas is not an integer",
                  summary="apps/web.yaml:7:13 schema: spec.replicas: 'two' is not of type 'integer'")


@dataclass
class Round:
    """One platform's double, seen through what a test needs to count."""

    reporter: Reporter
    event: Event
    comments: Callable[[], list[dict[str, Any]]]  # the request's comments, as the double holds them
    text: Callable[[dict[str, Any]], str]  # a comment's text
    author: Callable[[dict[str, Any]], Any]  # a comment's author id
    me: Any  # the token's user's id
    plant_other: Callable[[str], None]  # another user writes a comment with this text
    marker: str = MARKER  # how the hidden marker reads once posted


def comment_round(r: Round, limit: int) -> None:
    """Created once, edited in place after, never another user's, cut with a count over the limit."""
    r.plant_other(r.marker + "\nquoted by a reviewer")
    r.reporter.comment(r.event, summary("1 error"))
    mine = [c for c in r.comments() if r.author(c) == r.me]
    assert len(mine) == 1 and "1 error" in r.text(mine[0])
    r.reporter.comment(r.event, summary("all checks pass"))
    after = r.comments()
    mine = [c for c in after if r.author(c) == r.me]
    assert len(mine) == 1 and "all checks pass" in r.text(mine[0])
    others = [c for c in after if r.author(c) != r.me]
    assert [r.text(c) for c in others] == [r.marker + "\nquoted by a reviewer"]  # never edited
    rows = limit // 25 + 100  # enough rows to be over the limit
    big = summary("many findings") + "".join(f"| apps/f{i}.yaml | {i} | schema |\n" for i in range(rows))
    r.reporter.comment(r.event, big)
    mine = [c for c in r.comments() if r.author(c) == r.me]
    assert len(mine) == 1
    text = r.text(mine[0])
    assert len(text) <= limit and "more lines not shown" in text and r.marker in text
    shown = text.count("| apps/f")
    assert f"… {rows - shown:,} more lines not shown" in text  # the count is of what was left out


def retry_round(double: Any, pattern: str, sleeps: Sleeps, act: Callable[[], None],
                posted: Callable[[], int]) -> None:
    """A 500, then a 429 with Retry-After: 3, then the call goes through, once."""
    before = posted()
    double.fail(pattern, 500, 1)
    double.fail(pattern, 429, 1, {"Retry-After": "3"}, {"message": "rate limit exceeded"})
    sleeps.waits.clear()
    act()
    assert posted() == before + 1
    assert sleeps.waits[1] == 3.0 and len(sleeps.waits) == 2  # backoff after the 500, Retry-After after the 429
