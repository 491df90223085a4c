"""GitLab (gitlab.com and self-managed): deliveries in, commit statuses and the merge request's summary
note out, through the REST API v4.

A delivery carries `X-Gitlab-Event` (`Push Hook`, `Tag Push Hook`, `Merge Request Hook`, ...),
`X-Gitlab-Token` (the webhook's secret token itself, compared in constant time) and `Idempotency-Key`
(the same on every retry of one delivery; `X-Gitlab-Webhook-UUID` and `X-Gitlab-Event-UUID` are not a
delivery's id). Since GitLab 19 a webhook may have a signing token instead or as well: the delivery then
carries the Standard Webhooks headers `webhook-id`, `webhook-timestamp` and `webhook-signature:
v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`, keyed with the base64-decoded
part of the `whsec_…` token. The webhook secret file holds the secret token, the signing token, or both
(one per line); each one configured must match what the delivery carries, and a signature older than
five minutes is refused.

Acted on: pushes, and merge request events with `open`, `reopen`, or `update` carrying `oldrev` (a new
head commit: an update without it is a title, label or assignee edit). The head is fetched by
`refs/merge-requests/N/head`, which GitLab keeps in the target project for requests from forks too; a
request is from a fork when its source project is not its target project.

Reports: `POST /projects/:id/statuses/:sha` (states pending, running, success, failed, canceled; `name`
is the context), on the merge request's source branch so that it becomes the request's pipeline, which
"Pipelines must succeed" gates on. GitLab answers 400 "Cannot transition status via …" when a status is
posted again in the state it holds (a retried report): that is the report already made, not an error.
"""

from __future__ import annotations

import base64
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..http import Http, HttpError, join
from ..model import Credentials, DeployState, Event, Limits, Report
from . import common

# Notes are refused over 1,000,000 characters ("Note is too long (maximum is 1000000 characters)").
# A commit status description has no documented limit: it is cut to 255, what the pipeline view shows.
LIMITS = Limits(status_description=255, comment_chars=1_000_000, extra={"name": 255, "tolerance": 300})
MR_ACTIONS = frozenset({"open", "reopen", "update"})
STATE = {"pending": "pending", "success": "success", "failure": "failed", "error": "failed"}
DEPLOY_STATE = {"in_progress": "running", "success": "success", "failure": "failed"}
PUSH_HOOKS = frozenset({"Push Hook", "Tag Push Hook"})


class GitLab:
    name = "gitlab"

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self.now = now

    def matches(self, headers: Mapping[str, str]) -> bool:
        return "x-gitlab-event" in headers

    def verify(self, headers: Mapping[str, str], body: bytes, secret: bytes) -> bool:
        parts = [p.strip() for p in secret.decode("utf-8", "replace").splitlines() if p.strip()]
        keys = [k for k in (common.standard_webhooks_key(p) for p in parts) if k is not None]
        tokens = [p for p in parts if common.standard_webhooks_key(p) is None]
        if not parts:
            return False
        if tokens:
            given = headers.get("x-gitlab-token", "")
            if not any([common.same(given, t) for t in tokens]) or not given:
                return False
        if keys:
            if not self._fresh(headers.get("webhook-timestamp", "")):
                return False
            if not any([common.standard_webhooks_ok(headers, body, k) for k in keys]):
                return False
        return True

    def _fresh(self, stamp: str) -> bool:
        return stamp.isdigit() and abs(self.now() - int(stamp)) <= LIMITS.extra["tolerance"]

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str:
        return headers.get("idempotency-key") or headers.get("webhook-id") or common.body_digest(body)

    def parse(self, headers: Mapping[str, str], body: bytes) -> list[Event]:
        """A push names one ref: GitLab sends a delivery per branch a `git push` updates (and none at
        all when it updates more than the instance's limit, 3 by default)."""
        event = self._event(headers, body)
        return [event] if event else []

    def _event(self, headers: Mapping[str, str], body: bytes) -> Event | None:
        kind = headers.get("x-gitlab-event", "")
        if kind not in PUSH_HOOKS and kind != "Merge Request Hook":
            return None
        data = common.payload(body)
        project = common.need(data, "project")
        base: dict[str, Any] = {"platform": self.name, "delivery_id": self.delivery_id(headers, body),
                                "repository": str(common.need(data, "project", "path_with_namespace")),
                                "clone_url": str(project.get("git_http_url", ""))}
        if kind in PUSH_HOOKS:
            after = str(common.need(data, "after"))
            if after == common.ZERO:
                return None  # a deleted branch deploys nothing
            return Event(kind="push", action=kind, ref=str(common.need(data, "ref")),
                         before=str(data.get("before") or common.ZERO), after=after,
                         sender=str(data.get("user_username") or data.get("user_name") or ""), **base)
        attrs = common.need(data, "object_attributes")
        action = str(attrs.get("action", ""))
        if action not in MR_ACTIONS or (action == "update" and not attrs.get("oldrev")):
            return None
        iid = int(common.need(data, "object_attributes", "iid"))
        source = common.need(data, "object_attributes", "source_project_id")
        target = common.need(data, "object_attributes", "target_project_id")
        return Event(kind="request", action=action, number=iid,
                     head_sha=str(common.need(data, "object_attributes", "last_commit", "id")),
                     head_ref=f"refs/merge-requests/{iid}/head",
                     base_ref="refs/heads/" + str(common.need(data, "object_attributes", "target_branch")),
                     from_fork=source != target, title=str(attrs.get("title", "")),
                     sender=str((data.get("user") or {}).get("username", "")), **base)


