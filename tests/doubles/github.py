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

Faults: `hold(pattern)` makes the next request whose "METHOD path" matches wait until `release()` and
then drops the connection without an answer (nothing recorded); `fail(pattern, status, count)` answers
an error `count` times.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

STATES = {"error", "failure", "pending", "success"}
CONCLUSIONS = {"action_required", "cancelled", "failure", "neutral", "success", "skipped", "stale", "timed_out"}
LEVELS = {"notice", "warning", "failure"}
DEPLOY_STATES = {"error", "failure", "inactive", "in_progress", "queued", "pending", "success"}


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    token: str
    status: int = 0
    at: float = field(default_factory=time.monotonic)  # when it was answered


@dataclass
class Account:
    login: str
    id: int
    type: str = "User"
    app_id: int = 0


@dataclass
class GitHubDouble:
    app_id: int = 0
    public_key: str = ""
    installation_id: int = 0
    tokens: dict[str, Account] = field(default_factory=dict)  # personal tokens
    calls: list[Call] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    check_runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> comment (with issue)
    deployments: dict[int, dict[str, Any]] = field(default_factory=dict)
    deployment_statuses: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # requests that broke a documented rule

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = iter(range(1000, 10**9))
        self._holds: list[tuple[re.Pattern[str], threading.Event, bool]] = []
        self._held = threading.Event()
        self._waiting: list[threading.Event] = []
        self._fails: list[list[Any]] = []
        self.server: ThreadingHTTPServer | None = None

    # -- life
    def start(self) -> GitHubDouble:
        double = self

        class Handler(_Handler):
            pass
        Handler.double = double
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    # -- faults
    def hold(self, pattern: str, then_answer: bool = False) -> None:
        """The next matching request waits for `release()`; then it is dropped, or answered."""
        self._held.clear()
        self._holds.append((re.compile(pattern), threading.Event(), then_answer))

    def wait_held(self, timeout: float) -> bool:
        return self._held.wait(timeout)

    def release(self) -> None:
        for _, ev, _ in self._holds:
            ev.set()
        for ev in self._waiting:
            ev.set()

    def fail(self, pattern: str, status: int, count: int = 1) -> None:
        self._fails.append([re.compile(pattern), status, count])

    # -- seeding and reading
    def add_comment(self, repo: str, number: int, body: str, login: str) -> int:
        cid = next(self._ids)
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
                             + ", ".join(f"{c.method} {c.path} {c.status}" for c in self.calls))

    # -- answering
    def answer(self, method: str, path: str, query: dict[str, str], body: Any, auth: str) -> tuple[int, Any, dict[str, str]]:
        for f in self._fails:
            if f[2] > 0 and f[0].search(f"{method} {path}"):
                f[2] -= 1
                return f[1], {"message": "Server Error"}, {}
        if method == "POST" and (m := re.fullmatch(r"/app/installations/(\d+)/access_tokens", path)):
            return self._installation_token(int(m.group(1)), auth)
        account = self.tokens.get(auth.removeprefix("Bearer ").strip()) if auth.startswith("Bearer ") else None
        if account is None:
            return 401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}, {}
        if method == "GET" and path == "/user":
            return 200, {"login": account.login, "id": account.id, "type": account.type}, {}
        m = re.fullmatch(r"/repos/([^/]+/[^/]+)/(.+)", path)
        if not m:
            return 404, {"message": "Not Found"}, {}
        return self._repo_call(method, m.group(1), m.group(2), query, body, account)

    def _installation_token(self, inst: int, auth: str) -> tuple[int, Any, dict[str, str]]:
        import jwt

        try:
            claims = jwt.decode(auth.removeprefix("Bearer "), self.public_key, algorithms=["RS256"],
                                options={"require": ["iat", "exp", "iss"]})
        except jwt.PyJWTError as exc:
            return 401, {"message": f"A JSON web token could not be decoded ({exc})"}, {}
        if str(claims["iss"]) != str(self.app_id) or claims["exp"] - claims["iat"] > 600 or inst != self.installation_id:
            return 401, {"message": "'Expiration time' claim ('exp') is too far in the future"}, {}
        token = f"ghs_{next(self._ids)}"
        self.tokens[token] = Account(f"app-{self.app_id}[bot]", 41898282, "Bot", self.app_id)
        return 201, {"token": token, "expires_at": "2099-01-01T00:00:00Z", "permissions": {"checks": "write"}}, {}

    def _invalid(self, message: str) -> tuple[int, Any, dict[str, str]]:
        self.errors.append(message)
        return 422, {"message": "Validation Failed", "errors": [{"message": message}]}, {}

    def _repo_call(self, method: str, repo: str, rest: str, query: dict[str, str], body: Any,
                   account: Account) -> tuple[int, Any, dict[str, str]]:
        if method == "POST" and (m := re.fullmatch(r"statuses/([0-9a-f]{40})", rest)):
            return self._status(repo, m.group(1), body)
        if rest.startswith("check-runs"):
            if not account.app_id:
                return 403, {"message": "You must authenticate via a GitHub App."}, {}
            return self._check_run(method, repo, rest, body)
        if m := re.fullmatch(r"issues/(\d+)/comments", rest):
            return self._comments(method, repo, int(m.group(1)), query, body, account)
        if method == "PATCH" and (m := re.fullmatch(r"issues/comments/(\d+)", rest)):
            return self._edit_comment(int(m.group(1)), body, account)
        if method == "POST" and rest == "deployments":
            if not body.get("ref"):
                return self._invalid("ref is required")
            did = next(self._ids)
            self.deployments[did] = {"id": did, "repo": repo, **body}
            return 201, {"id": did, "sha": body["ref"], "environment": body.get("environment", "production")}, {}
        if method == "POST" and (m := re.fullmatch(r"deployments/(\d+)/statuses", rest)):
            if int(m.group(1)) not in self.deployments:
                return 404, {"message": "Not Found"}, {}
            if body.get("state") not in DEPLOY_STATES:
                return self._invalid(f"state {body.get('state')!r} is not included in the list")
            self.deployment_statuses.append({"deployment_id": int(m.group(1)), **body})
            return 201, {"id": next(self._ids), **body}, {}
        return 404, {"message": "Not Found"}, {}

    def _status(self, repo: str, sha: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        if body.get("state") not in STATES:
            return self._invalid(f"state {body.get('state')!r} is not included in the list")
        if len(body.get("description") or "") > 140:
            return self._invalid("description is too long (maximum is 140 characters)")
        self.statuses.append({"repo": repo, "sha": sha, **body})
        return 201, {"id": next(self._ids), "state": body["state"], "context": body.get("context", "default")}, {}

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

    def _check_run(self, method: str, repo: str, rest: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        problem = self._check_output(body.get("output"))
        if body.get("conclusion") is not None and body["conclusion"] not in CONCLUSIONS:
            problem = problem or f"conclusion {body['conclusion']!r} is not included in the list"
        if method == "POST" and rest == "check-runs":
            if not body.get("name") or not body.get("head_sha"):
                problem = problem or "name and head_sha are required"
            if body.get("status") == "completed" and not body.get("conclusion"):
                problem = problem or "conclusion is required when status is completed"
            if problem:
                return self._invalid(problem)
            rid = next(self._ids)
            output = dict(body.get("output") or {})
            self.check_runs[rid] = {"id": rid, "repo": repo, **body, "output": output,
                                    "annotations": list(output.pop("annotations", []) or [])}
            return 201, {"id": rid, "head_sha": body["head_sha"], "status": body.get("status", "queued")}, {}
        m = re.fullmatch(r"check-runs/(\d+)", rest)
        if method == "PATCH" and m and int(m.group(1)) in self.check_runs:
            if problem:
                return self._invalid(problem)
            run = self.check_runs[int(m.group(1))]
            output = dict(body.get("output") or {})
            run["annotations"].extend(output.pop("annotations", []) or [])
            run["output"].update(output)
            return 200, {"id": run["id"]}, {}
        return 404, {"message": "Not Found"}, {}

    def _comments(self, method: str, repo: str, number: int, query: dict[str, str], body: Any,
                  account: Account) -> tuple[int, Any, dict[str, str]]:
        if method == "POST":
            text = body.get("body") or ""
            if not text or len(text) > 65536:
                return self._invalid(f"body is {len(text)} characters (1 to 65536)")
            cid = next(self._ids)
            app = {"id": account.app_id, "slug": f"app-{account.app_id}"} if account.app_id else None
            self.comments[cid] = {"id": cid, "issue": (repo, number), "body": text, "edits": 0,
                                  "user": {"login": account.login, "id": account.id, "type": account.type},
                                  "performed_via_github_app": app}
            return 201, self._public(self.comments[cid]), {}
        per_page = min(100, int(query.get("per_page", "30")))
        page = int(query.get("page", "1"))
        mine = [self._public(c) for c in sorted(self.comments.values(), key=lambda c: c["id"])
                if c["issue"] == (repo, number)]
        chunk = mine[(page - 1) * per_page: page * per_page]
        headers = {}
        if page * per_page < len(mine):
            headers["Link"] = (f'<{self.url}/repos/{repo}/issues/{number}/comments?per_page={per_page}&page={page + 1}>;'
                               ' rel="next"')
        return 200, chunk, headers

    def _edit_comment(self, cid: int, body: Any, account: Account) -> tuple[int, Any, dict[str, str]]:
        comment = self.comments.get(cid)
        if comment is None:
            return 404, {"message": "Not Found"}, {}
        if comment["user"]["login"] != account.login:
            self.errors.append(f"edit of comment {cid} by {comment['user']['login']} attempted by {account.login}")
            return 403, {"message": "Resource not accessible by integration"}, {}
        text = body.get("body") or ""
        if not text or len(text) > 65536:
            return self._invalid(f"body is {len(text)} characters (1 to 65536)")
        comment["body"] = text
        comment["edits"] = comment.get("edits", 0) + 1
        return 200, self._public(comment), {}

    @staticmethod
    def _public(c: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in c.items() if k not in ("issue", "edits")}


class _Handler(BaseHTTPRequestHandler):
    double: GitHubDouble
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def _handle(self, method: str) -> None:
        d = self.double
        parts = urlsplit(self.path)
        path = parts.path.removeprefix("/api/v3")  # GitHub Enterprise Server's base
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        for pattern, ev, then_answer in list(d._holds):
            if pattern.search(f"{method} {path}"):
                d._holds.remove((pattern, ev, then_answer))
                d._waiting.append(ev)
                d._held.set()
                ev.wait(120)
                if not then_answer:
                    self.close_connection = True
                    return  # dropped: no answer, nothing recorded
                break
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        with d._lock:
            if body is None:
                status, answer, headers = 400, {"message": "Problems parsing JSON"}, {}
            else:
                status, answer, headers = d.answer(method, path, query, body, self.headers.get("Authorization", ""))
            d.calls.append(Call(method, path, query, body, self.headers.get("Authorization", ""), status))
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
