"""GitHub (and GitHub Enterprise Server): deliveries in, check runs or commit statuses, the summary
comment and deployments out.

Deliveries carry `X-GitHub-Event`, `X-GitHub-Delivery` (kept on a redelivery) and
`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`; a delivery with only the legacy SHA-1
`X-Hub-Signature` is refused. Acted on: `push`, and `pull_request` with `opened`, `synchronize`,
`reopened`; everything else (`ping` when a hook is created, included) is not.

Reports: with an App (`app_id`, `private_key_file`, `installation_id`) a check run whose output carries
every finding as an annotation, 50 per request as the Checks API allows (the first batch with the
create, the rest by updates); with a token a commit status (context `gitops-hooks`, description cut to
140 characters). Either way the summary comment is found by its hidden marker among the comments of the
service's own account and edited in place.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator, Mapping
from typing import Any

from ..http import Http, HttpError, join
from ..model import Credentials, DeployState, Event, Limits, Report
from . import common
from .common import need

LIMITS = Limits(status_description=140, comment_chars=65536, annotations_per_request=50,
                extra={"check_title": 255, "check_summary": 65535, "check_text": 65535})
PR_ACTIONS = frozenset({"opened", "synchronize", "reopened"})
CONCLUSION = {"success": "success", "failure": "failure", "error": "failure", "pending": "neutral"}
NOT_GITHUB = ("x-gitea-event", "x-forgejo-event", "x-gogs-event")
LEVEL = {"failure": "failure", "warning": "warning", "notice": "notice"}


class GitHub:
    name = "github"

    def matches(self, headers: Mapping[str, str]) -> bool:
        """Gitea, Forgejo and Gogs send X-GitHub-Event too: their own header says they are not GitHub."""
        return "x-github-event" in headers and not any(h in headers for h in NOT_GITHUB)

    def verify(self, headers: Mapping[str, str], body: bytes, secret: bytes) -> bool:
        given = headers.get("x-hub-signature-256", "")
        if not given.startswith("sha256="):
            return False  # sha1 alone (X-Hub-Signature) is not enough
        return common.same(given, "sha256=" + common.hmac_hex(secret, body))

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str:
        return headers.get("x-github-delivery", "") or common.body_digest(body)

    def parse(self, headers: Mapping[str, str], body: bytes) -> list[Event]:
        """A push names one ref: GitHub sends a delivery per ref a `git push` updates."""
        kind = headers.get("x-github-event", "")
        if kind not in ("push", "pull_request"):
            return []
        data = common.payload(body)
        repo = str(need(data, "repository", "full_name"))
        base: dict[str, Any] = {"platform": self.name, "repository": repo, "delivery_id": self.delivery_id(headers, body),
                                "clone_url": str(data.get("repository", {}).get("clone_url", "")),
                                "sender": str((data.get("sender") or {}).get("login", ""))}
        event = self._push(data, base) if kind == "push" else self._pull(data, base)
        return [event] if event else []

    def _push(self, data: dict[str, Any], base: dict[str, Any]) -> Event | None:
        ref, before, after = str(need(data, "ref")), str(need(data, "before")), str(need(data, "after"))
        if after == common.ZERO or data.get("deleted"):
            return None  # a deleted ref deploys nothing
        return Event(kind="push", action="push", ref=ref, before=before, after=after, **base)

    def _pull(self, data: dict[str, Any], base: dict[str, Any]) -> Event | None:
        action = str(need(data, "action"))
        if action not in PR_ACTIONS:
            return None
        pr = need(data, "pull_request")
        number = int(need(data, "number") if "number" in data else need(pr, "number"))
        head_repo = (pr.get("head") or {}).get("repo")  # null when the fork was deleted
        to_repo = need(pr, "base", "repo")
        fork = head_repo is None or head_repo.get("id") != to_repo.get("id")
        return Event(kind="request", action=action, number=number, head_sha=str(need(pr, "head", "sha")),
                     head_ref=f"refs/pull/{number}/head", base_ref="refs/heads/" + str(need(pr, "base", "ref")),
                     base_sha=str(need(pr, "base", "sha")), from_fork=fork, title=str(pr.get("title", "")),
                     **base)


PLATFORMS = [GitHub()]


# ---------------------------------------------------------------------------- reporting

def app_jwt(app_id: str, private_key: str, now: float) -> str:
    """The App's JSON Web Token (RS256, issued 60 s in the past for clock drift, valid 9 minutes)."""
    import jwt  # PyJWT with cryptography: only the service loads them

    claims = {"iat": int(now) - 60, "exp": int(now) + 540, "iss": str(app_id)}
    return str(jwt.encode(claims, private_key, algorithm="RS256"))


