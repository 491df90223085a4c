"""A loopback double of the Gitea / Forgejo REST API (`/api/v1`, as the Swagger of Gitea 1.22 and
Forgejo 9 describes it), for the calls gitops-hooks serve makes.

- Every call needs `Authorization: token <t>` of a known user: 401 `{"message": "token is required"}`.
- `GET /user`: the token's user (`id`, `login`, `full_name`, `email`, `avatar_url`, `created`).
- `POST /repos/{owner}/{repo}/statuses/{sha}`: `state` required, one of pending, success, error,
  failure, warning (422 otherwise); answers 201 with the CommitStatus (`id`, `status`, `context`,
  `description`, `target_url`, `creator`, `created_at`, `updated_at`).
- `GET /repos/{owner}/{repo}/issues/{index}/comments`: every comment of the request at once, oldest
  first, as this endpoint answers (it takes `since`/`before`, not pages).
- `POST …/issues/{index}/comments` (`body` required, 422 otherwise): 201 with the Comment.
- `PATCH /repos/{owner}/{repo}/issues/comments/{id}`: 403 when the comment is another user's, 404 when
  there is none; 200 with the edited Comment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .loopback import NOW, Loopback, Reject, Request, one_of, require

STATES = {"pending", "success", "error", "failure", "warning"}
REPO = r"/api/v1/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"


def _error(message: str) -> dict[str, Any]:
    return {"message": message, "url": "https://gitea.example/api/swagger"}


@dataclass
class GiteaDouble(Loopback):
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # token -> user
    statuses: list[dict[str, Any]] = field(default_factory=list)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> comment (with "issue")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.route("GET", r"/api/v1/user", self._user)
        self.route("POST", REPO + r"/statuses/(?P<sha>[0-9a-f]{7,64})", self._status)
        self.route("GET", REPO + r"/issues/(?P<n>\d+)/comments", self._list)
        self.route("POST", REPO + r"/issues/(?P<n>\d+)/comments", self._create)
        self.route("PATCH", REPO + r"/issues/comments/(?P<id>\d+)", self._edit)

    @property
    def api_url(self) -> str:
        return self.base + "/api/v1"

    def add_user(self, token: str, login: str, uid: int) -> dict[str, Any]:
        user = {"id": uid, "login": login, "login_name": "", "full_name": login.title(), "email": f"{login}@example.com",
                "avatar_url": f"https://gitea.example/avatars/{uid}", "language": "en-US", "is_admin": False,
                "created": "2024-02-01T10:00:00Z", "restricted": False, "active": True, "username": login}
        self.users[token] = user
        return user

    def _me(self, req: Request) -> dict[str, Any]:
        auth = req.headers.get("authorization", "")
        user = self.users.get(auth[len("token "):]) if auth.startswith("token ") else None
        if user is None:
            raise Reject(401, _error("token is required"))
        return user

    def _user(self, req: Request, m: Any) -> tuple[int, Any]:
        return 200, self._me(req)

    def _status(self, req: Request, m: Any) -> tuple[int, Any]:
        user = self._me(req)
        body = require(req.json, {"state": str}, 422, _error)
        one_of(body, "state", STATES, 422, _error)
        status = {"id": self.next_id(), "status": body["state"], "target_url": body.get("target_url", ""),
                  "description": body.get("description", ""), "context": body.get("context", "default"),
                  "url": f"{self.api_url}/repos/{m['owner']}/{m['repo']}/statuses/{m['sha']}",
                  "creator": user, "created_at": NOW, "updated_at": NOW, "sha": m["sha"]}
        self.statuses.append(status)
        return 201, status

    def issue_comment(self, issue: int, body: str, user: dict[str, Any]) -> dict[str, Any]:
        cid = self.next_id()
        comment = {"id": cid, "html_url": f"https://gitea.example/o/r/pulls/{issue}#issuecomment-{cid}",
                   "pull_request_url": f"https://gitea.example/o/r/pulls/{issue}", "issue_url": "",
                   "user": user, "original_author": "", "original_author_id": 0, "body": body,
                   "assets": [], "created_at": NOW, "updated_at": NOW, "issue": issue}
        self.comments[cid] = comment
        return comment

    def _list(self, req: Request, m: Any) -> tuple[int, Any]:
        self._me(req)
        return 200, [c for c in self.comments.values() if c["issue"] == int(m["n"])]

    def _create(self, req: Request, m: Any) -> tuple[int, Any]:
        user = self._me(req)
        body = require(req.json, {"body": str}, 422, _error)
        return 201, self.issue_comment(int(m["n"]), body["body"], user)

    def _edit(self, req: Request, m: Any) -> tuple[int, Any]:
        user = self._me(req)
        comment = self.comments.get(int(m["id"]))
        if comment is None:
            raise Reject(404, _error("comment does not exist"))
        if comment["user"]["id"] != user["id"]:
            raise Reject(403, _error("user is not the poster of the comment"))
        body = require(req.json, {"body": str}, 422, _error)
        comment.update(body=body["body"], updated_at="2026-12-07T22:55:00Z")
        return 200, comment
