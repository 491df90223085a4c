"""A loopback double of the GitLab REST API v4 (as docs.gitlab.com/api describes it), for the calls
gitops-hooks serve makes. The project is addressed by its URL-encoded path (`group%2Fproject`).

- Every call needs `PRIVATE-TOKEN` of a known user: 401 `{"message": "401 Unauthorized"}` otherwise.
- `GET /user`: the token's user (`id`, `username`, `name`, `state`, `bot`, `web_url`, ...).
- `GET /projects/:id/merge_requests/:iid`: the merge request (`source_branch`, `target_branch`, `sha`,
  `source_project_id`, `target_project_id`, ...).
- `POST /projects/:id/statuses/:sha`: `state` required, one of pending, running, success, failed,
  canceled, skipped (400 otherwise); posting the state a (sha, name, ref) already holds while pending
  or running answers 400 "Cannot transition status via :enqueue from :pending" as GitLab does; 201 with
  the status (`id`, `sha`, `ref`, `status`, `name`, `description`, `author`, timestamps).
- `GET /projects/:id/merge_requests/:iid/notes`: pages of `per_page` (at most 100, default 20) with
  `X-Page`, `X-Next-Page` (empty on the last), `X-Total` and `X-Total-Pages`.
- `POST …/notes` (`body` required, at most 1,000,000 characters: 400 otherwise) and `PUT
  …/notes/:note_id` (403 when the note is another user's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .loopback import NOW, Loopback, Reject, Request, one_of, require

STATES = {"pending", "running", "success", "failed", "canceled", "skipped"}
PROJECT = r"/api/v4/projects/(?P<project>[^/]+)"
NOTE_LIMIT = 1_000_000


def _error(message: str) -> dict[str, Any]:
    return {"message": f"400 Bad request - {message}"}


@dataclass
class GitLabDouble(Loopback):
    project: str = "gitlabhq/gitlab-test"
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # token -> user
    merge_requests: dict[int, dict[str, Any]] = field(default_factory=dict)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> note (with "mr")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.route("GET", r"/api/v4/user", lambda req, m: (200, self._me(req)))
        self.route("GET", PROJECT + r"/merge_requests/(?P<iid>\d+)", self._mr)
        self.route("POST", PROJECT + r"/statuses/(?P<sha>[0-9a-f]{7,64})", self._status)
        self.route("GET", PROJECT + r"/merge_requests/(?P<iid>\d+)/notes", self._list)
        self.route("POST", PROJECT + r"/merge_requests/(?P<iid>\d+)/notes", self._create)
        self.route("PUT", PROJECT + r"/merge_requests/(?P<iid>\d+)/notes/(?P<id>\d+)", self._edit)

    @property
    def api_url(self) -> str:
        return self.base + "/api/v4"

    def add_user(self, token: str, username: str, uid: int, bot: bool = False) -> dict[str, Any]:
        user = {"id": uid, "username": username, "name": username.replace("-", " ").title(), "state": "active",
                "locked": False, "avatar_url": f"https://gitlab.example/uploads/-/system/user/avatar/{uid}/a.png",
                "web_url": f"https://gitlab.example/{username}", "created_at": "2024-02-01T10:00:00.000Z",
                "bot": bot}
        self.users[token] = user
        return user

    def add_merge_request(self, iid: int, source_branch: str, sha: str, fork: bool = False) -> None:
        self.merge_requests[iid] = {
            "id": 9000 + iid, "iid": iid, "project_id": 14, "title": "MS-Viewport", "state": "opened",
            "source_branch": source_branch, "target_branch": "master", "source_project_id": 15 if fork else 14,
            "target_project_id": 14, "sha": sha, "draft": False, "created_at": NOW, "updated_at": NOW,
            "web_url": f"https://gitlab.example/{self.project}/-/merge_requests/{iid}"}

    def _me(self, req: Request) -> dict[str, Any]:
        user = self.users.get(req.headers.get("private-token", ""))
        if user is None:
            raise Reject(401, {"message": "401 Unauthorized"})
        return user

    def _project(self, req: Request, m: Any) -> None:
        self._me(req)
        if m["project"] != quote(self.project, safe=""):
            raise Reject(404, {"message": "404 Project Not Found"})

    def _mr(self, req: Request, m: Any) -> tuple[int, Any]:
        self._project(req, m)
        mr = self.merge_requests.get(int(m["iid"]))
        if mr is None:
            raise Reject(404, {"message": "404 Not found"})
        return 200, mr

    def _status(self, req: Request, m: Any) -> tuple[int, Any]:
        self._project(req, m)
        body = require(req.json, {"state": str}, 400, _error)
        one_of(body, "state", STATES, 400, _error)
        name, ref = body.get("name") or body.get("context") or "default", body.get("ref", "")
        held = [s for s in self.statuses if (s["sha"], s["name"], s["ref"]) == (m["sha"], name, ref)]
        if held and held[-1]["status"] == body["state"] and body["state"] in ("pending", "running"):
            verb = "enqueue" if body["state"] == "pending" else "run"
            raise Reject(400, {"message": f"Cannot transition status via :{verb} from :{body['state']} "
                                          f"(Reason(s): Status cannot transition via \"{verb}\")"})
        status = {"id": self.next_id(), "sha": m["sha"], "ref": ref, "status": body["state"], "name": name,
                  "target_url": body.get("target_url"), "description": body.get("description"),
                  "created_at": NOW, "started_at": None, "finished_at": None, "allow_failure": False,
                  "coverage": None, "author": self._me(req)}
        self.statuses.append(status)
        return 201, status

    def note(self, iid: int, body: str, user: dict[str, Any], system: bool = False) -> dict[str, Any]:
        nid = self.next_id()
        note = {"id": nid, "type": None, "body": body, "attachment": None, "author": user, "created_at": NOW,
                "updated_at": NOW, "system": system, "noteable_id": 9000 + iid, "noteable_type": "MergeRequest",
                "project_id": 14, "resolvable": False, "confidential": False, "internal": False,
                "noteable_iid": iid, "commands_changes": {}, "mr": iid}
        self.notes[nid] = note
        return note

    def _list(self, req: Request, m: Any) -> tuple[int, Any, dict[str, str]]:
        self._project(req, m)
        items = [n for n in self.notes.values() if n["mr"] == int(m["iid"])]
        per = min(100, int(req.query.get("per_page", 20)))
        page = int(req.query.get("page", 1))
        pages = max(1, -(-len(items) // per))
        headers = {"X-Page": str(page), "X-Per-Page": str(per), "X-Total": str(len(items)),
                   "X-Total-Pages": str(pages), "X-Next-Page": str(page + 1) if page < pages else ""}
        return 200, items[(page - 1) * per: page * per], headers

    def _create(self, req: Request, m: Any) -> tuple[int, Any]:
        self._project(req, m)
        body = require(req.json, {"body": str}, 400, lambda msg: {"error": msg})
        if len(body["body"]) > NOTE_LIMIT:
            raise Reject(400, {"message": {"note": ["is too long (maximum is 1000000 characters)"]}})
        return 201, self.note(int(m["iid"]), body["body"], self._me(req))

    def _edit(self, req: Request, m: Any) -> tuple[int, Any]:
        self._project(req, m)
        note = self.notes.get(int(m["id"]))
        if note is None or note["mr"] != int(m["iid"]):
            raise Reject(404, {"message": "404 Note Not Found"})
        if note["author"]["id"] != self._me(req)["id"]:
            raise Reject(403, {"message": "403 Forbidden"})
        body = require(req.json, {"body": str}, 400, lambda msg: {"error": msg})
        if len(body["body"]) > NOTE_LIMIT:
            raise Reject(400, {"message": {"note": ["is too long (maximum is 1000000 characters)"]}})
        note.update(body=body["body"], updated_at="2026-12-07T22:55:00.000Z")
        return 200, note
