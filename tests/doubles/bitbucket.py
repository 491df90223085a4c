"""Loopback doubles of the Bitbucket Cloud REST API 2.0 and the Bitbucket Data Center REST API (core
1.0 and Code Insights 1.0), for the calls gitops-hooks serve makes, answered as Atlassian's REST
references describe them.

Cloud (`/2.0`):
- Calls need `Authorization: Bearer <access token>` or Basic `user:app-password`: 401 otherwise.
- `GET /user`: `uuid`, `account_id`, `nickname`, `display_name`, `type: user`.
- `POST /repositories/{ws}/{slug}/commit/{sha}/statuses/build`: `key`, `state` and `url` required, state
  one of SUCCESSFUL, FAILED, INPROGRESS, STOPPED (400 otherwise); a known key is overwritten (200),
  a new one created (201).
- `PUT …/commit/{sha}/reports/{id}`: `title` and `report_type` (SECURITY, COVERAGE, TEST, BUG)
  required, `result` PASSED, FAILED or PENDING; a report put again is replaced with no annotations.
- `POST …/reports/{id}/annotations`: a list of at most 100, each with `external_id`, `annotation_type`
  (VULNERABILITY, CODE_SMELL, BUG) and `summary` (at most 450 characters), `severity` CRITICAL, HIGH,
  MEDIUM or LOW; a report holds at most 1,000 (400 past it); the same `external_id` is updated.
- `GET /repositories/{ws}/{slug}/pullrequests/{id}/comments`: pages of `pagelen` (default 10, at most
  100) with `next` (an absolute URL) until the last; `POST` (`content.raw` required) and `PUT
  …/comments/{comment_id}` (403 for another user's comment).

Data Center (`/rest/api/1.0`, `/rest/insights/1.0`, `/plugins/servlet/applinks/whoami`):
- Calls need `Authorization: Bearer <HTTP access token>`; answers carry `X-AUSERNAME` (unless told not to).
- `POST /rest/api/1.0/projects/{P}/repos/{r}/commits/{sha}/builds`: `key`, `state`, `url` required;
  state SUCCESSFUL, FAILED, INPROGRESS, CANCELLED or UNKNOWN; key, name and description at most 255,
  url at most 450 (400 otherwise); 204.
- `PUT /rest/insights/1.0/projects/{P}/repos/{r}/commits/{sha}/reports/{key}`: `title` required (at
  most 450), `details` at most 2,000, `result` PASS or FAIL, at most 6 `data`; `DELETE
  …/reports/{key}/annotations` (204); `POST …/annotations` with `annotations`, each with `message` (at
  most 2,000) and `severity` (LOW, MEDIUM, HIGH), `externalId` at most 450; at most 1,000 per report.
- `GET …/pull-requests/{id}/activities?start&limit`: paged (`isLastPage`, `nextPageStart`), comments as
  `COMMENTED`/`ADDED` activities among others; `POST …/pull-requests/{id}/comments` (`text` at most
  32,768); `PUT …/comments/{id}` with `text` and the comment's `version` (409 when out of date, 403 for
  another user's comment).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from .loopback import NOW, Loopback, Reject, Request, at_most, one_of, require

CLOUD_REPO = r"/2\.0/repositories/(?P<ws>[^/]+)/(?P<slug>[^/]+)"
DC_API = r"/rest/api/1\.0/projects/(?P<p>[^/]+)/repos/(?P<r>[^/]+)"
DC_INSIGHTS = r"/rest/insights/1\.0/projects/(?P<p>[^/]+)/repos/(?P<r>[^/]+)/commits/(?P<sha>[0-9a-f]+)/reports/(?P<key>[^/]+)"
EPOCH_MS = 1765147800000


def _cloud_error(message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"message": message}}


def _dc_error(message: str) -> dict[str, Any]:
    return {"errors": [{"context": None, "message": message, "exceptionName": "com.atlassian.bitbucket.rest.RestErrorMessage"}]}


@dataclass
class BitbucketCloudDouble(Loopback):
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # Authorization header value -> user
    statuses: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (sha, key) -> status
    reports: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (sha, id) -> report
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.route("GET", r"/2\.0/user", lambda req, m: (200, self._me(req)))
        self.route("POST", CLOUD_REPO + r"/commit/(?P<sha>[0-9a-f]+)/statuses/build", self._status)
        self.route("PUT", CLOUD_REPO + r"/commit/(?P<sha>[0-9a-f]+)/reports/(?P<id>[^/]+)", self._report)
        self.route("POST", CLOUD_REPO + r"/commit/(?P<sha>[0-9a-f]+)/reports/(?P<id>[^/]+)/annotations", self._notes)
        self.route("GET", CLOUD_REPO + r"/pullrequests/(?P<n>\d+)/comments", self._list)
        self.route("POST", CLOUD_REPO + r"/pullrequests/(?P<n>\d+)/comments", self._create)
        self.route("PUT", CLOUD_REPO + r"/pullrequests/(?P<n>\d+)/comments/(?P<id>\d+)", self._edit)

    @property
    def api_url(self) -> str:
        return self.base + "/2.0"

    def add_user(self, authorization: str, nickname: str, n: int) -> dict[str, Any]:
        uuid = f"{{{n:08x}-24e9-4d7f-a3a7-b1ba2cd98aa3}}"
        user = {"type": "user", "uuid": uuid, "account_id": f"557058:{n:08x}", "nickname": nickname,
                "display_name": nickname.title(), "links": {"avatar": {"href": f"https://avatar.example/{n}"}},
                "created_on": "2024-02-01T10:00:00.000000+00:00"}
        self.users[authorization] = user
        return user

    def _me(self, req: Request) -> dict[str, Any]:
        user = self.users.get(req.headers.get("authorization", ""))
        if user is None:
            raise Reject(401, _cloud_error("Access token expired or invalid"))
        return user

    def _status(self, req: Request, m: Any) -> tuple[int, Any]:
        self._me(req)
        body = require(req.json, {"key": str, "state": str, "url": str}, 400, _cloud_error)
        one_of(body, "state", {"SUCCESSFUL", "FAILED", "INPROGRESS", "STOPPED"}, 400, _cloud_error)
        known = (m["sha"], body["key"]) in self.statuses
        status = {"type": "build", "key": body["key"], "state": body["state"], "name": body.get("name", ""),
                  "description": body.get("description", ""), "url": body["url"], "refname": None,
                  "uuid": f"{{{self.next_id():08x}-0000-4000-8000-000000000000}}", "created_on": NOW, "updated_on": NOW,
                  "links": {"commit": {"href": f"{self.api_url}/repositories/{m['ws']}/{m['slug']}/commit/{m['sha']}"}}}
        self.statuses[(m["sha"], body["key"])] = status
        return (200 if known else 201), status

    def _report(self, req: Request, m: Any) -> tuple[int, Any]:
        self._me(req)
        body = require(req.json, {"title": str, "report_type": str}, 400, _cloud_error)
        one_of(body, "report_type", {"SECURITY", "COVERAGE", "TEST", "BUG"}, 400, _cloud_error)
        one_of(body, "result", {"PASSED", "FAILED", "PENDING"}, 400, _cloud_error)
        report = {**body, "type": "report", "uuid": f"{{{self.next_id():08x}-1111-4000-8000-000000000000}}",
                  "external_id": m["id"], "created_on": NOW, "updated_on": NOW, "annotations": {}}
        self.reports[(m["sha"], m["id"])] = report
        return 200, {k: v for k, v in report.items() if k != "annotations"}

    def _notes(self, req: Request, m: Any) -> tuple[int, Any]:
        self._me(req)
        report = self.reports.get((m["sha"], m["id"]))
        if report is None:
            raise Reject(404, _cloud_error("Report not found"))
        if not isinstance(req.json, list) or not req.json:
            raise Reject(400, _cloud_error("A list of annotations is required"))
        if len(req.json) > 100:
            raise Reject(400, _cloud_error("The number of annotations in a request cannot exceed 100"))
        out = []
        for note in req.json:
            require(note, {"external_id": str, "annotation_type": str, "summary": str}, 400, _cloud_error)
            one_of(note, "annotation_type", {"VULNERABILITY", "CODE_SMELL", "BUG"}, 400, _cloud_error)
            one_of(note, "severity", {"CRITICAL", "HIGH", "MEDIUM", "LOW"}, 400, _cloud_error)
            one_of(note, "result", {"PASSED", "FAILED", "SKIPPED", "IGNORED"}, 400, _cloud_error)
            if len(note["summary"]) > 450:
                raise Reject(400, _cloud_error("The summary field cannot contain more than 450 characters."))
            if note["external_id"] not in report["annotations"] and len(report["annotations"]) >= 1000:
                raise Reject(400, _cloud_error("A report cannot have more than 1000 annotations"))
            report["annotations"][note["external_id"]] = {**note, "uuid": f"{{{self.next_id():08x}}}"}
            out.append(report["annotations"][note["external_id"]])
        return 200, out

    def pr_comment(self, n: int, raw: str, user: dict[str, Any], **extra: Any) -> dict[str, Any]:
        cid = self.next_id()
        comment = {"type": "pullrequest_comment", "id": cid, "content": {"type": "rendered", "raw": raw,
                   "markup": "markdown", "html": f"<p>{raw}</p>"}, "user": user, "deleted": False, "pending": False,
                   "created_on": NOW, "updated_on": NOW, "pullrequest": {"type": "pullrequest", "id": n},
                   "links": {"html": {"href": f"https://bitbucket.org/ws/repo/pull-requests/{n}/_/diff#comment-{cid}"}},
                   **extra}
        self.comments[cid] = comment
        return comment

    def _list(self, req: Request, m: Any) -> tuple[int, Any]:
        self._me(req)
        items = [c for c in self.comments.values() if c["pullrequest"]["id"] == int(m["n"])]
        per, page = min(100, int(req.query.get("pagelen", 10))), int(req.query.get("page", 1))
        out: dict[str, Any] = {"pagelen": per, "size": len(items), "page": page,
                               "values": items[(page - 1) * per: page * per]}
        if page * per < len(items):
            out["next"] = f"{self.base}{req.raw_path}?pagelen={per}&page={page + 1}"
        return 200, out

    def _create(self, req: Request, m: Any) -> tuple[int, Any]:
        user = self._me(req)
        body = require(req.json, {"content": dict}, 400, _cloud_error)
        require(body["content"], {"raw": str}, 400, _cloud_error)
        return 201, self.pr_comment(int(m["n"]), body["content"]["raw"], user)

    def _edit(self, req: Request, m: Any) -> tuple[int, Any]:
        user = self._me(req)
        comment = self.comments.get(int(m["id"]))
        if comment is None:
            raise Reject(404, _cloud_error("Comment not found"))
        if comment["user"]["uuid"] != user["uuid"]:
            raise Reject(403, _cloud_error("You are not the author of this comment"))
        body = require(req.json, {"content": dict}, 400, _cloud_error)
        comment["content"] = {**comment["content"], "raw": require(body["content"], {"raw": str}, 400, _cloud_error)["raw"]}
        comment["updated_on"] = "2026-12-07T22:55:00.000000+00:00"
        return 200, comment


@dataclass
class BitbucketDataCenterDouble(Loopback):
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # token -> user
    send_ausername: bool = True
    builds: list[dict[str, Any]] = field(default_factory=list)
    reports: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    activities: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.route("GET", r"/plugins/servlet/applinks/whoami", self._whoami)
        self.route("POST", DC_API + r"/commits/(?P<sha>[0-9a-f]+)/builds", self._build)
        self.route("PUT", DC_INSIGHTS, self._report)
        self.route("DELETE", DC_INSIGHTS + r"/annotations", self._clear)
        self.route("POST", DC_INSIGHTS + r"/annotations", self._notes)
        self.route("GET", DC_API + r"/pull-requests/(?P<n>\d+)/activities", self._list)
        self.route("POST", DC_API + r"/pull-requests/(?P<n>\d+)/comments", self._create)
        self.route("PUT", DC_API + r"/pull-requests/(?P<n>\d+)/comments/(?P<id>\d+)", self._edit)

    @property
    def api_url(self) -> str:
        return self.base + "/bitbucket"  # a context path, as many installations have

    def route(self, method: str, pattern: str, handler: Any) -> None:
        super().route(method, "/bitbucket" + pattern, self._signed_in(handler))

    def _signed_in(self, handler: Any) -> Any:
        def wrapped(req: Request, m: Any) -> tuple[int, Any, dict[str, str]]:
            user = self._me(req)
            status, body = handler(req, m, user)
            return status, body, ({"X-AUSERNAME": user["name"]} if self.send_ausername else {})
        return wrapped

    def add_user(self, token: str, name: str, uid: int) -> dict[str, Any]:
        user = {"name": name, "emailAddress": f"{name}@example.com", "id": uid, "displayName": name.title(),
                "active": True, "slug": name.lower(), "type": "NORMAL",
                "links": {"self": [{"href": f"https://bitbucket.example/users/{name.lower()}"}]}}
        self.users[token] = user
        return user

    def _me(self, req: Request) -> dict[str, Any]:
        auth = req.headers.get("authorization", "")
        user = self.users.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
        if user is None:
            raise Reject(401, _dc_error("Authentication failed. Please check your credentials and try again."))
        return user

    def _whoami(self, req: Request, m: Any, user: dict[str, Any]) -> tuple[int, Any]:
        return 200, (user["name"] + "\n").encode()

    def _build(self, req: Request, m: Any, user: dict[str, Any]) -> tuple[int, Any]:
        body = require(req.json, {"key": str, "state": str, "url": str}, 400, _dc_error)
        one_of(body, "state", {"SUCCESSFUL", "FAILED", "INPROGRESS", "CANCELLED", "UNKNOWN"}, 400, _dc_error)
        at_most(body, {"key": 255, "name": 255, "description": 255, "url": 450}, 400, _dc_error)
        self.builds.append({**body, "sha": m["sha"], "dateAdded": EPOCH_MS})
        return 204, None

    def _report(self, req: Request, m: Any, user: dict[str, Any]) -> tuple[int, Any]:
        body = require(req.json, {"title": str}, 400, _dc_error)
        at_most(body, {"title": 450, "details": 2000, "reporter": 450}, 400, _dc_error)
        one_of(body, "result", {"PASS", "FAIL"}, 400, _dc_error)
        if len(body.get("data") or []) > 6:
            raise Reject(400, _dc_error("A report can have at most 6 data items"))
        old = self.reports.get((m["sha"], m["key"]), {})
        report = {**body, "key": m["key"], "createdDate": EPOCH_MS, "annotations": old.get("annotations", {})}
        self.reports[(m["sha"], m["key"])] = report
        return 200, {k: v for k, v in report.items() if k != "annotations"}

    def _report_of(self, m: Any) -> dict[str, Any]:
        report = self.reports.get((m["sha"], m["key"]))
        if report is None:
            raise Reject(404, _dc_error(f"No report with key '{m['key']}' exists for this commit"))
        return report

    def _clear(self, req: Request, m: Any, user: dict[str, Any]) -> tuple[int, Any]:
        self._report_of(m)["annotations"] = {}
        return 204, None

    def _notes(self, req: Request, m: Any, user: dict[str, Any]) -> tuple[int, Any]:
        report = self._report_of(m)
        body = require(req.json, {"annotations": list}, 400, _dc_error)
        if len(report["annotations"]) + len(body["annotations"]) > 1000:
            raise Reject(400, _dc_error("A report cannot have more than 1000 annotations"))
        for note in body["annotations"]:
            require(note, {"message": str, "severity": str}, 400, _dc_error)
            one_of(note, "severity", {"LOW", "MEDIUM", "HIGH"}, 400, _dc_error)
            one_of(note, "type", {"VULNERABILITY", "CODE_SMELL", "BUG"}, 400, _dc_error)
            at_most(note, {"message": 2000, "externalId": 450, "path": 50000}, 400, _dc_error)
            report["annotations"][note.get("externalId") or str(self.next_id())] = note
        return 204, None

    def pr_comment(self, n: int, text: str, user: dict[str, Any]) -> dict[str, Any]:
        cid = self.next_id()
        comment = {"properties": {"repositoryId": 4}, "id": cid, "version": 0, "text": text, "author": user,
                   "createdDate": EPOCH_MS, "updatedDate": EPOCH_MS, "comments": [], "tasks": [],
                   "severity": "NORMAL", "state": "OPEN", "threadResolved": False,
                   "permittedOperations": {"editable": True, "deletable": True}, "pr": n}
        self.comments[cid] = comment
        self.activities.append({"id": self.next_id(), "createdDate": EPOCH_MS, "user": user, "action": "COMMENTED",
                                "commentAction": "ADDED", "comment": comment, "pr": n})
        return comment

    def pr_event(self, n: int, action: str, user: dict[str, Any]) -> None:
        self.activities.append({"id": self.next_id(), "createdDate": EPOCH_MS, "user": user, "action": action, "pr": n})

    def _list(self, req: Request, m: Any, user: dict[str, Any]) -> tuple[int, Any]:
        items = [{k: v for k, v in a.items() if k != "pr"} for a in reversed(self.activities) if a["pr"] == int(m["n"])]
        start, limit = int(req.query.get("start", 0)), min(100, int(req.query.get("limit", 25)))
        values = [{**a, "comment": {k: v for k, v in a["comment"].items() if k != "pr"}} if "comment" in a else a
                  for a in items[start:start + limit]]
        last = start + limit >= len(items)
        out: dict[str, Any] = {"size": len(values), "limit": limit, "isLastPage": last, "values": values, "start": start}
        if not last:
            out["nextPageStart"] = start + limit
        return 200, out

    def _create(self, req: Request, m: Any, user: dict[str, Any]) -> tuple[int, Any]:
        body = require(req.json, {"text": str}, 400, _dc_error)
        at_most(body, {"text": 32768}, 400, _dc_error)
        return 201, {k: v for k, v in self.pr_comment(int(m["n"]), body["text"], user).items() if k != "pr"}

    def _edit(self, req: Request, m: Any, user: dict[str, Any]) -> tuple[int, Any]:
        comment = self.comments.get(int(m["id"]))
        if comment is None or comment["pr"] != int(m["n"]):
            raise Reject(404, _dc_error("The comment does not exist"))
        if comment["author"]["name"] != user["name"]:
            raise Reject(403, _dc_error("You are not permitted to edit this comment"))
        body = require(req.json, {"text": str, "version": int}, 400, _dc_error)
        at_most(body, {"text": 32768}, 400, _dc_error)
        if body["version"] != comment["version"]:
            raise Reject(409, {"errors": [{"context": None, "currentVersion": comment["version"],
                                           "message": "You are attempting to modify a comment based on out-of-date information.",
                                           "exceptionName": "com.atlassian.bitbucket.comment.CommentOutOfDateException"}]})
        comment.update(text=body["text"], version=comment["version"] + 1, updatedDate=EPOCH_MS + 60000)
        return 200, {k: v for k, v in comment.items() if k != "pr"}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
