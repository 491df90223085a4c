"""Gitea and Forgejo: deliveries in, commit statuses and the summary comment out.

Both send GitHub's headers too (`X-GitHub-Event`, `X-Hub-Signature-256`) so they are matched before
GitHub, and Forgejo (which keeps Gitea's `X-Gitea-*` headers beside its own `X-Forgejo-*`) before Gitea.
A delivery carries `X-Gitea-Event` / `X-Forgejo-Event`, `X-Gitea-Delivery` / `X-Forgejo-Delivery` (a
UUID kept on a redelivery) and `X-Gitea-Signature` / `X-Forgejo-Signature`: the hex HMAC-SHA256 of the
body, keyed with the webhook secret, without a `sha256=` prefix.

Acted on: `push`, and `pull_request` with `opened`, `reopened` or `synchronized` (a new head commit).
The request's head is fetched by `refs/pull/N/head`, which Gitea and Forgejo keep in the base
repository for requests from forks too. A request is from a fork when its head repository is not the
base repository (or is gone).

Reports go to `{api_url}/repos/{owner}/{repo}/statuses/{sha}` (states pending, success, error, failure,
warning) and the summary comment to the request's issue comments, found by its marker among the
comments of the token's own user (`GET {api_url}/user`).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from typing import Any

from ..http import Http, join
from ..model import Credentials, DeployState, Event, Limits, Report
from . import common

# Gitea and Forgejo document no length for a status description or a comment (both are TEXT columns):
# the description is kept to GitHub's 140 characters, which their UI shows whole, and the comment to
# GitHub's 65,536, which their Markdown renderer handles at once.
LIMITS = Limits(status_description=140, comment_chars=65536, extra={"context": 255})
PR_ACTIONS = frozenset({"opened", "reopened", "synchronized"})
STATE = {"pending": "pending", "success": "success", "failure": "failure", "error": "error"}
DEPLOY_STATE = {"in_progress": "pending", "success": "success", "failure": "failure"}


class Gitea:
    name = "gitea"
    prefix = "x-gitea-"

    def matches(self, headers: Mapping[str, str]) -> bool:
        return "x-gitea-event" in headers and "x-forgejo-event" not in headers

    def verify(self, headers: Mapping[str, str], body: bytes, secret: bytes) -> bool:
        given = headers.get(self.prefix + "signature", "")
        return bool(given) and common.same(given, common.hmac_hex(secret, body))

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str:
        return headers.get(self.prefix + "delivery", "") or common.body_digest(body)

    def parse(self, headers: Mapping[str, str], body: bytes) -> list[Event]:
        """A push names one ref: Gitea and Forgejo send a delivery per ref a `git push` updates."""
        event = self._event(headers, body)
        return [event] if event else []

    def _event(self, headers: Mapping[str, str], body: bytes) -> Event | None:
        kind = headers.get(self.prefix + "event", "")
        if kind not in ("push", "pull_request"):
            return None
        data = common.payload(body)
        repo = data.get("repository") or {}
        base: dict[str, Any] = {"platform": self.name, "repository": str(common.need(data, "repository", "full_name")),
                "delivery_id": self.delivery_id(headers, body), "clone_url": str(repo.get("clone_url", "")),
                "sender": str((data.get("sender") or data.get("pusher") or {}).get("login", ""))}
        if kind == "push":
            after = str(common.need(data, "after"))
            if after == common.ZERO:
                return None  # a deleted branch deploys nothing
            return Event(kind="push", action="push", ref=str(common.need(data, "ref")),
                         before=str(data.get("before") or common.ZERO), after=after, **base)
        action = str(common.need(data, "action"))
        if action not in PR_ACTIONS:
            return None
        pr = common.need(data, "pull_request")
        number = int(common.need(data, "pull_request", "number"))
        head_repo = (pr.get("head") or {}).get("repo")  # null when the fork was deleted
        base_repo = common.need(data, "pull_request", "base", "repo")
        fork = not head_repo or head_repo.get("full_name") != base_repo.get("full_name")
        return Event(kind="request", action=action, number=number,
                     head_sha=str(common.need(data, "pull_request", "head", "sha")),
                     head_ref=f"refs/pull/{number}/head",
                     base_ref="refs/heads/" + str(common.need(data, "pull_request", "base", "ref")),
                     base_sha=str(common.need(data, "pull_request", "base", "sha")), from_fork=fork,
                     title=str(pr.get("title", "")),                      **base)


class Forgejo(Gitea):
    name = "forgejo"
    prefix = "x-forgejo-"

    def matches(self, headers: Mapping[str, str]) -> bool:
        return "x-forgejo-event" in headers


PLATFORMS = [Forgejo(), Gitea()]


class GiteaReporter:
    def __init__(self, repository: str, creds: Credentials, http: Http) -> None:
        self.repository, self.creds, self.http = repository, creds, http
        self._me: int | None = None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.creds.token}"} if self.creds.token else {}

    def _url(self, path: str) -> str:
        return join(self.creds.api_url, f"repos/{self.repository}/{path}")

    def git_auth_header(self) -> str:
        # The token as the user name and `x-oauth-basic` as the password: every Gitea and Forgejo release
        # takes it so for git over HTTP (a token as the password is checked against the user name on old ones).
        if not self.creds.token:
            return ""
        return "Basic " + base64.b64encode(f"{self.creds.token}:x-oauth-basic".encode()).decode("ascii")

    def _status(self, sha: str, state: str, context: str, description: str, target_url: str = "") -> None:
        body = {"state": state, "context": context[: LIMITS.extra["context"]],
                "description": common.cut(description, LIMITS.status_description)}
        if target_url:
            body["target_url"] = target_url
        self.http.post(self._url(f"statuses/{sha}"), body, headers=self._headers())

    def report(self, event: Event, report: Report) -> None:
        self._status(report.sha, STATE[report.state], report.context, report.title, report.target_url)

    def deployment(self, event: Event, environment: str, state: DeployState, description: str) -> None:
        sha = event.after or event.head_sha
        self._status(sha, DEPLOY_STATE[state], f"gitops-hooks/{environment}", description)

    def comment(self, event: Event, body: str) -> None:
        marker, body = common.split_marker(body)
        body = common.fit(body, LIMITS.comment_chars)
        mine = common.find_own(self._comments(event.number), lambda c: str(c.get("body", "")),
                               self._is_mine, marker)
        if mine is None:
            self.http.post(self._url(f"issues/{event.number}/comments"), {"body": body}, headers=self._headers())
        else:
            self.http.patch(self._url(f"issues/comments/{mine['id']}"), {"body": body}, headers=self._headers())

    def _is_mine(self, comment: Mapping[str, Any]) -> bool:
        if self._me is None:
            self._me = int(self.http.get(join(self.creds.api_url, "user"), headers=self._headers()).json()["id"])
        return (comment.get("user") or {}).get("id") == self._me

    def _comments(self, number: int) -> Iterator[list[Mapping[str, Any]]]:
        """The request's comments, oldest first; the pages a `Link: rel="next"` header names are followed
        (the endpoint answers every comment at once on the releases that do not page it)."""
        return common.link_pages(self.http, self._url(f"issues/{number}/comments"), self._headers(), 100)


def reporter(platform: str, repository: str, creds: Credentials, http: Http) -> GiteaReporter:
    del platform  # Gitea and Forgejo answer the same API
    return GiteaReporter(repository, creds, http)
