"""The neutral types every hosted platform is translated into and out of.

A platform module (`hosted/platforms/<name>.py`) does four things and nothing else: recognise its
deliveries by their headers, verify their signature, parse a payload into an `Event`, and report a
`Report` (and the summary comment, and deployments) back through the platform's API. Everything between
(the queue, the mirror, the pipeline, the reconcile) sees only these types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

EventKind = Literal["push", "request", "round"]  # round: queued by the service itself
State = Literal["pending", "success", "failure", "error"]
DeployState = Literal["in_progress", "success", "failure"]
Severity = Literal["failure", "warning", "notice"]


class PayloadError(ValueError):
    """A body whose signature is good but which is not a payload this platform sends (answered 400)."""


@dataclass(frozen=True)
class Credentials:
    """What one configured repository may use to reach its platform: read from files, never logged."""

    api_url: str
    token: str = ""  # token_file
    app_id: str = ""  # GitHub App
    private_key: str = ""  # private_key_file (PEM)
    installation_id: str = ""


@dataclass(frozen=True)
class Event:
    """One delivery, as the job runner needs it. Commit ids may be short in payloads (Bitbucket Cloud):
    the job resolves them in the mirror and never trusts payload commit lists."""

    platform: str  # github, gitlab, bitbucket-cloud, bitbucket-datacenter, gitea, forgejo
    repository: str  # owner/name, group/project, workspace/slug or PROJECT/slug, as the payload names it
    kind: EventKind
    delivery_id: str  # the platform's delivery id, or the body's sha256 when it sends none
    action: str  # the platform's own word: opened, synchronize, update, pullrequest:updated, ...
    clone_url: str = ""  # as in the payload; informational only, the configured clone_url is fetched
    sender: str = ""  # who pushed or opened the request
    # push: the ref and its old and new tips (all zeros for a created or deleted ref)
    ref: str = ""  # refs/heads/main
    before: str = ""
    after: str = ""
    # request: number, the head commit and the ref to fetch it by, and the target branch
    number: int = 0
    head_sha: str = ""
    head_ref: str = ""  # refs/pull/N/head, refs/merge-requests/N/head, refs/pull-requests/N/from, ...
    base_ref: str = ""  # refs/heads/<target branch>
    base_sha: str = ""
    from_fork: bool = False
    title: str = ""


@dataclass(frozen=True)
class Annotation:
    path: str
    line: int
    severity: Severity
    title: str  # the rule id
    message: str
    column: int = 0


@dataclass(frozen=True)
class Report:
    """The verdict on one commit, for the platform's check run, commit status or Code Insights report."""

    sha: str
    state: State  # failure for a failing commit; error only when the service itself failed
    title: str  # one line, e.g. "3 errors, 1 warning"
    summary: str  # Markdown
    text: str = ""  # Markdown: the explanations of the rules that failed
    annotations: tuple[Annotation, ...] = ()
    context: str = "gitops-hooks"  # the status context; gitops-hooks/<environment> for deployments
    target_url: str = ""


class Platform(Protocol):
    """Recognise, verify and parse one platform's deliveries. Pure: no network, no disk."""

    name: str

    def matches(self, headers: Mapping[str, str]) -> bool:
        """Whether these (lower-cased) headers are this platform's."""

    def verify(self, headers: Mapping[str, str], body: bytes, secret: bytes) -> bool:
        """The signature, checked in constant time before anything parses the body."""

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str:
        """The delivery id that stays the same on a redelivery."""

    def parse(self, headers: Mapping[str, str], body: bytes) -> list[Event]:
        """The events of a delivery: one, or one per branch when a push names several (Bitbucket); none
        when it is not acted on (answered 204). Raises PayloadError."""


class Reporter(Protocol):
    """Report back to one repository on its platform. Every call is bounded by a timeout and retried on
    5xx, 429 and Retry-After; a call that still fails raises, so that the job stays queued."""

    def report(self, event: Event, report: Report) -> None:
        """Commit status plus, where the platform has one, a check run or Code Insights report."""

    def comment(self, event: Event, body: str) -> None:
        """Create or edit in place the one summary comment of the service on the request."""

    def deployment(self, event: Event, environment: str, state: DeployState, description: str) -> None:
        """A deployment status (GitHub) or a commit status `gitops-hooks/<environment>` elsewhere."""

    def git_auth_header(self) -> str:
        """The HTTP Authorization header value git fetches with ('' for none); never put in argv or logs."""


@dataclass(frozen=True)
class Limits:
    """Each platform's documented limits, which reports are cut to (with a count of what was left out)."""

    status_description: int = 140
    comment_chars: int = 65536
    annotations_per_request: int = 50
    annotations_per_report: int = 0  # 0: no limit
    extra: Mapping[str, int] = field(default_factory=dict)
