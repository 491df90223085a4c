"""A loopback double of the GitHub REST API: the calls gitops-hooks serve makes, answered as GitHub's
REST documentation (API version 2022-11-28) says, recorded for tests to look at.

- `POST /app/installations/{id}/access_tokens`: the App's JWT is verified (RS256 with the App's public
  key, `iss` = the App id, at most 10 minutes long); answers 201 `{"token": "ghs_…", "expires_at"}`.
- Every `/repos/…` and `/user` call needs `Authorization: Bearer <token>` (a configured personal token
  or an issued installation token): 401 `Bad credentials` otherwise.
- `POST /repos/{owner}/{repo}/statuses/{sha}`: `state` one of error, failure, pending, success;
  `description` at most 140 characters (422 `Validation Failed` otherwise).
- `POST /repos/{owner}/{repo}/check-runs` and `PATCH …/check-runs/{id}`: only for an App's token (403
  otherwise); `name` and `head_sha` required; `conclusion` from the documented list and required with
  `status: completed`; `output.title` and `output.summary` required when `output` is given; at most 50
  annotations per request, each with `path`, `start_line`, `end_line`, `annotation_level` (notice,
  warning, failure) and `message`; annotations of an update are appended to the run's.
- Issue comments: `GET …/issues/{n}/comments` pages (`per_page`, `page`, a `Link` header with
  `rel="next"`), `POST` creates (body at most 65,536 characters), `PATCH …/issues/comments/{id}` edits,
  refused (403) when the comment is another account's.
- `GET /user` (the token's account), `POST …/deployments` (201 with an id), `POST
  …/deployments/{id}/statuses` (state one of error, failure, inactive, in_progress, queued, pending,
  success).

Paths are taken with or without GitHub Enterprise Server's `/api/v3` prefix. Faults (`hold`, `fail`)
and the record of requests are `loopback.Loopback`'s.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from .loopback import Loopback, Reject, Request

STATES = {"error", "failure", "pending", "success"}
CONCLUSIONS = {"action_required", "cancelled", "failure", "neutral", "success", "skipped", "stale", "timed_out"}
LEVELS = {"notice", "warning", "failure"}
DEPLOY_STATES = {"error", "failure", "inactive", "in_progress", "queued", "pending", "success"}
API = r"(?:/api/v3)?"
REPO = API + r"/repos/(?P<repo>[^/]+/[^/]+)"
Answer = tuple[int, Any, dict[str, str]]


@dataclass
class Account:
    login: str
    id: int
    type: str = "User"
    app_id: int = 0


@dataclass
class GitHubDouble(Loopback):
    app_id: int = 0
    public_key: str = ""
    installation_id: int = 0
    tokens: dict[str, Account] = field(default_factory=dict)  # personal tokens
    statuses: list[dict[str, Any]] = field(default_factory=list)
    check_runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> comment (with issue)
    deployments: dict[int, dict[str, Any]] = field(default_factory=dict)
    deployment_statuses: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # requests that broke a documented rule

    def __post_init__(self) -> None:
        super().__post_init__()
        self.route("POST", API + r"/app/installations/(?P<inst>\d+)/access_tokens", self._installation_token)
        self.route("GET", API + r"/user", self._me)
        self.route("POST", REPO + r"/statuses/(?P<sha>[0-9a-f]{40})", self._status)
        self.route("POST", REPO + r"/check-runs", self._create_check_run)
        self.route("PATCH", REPO + r"/check-runs/(?P<id>\d+)", self._update_check_run)
        self.route("GET", REPO + r"/issues/(?P<n>\d+)/comments", self._list_comments)
        self.route("POST", REPO + r"/issues/(?P<n>\d+)/comments", self._create_comment)
        self.route("PATCH", REPO + r"/issues/comments/(?P<id>\d+)", self._edit_comment)
        self.route("POST", REPO + r"/deployments", self._deployment)
        self.route("POST", REPO + r"/deployments/(?P<id>\d+)/statuses", self._deployment_status)

    @property
    def url(self) -> str:
        return self.base

    def not_found(self, req: Request) -> Any:
        return {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}

    # -- seeding and reading
    def add_comment(self, repo: str, number: int, body: str, login: str) -> int:
        cid = self.next_id()
        self.comments[cid] = {"id": cid, "issue": (repo, number), "body": body,
                              "user": {"login": login, "id": 99, "type": "User"}, "performed_via_github_app": None}
        return cid

    def comments_on(self, repo: str, number: int) -> list[dict[str, Any]]:
        return [c for c in self.comments.values() if c["issue"] == (repo, number)]

    def wait_for(self, predicate: Any, timeout: float = 60.0) -> Any:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                got = predicate()
            if got:
                return got
            time.sleep(0.05)
        raise AssertionError(f"the double did not see what was expected in {timeout} s; calls: "
                             + ", ".join(f"{r.method} {r.path} {r.status}" for r in self.requests))

    # -- answering
    def _user(self, req: Request) -> Account:
        auth = req.token
        account = self.tokens.get(auth.removeprefix("Bearer ").strip()) if auth.startswith("Bearer ") else None
        if account is None:
            raise Reject(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
        return account

    def _me(self, req: Request, m: re.Match[str]) -> Answer:
        account = self._user(req)
        return 200, {"login": account.login, "id": account.id, "type": account.type}, {}

    def _body(self, req: Request) -> tuple[Account, dict[str, Any]]:
        """The caller's account and the JSON object sent (401 without a known token, 400 for bad JSON)."""
        account = self._user(req)
        if req.json is not None and not isinstance(req.json, dict):
            raise Reject(400, {"message": "Problems parsing JSON"})
        return account, req.json or {}

    def _invalid(self, message: str) -> Reject:
        self.errors.append(message)
        return Reject(422, {"message": "Validation Failed", "errors": [{"message": message}]})

    def _installation_token(self, req: Request, m: re.Match[str]) -> Answer:
        import jwt

        try:
            claims = jwt.decode(req.token.removeprefix("Bearer "), self.public_key, algorithms=["RS256"],
                                options={"require": ["iat", "exp", "iss"]})
        except jwt.PyJWTError as exc:
            return 401, {"message": f"A JSON web token could not be decoded ({exc})"}, {}
        if (str(claims["iss"]) != str(self.app_id) or claims["exp"] - claims["iat"] > 600
                or int(m["inst"]) != self.installation_id):
            return 401, {"message": "'Expiration time' claim ('exp') is too far in the future"}, {}
        token = f"ghs_{self.next_id()}"
        self.tokens[token] = Account(f"app-{self.app_id}[bot]", 41898282, "Bot", self.app_id)
        return 201, {"token": token, "expires_at": "2099-01-01T00:00:00Z", "permissions": {"checks": "write"}}, {}

    def _status(self, req: Request, m: re.Match[str]) -> Answer:
        _, body = self._body(req)
        if body.get("state") not in STATES:
            raise self._invalid(f"state {body.get('state')!r} is not included in the list")
        if len(body.get("description") or "") > 140:
            raise self._invalid("description is too long (maximum is 140 characters)")
        self.statuses.append({"repo": m["repo"], "sha": m["sha"], **body})
        return 201, {"id": self.next_id(), "state": body["state"], "context": body.get("context", "default")}, {}

    def _app_body(self, req: Request) -> dict[str, Any]:
        account, body = self._body(req)
        if not account.app_id:
            raise Reject(403, {"message": "You must authenticate via a GitHub App."})
        problem = self._check_output(body.get("output"))
        if body.get("conclusion") is not None and body["conclusion"] not in CONCLUSIONS:
            problem = problem or f"conclusion {body['conclusion']!r} is not included in the list"
        if problem:
            raise self._invalid(problem)
        return body

    def _check_output(self, output: Any) -> str:
        if output is None:
            return ""
        if not output.get("title") or not output.get("summary"):
            return "output.title and output.summary are required"
        notes = output.get("annotations") or []
        if len(notes) > 50:
            return f"{len(notes)} annotations: at most 50 per request"
        for a in notes:
            if not all(a.get(k) for k in ("path", "start_line", "end_line", "annotation_level", "message")):
                return f"annotation {a} lacks a required field"
            if a["annotation_level"] not in LEVELS:
                return f"annotation_level {a['annotation_level']!r} is not one of notice, warning, failure"
        return ""

    def _create_check_run(self, req: Request, m: re.Match[str]) -> Answer:
        body = self._app_body(req)
        if not body.get("name") or not body.get("head_sha"):
            raise self._invalid("name and head_sha are required")
        if body.get("status") == "completed" and not body.get("conclusion"):
            raise self._invalid("conclusion is required when status is completed")
        rid = self.next_id()
        output = dict(body.get("output") or {})
        self.check_runs[rid] = {"id": rid, "repo": m["repo"], **body, "output": output,
                                "annotations": list(output.pop("annotations", []) or [])}
        return 201, {"id": rid, "head_sha": body["head_sha"], "status": body.get("status", "queued")}, {}

    def _update_check_run(self, req: Request, m: re.Match[str]) -> Answer:
        body = self._app_body(req)
        run = self.check_runs.get(int(m["id"]))
        if run is None:
            raise Reject(404, self.not_found(req))
        output = dict(body.get("output") or {})
        run["annotations"].extend(output.pop("annotations", []) or [])
        run["output"].update(output)
        return 200, {"id": run["id"]}, {}

    def _list_comments(self, req: Request, m: re.Match[str]) -> Answer:
        self._user(req)
        repo, number = m["repo"], int(m["n"])
        per_page = min(100, int(req.query.get("per_page", "30")))
        page = int(req.query.get("page", "1"))
        mine = [self._public(c) for c in sorted(self.comments.values(), key=lambda c: c["id"])
                if c["issue"] == (repo, number)]
        headers = {}
        if page * per_page < len(mine):
            headers["Link"] = (f'<{self.url}/repos/{repo}/issues/{number}/comments?per_page={per_page}&page={page + 1}>;'
                               ' rel="next"')
        return 200, mine[(page - 1) * per_page: page * per_page], headers

    def _create_comment(self, req: Request, m: re.Match[str]) -> Answer:
        account, body = self._body(req)
        text = self._text(body)
        cid = self.next_id()
        app = {"id": account.app_id, "slug": f"app-{account.app_id}"} if account.app_id else None
        self.comments[cid] = {"id": cid, "issue": (m["repo"], int(m["n"])), "body": text, "edits": 0,
                              "user": {"login": account.login, "id": account.id, "type": account.type},
                              "performed_via_github_app": app}
        return 201, self._public(self.comments[cid]), {}

    def _edit_comment(self, req: Request, m: re.Match[str]) -> Answer:
        account, body = self._body(req)
        cid = int(m["id"])
        comment = self.comments.get(cid)
        if comment is None:
            raise Reject(404, self.not_found(req))
        if comment["user"]["login"] != account.login:
            self.errors.append(f"edit of comment {cid} by {comment['user']['login']} attempted by {account.login}")
            raise Reject(403, {"message": "Resource not accessible by integration"})
        comment["body"] = self._text(body)
        comment["edits"] = comment.get("edits", 0) + 1
        return 200, self._public(comment), {}

    def _text(self, body: dict[str, Any]) -> str:
        text = str(body.get("body") or "")
        if not text or len(text) > 65536:
            raise self._invalid(f"body is {len(text)} characters (1 to 65536)")
        return text

    def _deployment(self, req: Request, m: re.Match[str]) -> Answer:
        _, body = self._body(req)
        if not body.get("ref"):
            raise self._invalid("ref is required")
        did = self.next_id()
        self.deployments[did] = {"id": did, "repo": m["repo"], **body}
        return 201, {"id": did, "sha": body["ref"], "environment": body.get("environment", "production")}, {}

    def _deployment_status(self, req: Request, m: re.Match[str]) -> Answer:
        _, body = self._body(req)
        if int(m["id"]) not in self.deployments:
            raise Reject(404, self.not_found(req))
        if body.get("state") not in DEPLOY_STATES:
            raise self._invalid(f"state {body.get('state')!r} is not included in the list")
        self.deployment_statuses.append({"deployment_id": int(m["id"]), **body})
        return 201, {"id": self.next_id(), **body}, {}

    @staticmethod
    def _public(c: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in c.items() if k not in ("issue", "edits")}
