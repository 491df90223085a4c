"""What the GitHub, GitLab, Bitbucket and Gitea doubles share: a threaded HTTP server on 127.0.0.1 (a random
port) that records every request (method, path, query, headers, JSON body), routes it to a handler the
platform double declares, answers errors the way the platform does, and can be told to fail.

A handler raises `Reject(status, body)` for a request the platform would refuse (a missing field, a
value over a documented limit, another user's comment): the double records it in `rejected` too, so a
test sees both the answer and why. `fail(pattern, status, count, headers)` answers the next `count`
requests whose "METHOD path" matches with `status` (e.g. 500, or 429 with `Retry-After`);
`hold(pattern)` makes the next matching request wait until `release()`, then drops its connection
without an answer (nothing recorded) or, with `then_answer`, answers it.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

NOW = "2026-12-07T22:50:00Z"


class Reject(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status}: {body}")
        self.status, self.body, self.headers = status, body, headers or {}


@dataclass
class Request:
    method: str
    path: str  # percent-decoded
    raw_path: str  # as sent
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    json: Any
    status: int = 0
    at: float = 0.0  # time.monotonic() when it was answered

    @property
    def token(self) -> str:
        """The Authorization header as sent."""
        return self.headers.get("authorization", "")


Handler = Callable[[Request, "re.Match[str]"], tuple[int, Any, dict[str, str]] | tuple[int, Any]]


@dataclass
class Fault:
    pattern: re.Pattern[str]
    status: int
    count: int
    headers: dict[str, str]
    body: Any


@dataclass
class Loopback:
    """Subclasses fill `routes` with (METHOD, regex on the raw path, handler) in __post_init__."""

    requests: list[Request] = field(default_factory=list)
    rejected: list[tuple[Request, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.faults: list[Fault] = []
        self._holds: list[tuple[re.Pattern[str], threading.Event, bool]] = []
        self._held = threading.Event()
        self._waiting: list[threading.Event] = []
        self._lock = threading.Lock()
        self._ids = iter(range(101, 10**9))
        double = self

        class _Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                double._serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def next_id(self) -> int:
        return next(self._ids)

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(pattern + r"$"), handler))

    def fail(self, pattern: str, status: int = 500, count: int = 1, headers: dict[str, str] | None = None,
             body: Any = None) -> None:
        self.faults.append(Fault(re.compile(pattern), status, count, headers or {},
                                 body if body is not None else {"message": "Internal Server Error"}))

    def hold(self, pattern: str, then_answer: bool = False) -> None:
        """The next request whose "METHOD path" matches waits for `release()`; then it is dropped (no
        answer, nothing recorded), or answered."""
        self._held.clear()
        self._holds.append((re.compile(pattern), threading.Event(), then_answer))

    def wait_held(self, timeout: float) -> bool:
        """Whether a request is being held (waiting at most `timeout` seconds for one)."""
        return self._held.wait(timeout)

    def release(self) -> None:
        for event in [h[1] for h in self._holds] + self._waiting:
            event.set()

    def _wait_if_held(self, method: str, path: str) -> bool:
        """False when the request was held and is to be dropped."""
        with self._lock:
            hold = next((h for h in self._holds if h[0].search(f"{method} {path}")), None)
            if hold is not None:
                self._holds.remove(hold)
                self._waiting.append(hold[1])
                self._held.set()
        if hold is None:
            return True
        hold[1].wait(120)
        return hold[2]

    def calls(self, method: str = "", pattern: str = "") -> list[Request]:
        """The requests answered 2xx, filtered by method and a regex searched in the path."""
        return [r for r in self.requests if (not method or r.method == method)
                and re.search(pattern, r.path) and 200 <= r.status < 300]

    # -- serving
    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        split = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        req = Request(h.command, unquote(split.path), split.path,
                      {k: v[-1] for k, v in parse_qs(split.query).items()},
                      {k.lower(): v for k, v in h.headers.items()}, body)
        if not self._wait_if_held(req.method, req.path):
            h.close_connection = True
            return
        status, answer, headers = self._answer(req)
        req.status, req.at = status, time.monotonic()
        with self._lock:
            self.requests.append(req)
        data = b"" if answer is None else (answer if isinstance(answer, bytes) else json.dumps(answer).encode())
        h.send_response(status)
        for k, v in {"Content-Type": "application/json;charset=UTF-8", **headers}.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _answer(self, req: Request) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            for fault in self.faults:
                if fault.count > 0 and fault.pattern.search(f"{req.method} {req.path}"):
                    fault.count -= 1
                    return fault.status, fault.body, fault.headers
        for method, pattern, handler in self.routes:
            match = pattern.match(req.raw_path)
            if method == req.method and match:
                try:
                    out = handler(req, match)
                except Reject as exc:
                    with self._lock:
                        self.rejected.append((req, exc.body))
                    return exc.status, exc.body, exc.headers
                return (out[0], out[1], out[2] if len(out) > 2 else {})  # type: ignore[misc]
        return 404, self.not_found(req), {}

    def not_found(self, req: Request) -> Any:
        return {"message": "404 Not Found"}


def require(body: Any, fields: dict[str, type | tuple[type, ...]], status: int, error: Callable[[str], Any]) -> dict[str, Any]:
    """The JSON object with each named field present and of its type, or Reject(status, error(message))."""
    if not isinstance(body, dict):
        raise Reject(status, error("the body is not a JSON object"))
    for name, kind in fields.items():
        if name not in body or body[name] is None:
            raise Reject(status, error(f"{name} is missing"))
        if not isinstance(body[name], kind):
            raise Reject(status, error(f"{name} has the wrong type"))
    return body


def at_most(body: dict[str, Any], limits: dict[str, int], status: int, error: Callable[[str], Any]) -> None:
    """Reject(status) when a string field is longer than its documented limit."""
    for name, limit in limits.items():
        value = body.get(name)
        if isinstance(value, str) and len(value) > limit:
            raise Reject(status, error(f"{name} is longer than {limit} characters"))


def one_of(body: dict[str, Any], name: str, allowed: set[str], status: int, error: Callable[[str], Any]) -> None:
    if name in body and body[name] not in allowed:
        raise Reject(status, error(f"{name} must be one of {sorted(allowed)}"))