class GitHubReporter:
    def __init__(self, repository: str, creds: Credentials, http: Http) -> None:
        self.repository, self.creds, self.http = repository, creds, http
        self._token = ""
        self._token_until = 0.0
        self._login = ""
        self._deployments: dict[tuple[str, str], int] = {}

    # -- credentials
    @property
    def is_app(self) -> bool:
        return bool(self.creds.app_id)

    def token(self) -> str:
        if not self.is_app:
            return self.creds.token
        now = time.time()
        if self._token and now < self._token_until - 120:
            return self._token
        url = join(self.creds.api_url, f"app/installations/{self.creds.installation_id}/access_tokens")
        answer = self.http.post(url, {}, headers={
            "Authorization": "Bearer " + app_jwt(self.creds.app_id, self.creds.private_key, now)}).json()
        self._token, self._token_until = str(answer["token"]), now + 3000  # tokens live an hour
        return self._token

    def _headers(self) -> dict[str, str]:
        token = self.token()
        out = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if token:
            out["Authorization"] = f"Bearer {token}"
        return out

    def _url(self, path: str, query: Mapping[str, str | int] | None = None) -> str:
        return join(self.creds.api_url, f"repos/{self.repository}/{path}", query)

    def git_auth_header(self) -> str:
        token = self.token()
        if not token:
            return ""
        return "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode("ascii")

    # -- the verdict
    def report(self, event: Event, report: Report) -> None:
        if self.is_app:
            self._check_run(report)
        else:
            self.http.post(self._url(f"statuses/{report.sha}"), {
                "state": report.state, "context": report.context,
                "description": common.cut(report.title, LIMITS.status_description),
                **({"target_url": report.target_url} if report.target_url else {})}, headers=self._headers())

    def _check_run(self, report: Report) -> None:
        per = LIMITS.annotations_per_request
        notes = [self._annotation(a) for a in report.annotations]
        output: dict[str, Any] = {"title": common.cut(report.title, LIMITS.extra["check_title"]),
                                  "summary": common.fit(report.summary or report.title, LIMITS.extra["check_summary"])}
        if report.text:
            output["text"] = common.fit(report.text, LIMITS.extra["check_text"])
        body = {"name": report.context, "head_sha": report.sha, "status": "completed",
                "conclusion": CONCLUSION[report.state], "output": {**output, "annotations": notes[:per]}}
        if report.target_url:
            body["details_url"] = report.target_url
        run = self.http.post(self._url("check-runs"), body, headers=self._headers()).json()
        for start in range(per, len(notes), per):
            self.http.patch(self._url(f"check-runs/{run['id']}"),
                            {"output": {**output, "annotations": notes[start:start + per]}}, headers=self._headers())

    @staticmethod
    def _annotation(a: Any) -> dict[str, Any]:
        line = max(1, int(a.line))
        out = {"path": a.path, "start_line": line, "end_line": line, "annotation_level": LEVEL[a.severity],
               "title": common.cut(a.title, 255), "message": common.fit(a.message, 64000)}
        if a.column:
            out.update(start_column=int(a.column), end_column=int(a.column))
        return out

    # -- the summary comment
    def comment(self, event: Event, body: str) -> None:
        marker, body = common.split_marker(body)
        body = common.fit(body, LIMITS.comment_chars)
        mine = common.find_own(self._comments(event.number), lambda c: str(c.get("body", "")), self._is_mine,
                               marker)
        if mine is None:
            self.http.post(self._url(f"issues/{event.number}/comments"), {"body": body}, headers=self._headers())
        else:
            self.http.patch(self._url(f"issues/comments/{mine['id']}"), {"body": body}, headers=self._headers())

    def _is_mine(self, comment: Mapping[str, Any]) -> bool:
        if self.is_app:
            return str((comment.get("performed_via_github_app") or {}).get("id", "")) == str(self.creds.app_id)
        if not self._login:
            self._login = str(self.http.get(join(self.creds.api_url, "user"), headers=self._headers()).json()["login"])
        return str((comment.get("user") or {}).get("login", "")) == self._login

    def _comments(self, number: int) -> Iterator[list[Mapping[str, Any]]]:
        """The request's comments, 100 a page, following the `Link: rel="next"` header (5,000 at most)."""
        return common.link_pages(self.http, self._url(f"issues/{number}/comments", {"per_page": 100}),
                                 self._headers(), 50)

    # -- deployments
    def deployment(self, event: Event, environment: str, state: DeployState, description: str) -> None:
        key = (event.after, environment)
        if key not in self._deployments:
            answer = self.http.post(self._url("deployments"), {
                "ref": event.after, "environment": environment, "auto_merge": False, "required_contexts": [],
                "description": common.cut(description, 140), "payload": {"ref": event.ref}}, headers=self._headers())
            self._deployments[key] = int(answer.json()["id"])
        self.http.post(self._url(f"deployments/{self._deployments[key]}/statuses"), {
            "state": state, "description": common.cut(description, LIMITS.status_description),
            "environment": environment}, headers=self._headers())


def reporter(platform: str, repository: str, creds: Credentials, http: Http) -> GitHubReporter:
    del platform
    return GitHubReporter(repository, creds, http)


__all__ = ["PLATFORMS", "GitHub", "GitHubReporter", "HttpError", "reporter"]
