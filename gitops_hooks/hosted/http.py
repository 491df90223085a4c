"""One small HTTP client for the platforms' REST APIs: bounded, retried, aware of rate limits.

Every request has a timeout. A 5xx answer, a 429, a 403 that says the rate limit is spent, or a
connection that fails is tried again with exponential backoff, honouring `Retry-After` (seconds or an
HTTP date) and GitHub's `X-RateLimit-Reset`, up to `retries` times and never longer than `max_wait`
seconds in one sleep. What still fails raises `HttpError`, so that the job that made the call stays in
the queue. Bodies are JSON both ways unless told otherwise. Nothing here logs a header: tokens stay out
of logs and exceptions (`HttpError` carries the method, the URL without its query, the status and the
start of the answer).
"""

from __future__ import annotations

import email.utils
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

USER_AGENT = "gitops-hooks"


class HttpError(Exception):
    def __init__(self, method: str, url: str, status: int, text: str) -> None:
        self.method, self.url, self.status, self.text = method, url, status, text
        where = urllib.parse.urlsplit(url)._replace(query="", fragment="").geturl()
        what = f"HTTP {status}" if status else "no answer"
        super().__init__(f"{method} {where}: {what}: {text[:300]}")


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None


def _retry_after(headers: Mapping[str, str], now: float) -> float | None:
    value = headers.get("retry-after", "").strip()
    if value:
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - now)
    if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset", "").isdigit():
        return max(0.0, float(headers["x-ratelimit-reset"]) - now)
    return None


def _should_retry(status: int, headers: Mapping[str, str]) -> bool:
    if status == 0 or status >= 500 or status == 429:
        return True
    return status == 403 and (headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers)


@dataclass
class Http:
    """`request` returns a Response for 2xx (and for the statuses in `accept`), raises HttpError otherwise."""

    timeout: float = 10.0
    retries: int = 4
    backoff: float = 0.5
    max_wait: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    default_headers: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, url: str, *, json_body: Any = None, data: bytes | None = None,
                headers: Mapping[str, str] | None = None, accept: tuple[int, ...] = ()) -> Response:
        sent = {"User-Agent": USER_AGENT, "Accept": "application/json", **self.default_headers, **(headers or {})}
        if json_body is not None:
            data = json.dumps(json_body).encode("utf-8")
            sent.setdefault("Content-Type", "application/json")
        last: HttpError | None = None
        for attempt in range(self.retries + 1):
            status, answer_headers, body = self._once(method, url, data, sent)
            if 200 <= status < 300 or status in accept:
                return Response(status, answer_headers, body)
            last = HttpError(method, url, status, body.decode("utf-8", "replace"))
            if attempt == self.retries or not _should_retry(status, answer_headers):
                break
            wait = _retry_after(answer_headers, time.time())
            self.sleep(min(self.max_wait, wait if wait is not None else self.backoff * (2 ** attempt)))
        assert last is not None
        raise last

    def _once(self, method: str, url: str, data: bytes | None,
              headers: Mapping[str, str]) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(url, data=data, method=method, headers=dict(headers))
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - configured API URLs
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read() or b""
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            return 0, {}, str(getattr(exc, "reason", exc)).encode("utf-8", "replace")

    def get(self, url: str, **kw: Any) -> Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, body: Any, **kw: Any) -> Response:
        return self.request("POST", url, json_body=body, **kw)

    def patch(self, url: str, body: Any, **kw: Any) -> Response:
        return self.request("PATCH", url, json_body=body, **kw)

    def put(self, url: str, body: Any, **kw: Any) -> Response:
        return self.request("PUT", url, json_body=body, **kw)


def join(base: str, path: str, query: Mapping[str, str | int] | None = None) -> str:
    """`base` (which may carry a path, e.g. https://host/api/v3) joined with `path`, plus a query."""
    url = base.rstrip("/") + "/" + path.lstrip("/")
    return url + ("?" + urllib.parse.urlencode(query) if query else "")