PLATFORMS = [GitLab()]


class GitLabReporter:
    def __init__(self, repository: str, creds: Credentials, http: Http) -> None:
        self.repository, self.creds, self.http = repository, creds, http
        self._me: int | None = None
        self._source: dict[int, str] = {}

    def _headers(self) -> dict[str, str]:
        return {"PRIVATE-TOKEN": self.creds.token} if self.creds.token else {}

    def _url(self, path: str, query: Mapping[str, str | int] | None = None) -> str:
        project = urllib.parse.quote(self.repository, safe="")
        return join(self.creds.api_url, f"projects/{project}/{path}", query)

    def git_auth_header(self) -> str:
        # git over HTTP takes a personal, project or group access token only as a Basic password (any
        # user name; `oauth2` by convention): the API's PRIVATE-TOKEN header means nothing to it.
        if not self.creds.token:
            return ""
        return "Basic " + base64.b64encode(f"oauth2:{self.creds.token}".encode()).decode("ascii")

    def _status(self, sha: str, state: str, name: str, description: str, ref: str, target_url: str = "") -> None:
        body = {"state": state, "name": name[: LIMITS.extra["name"]],
                "description": common.cut(description, LIMITS.status_description)}
        if ref:
            body["ref"] = ref
        if target_url:
            body["target_url"] = target_url
        url = self._url(f"statuses/{sha}")
        answer = self.http.post(url, body, headers=self._headers(), accept=(400,))
        if answer.status == 400 and b"Cannot transition status" not in answer.body:
            raise HttpError("POST", url, 400, answer.body.decode("utf-8", "replace"))

    def _request_ref(self, event: Event) -> str:
        """The merge request's source branch (the ref its pipeline runs on); for a fork's request,
        whose branch is not in this project, the merge request ref."""
        if event.from_fork:
            return event.head_ref
        if event.number not in self._source:
            mr = self.http.get(self._url(f"merge_requests/{event.number}"), headers=self._headers()).json()
            self._source[event.number] = str(mr["source_branch"])
        return self._source[event.number]

    def report(self, event: Event, report: Report) -> None:
        ref = self._request_ref(event) if event.kind == "request" else event.ref.removeprefix("refs/heads/")
        self._status(report.sha, STATE[report.state], report.context, report.title, ref, report.target_url)

    def deployment(self, event: Event, environment: str, state: DeployState, description: str) -> None:
        sha, ref = event.after or event.head_sha, event.ref.removeprefix("refs/heads/")
        self._status(sha, DEPLOY_STATE[state], f"gitops-hooks/{environment}", description, ref)

    def comment(self, event: Event, body: str) -> None:
        marker, body = common.split_marker(body)
        body = common.fit(body, LIMITS.comment_chars)
        notes = f"merge_requests/{event.number}/notes"
        mine = common.find_own(self._notes(notes), lambda n: str(n.get("body", "")), self._is_mine, marker)
        if mine is None:
            self.http.post(self._url(notes), {"body": body}, headers=self._headers())
        else:
            self.http.put(self._url(f"{notes}/{mine['id']}"), {"body": body}, headers=self._headers())

    def _is_mine(self, note: Mapping[str, Any]) -> bool:
        if note.get("system"):
            return False
        if self._me is None:
            self._me = int(self.http.get(join(self.creds.api_url, "user"), headers=self._headers()).json()["id"])
        return (note.get("author") or {}).get("id") == self._me

    def _notes(self, path: str) -> Iterator[list[Mapping[str, Any]]]:
        page = "1"
        for _ in range(100):  # 10,000 notes
            answer = self.http.get(self._url(path, {"sort": "asc", "order_by": "created_at", "per_page": 100,
                                                    "page": page}), headers=self._headers())
            yield list(answer.json() or [])
            page = answer.headers.get("x-next-page", "")
            if not page:
                return


def reporter(platform: str, repository: str, creds: Credentials, http: Http) -> GitLabReporter:
    del platform
    return GitLabReporter(repository, creds, http)
