"""The receiver: one endpoint, `POST /webhook`, and `GET /healthz`.

Every delivery is answered within a second and worked on later from the queue. In order: the body is
bounded (25 MB, else 413); the platform is told from the headers (Gitea and Forgejo before GitHub); the
signature is checked in constant time against the secrets of that platform's configured repositories
(Gitea's and Forgejo's together: a Forgejo server may send Gitea's headers, and either may be configured),
before anything parses the body (a missing or wrong signature, or an unconfigured repository: 401 with
no detail, nothing queued); then the content type (JSON only: 415) and the payload (400 when it is not a
payload of this platform, 204 for an event not acted on); then the queue: 202 for a delivery stored,
200 for one already known (nothing will be posted again). One log line per delivery, never a secret.

The HTTP server is aiohttp (one package, a mature asyncio server with a body limit built in); `Receiver`
itself is plain code, so it is tested without sockets too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import platforms
from .config import Repository, ServeConfig
from .model import Event, PayloadError
from .queue import Queue, purpose_of, sha_of

log = logging.getLogger("gitops_hooks.serve")
MAX_BODY = 25 * 1024 * 1024
JSON_TYPES = ("application/json", "application/vnd.github+json", "text/plain")  # Bitbucket DC sends JSON as text


@dataclass(frozen=True)
class Answer:
    status: int
    text: str
    fields: tuple[tuple[str, str], ...] = ()

    def line(self, seconds: float) -> str:
        parts = " ".join(f"{k}={v}" for k, v in self.fields)
        return f"delivery {parts} answer={self.status} seconds={seconds:.3f}".replace("  ", " ")


class Receiver:
    def __init__(self, config: ServeConfig, queue: Queue, notify: Callable[[], None] = lambda: None) -> None:
        self.config, self.queue, self.notify = config, queue, notify

    def handle(self, headers: Mapping[str, str], body: bytes) -> Answer:
        """The answer to one delivery (headers with lower-cased names). Never raises."""
        try:
            return self._handle(headers, body)
        except Exception as exc:  # noqa: BLE001 - one line, no traceback; the platform retries a 500
            one = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            log.error("delivery internal error (%s)", one)
            return Answer(500, "internal error\n", (("outcome", "internal-error"),))

    def _handle(self, headers: Mapping[str, str], body: bytes) -> Answer:
        platform = platforms.detect(headers)
        if platform is None:
            return Answer(401, "", (("outcome", "refused:unknown-platform"),))
        fields: tuple[tuple[str, str], ...] = (("platform", platform.name),)
        secrets = {r.secret for r in self.config.of_platform(platform.name)}
        good = next((s for s in secrets if platform.verify(headers, body, s)), None)
        if good is None:
            return Answer(401, "", (*fields, ("outcome", "refused:signature")))
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in JSON_TYPES:
            return Answer(415, f"content type {ctype or '(none)'} is not JSON: set the webhook's content type "
                          "to application/json\n", (*fields, ("outcome", "refused:content-type")))
        try:
            events = platform.parse(headers, body)
        except PayloadError as exc:
            return Answer(400, f"not a {platform.name} payload: {exc}\n", (*fields, ("outcome", "bad-payload")))
        if not events:
            return Answer(204, "", (*fields, ("outcome", "ignored")))
        repo = self.config.find(platform.name, events[0].repository)
        fields += (("repository", events[0].repository), ("event", ",".join(purpose_of(e) for e in events)),
                   ("commit", ",".join(sha_of(e)[:12] for e in events)))
        if repo is None or repo.secret != good:
            return Answer(401, "", (*fields, ("outcome", "refused:repository")))
        return self._enqueue(repo, events, fields)

    def _enqueue(self, repo: Repository, events: list[Event], fields: tuple[tuple[str, str], ...]) -> Answer:
        if any(e.clone_url and e.clone_url != repo.clone_url for e in events):
            fields += (("note", "payload-clone-url-ignored"),)
        outcome = self.queue.put(repo.key, events)
        if outcome == "duplicate":
            return Answer(200, "already received\n", (*fields, ("outcome", "duplicate")))
        self.notify()
        return Answer(202, "queued\n", (*fields, ("outcome", "queued")))

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "jobs": self.queue.counts()}


def make_app(receiver: Receiver, workers_alive: Callable[[], bool]) -> Any:
    """The aiohttp application around a Receiver."""
    import asyncio

    from aiohttp import web

    async def webhook(request: web.Request) -> web.Response:
        started = time.monotonic()
        headers = {k.lower(): v for k, v in request.headers.items()}
        if (request.content_length or 0) > MAX_BODY:
            answer = Answer(413, f"body over the {MAX_BODY >> 20} MB limit\n", (("outcome", "refused:size"),))
        else:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                answer = Answer(413, f"body over the {MAX_BODY >> 20} MB limit\n", (("outcome", "refused:size"),))
            else:
                answer = await asyncio.get_running_loop().run_in_executor(None, receiver.handle, headers, body)
        log.info(answer.line(time.monotonic() - started))
        return web.Response(status=answer.status, text=answer.text or None)

    async def healthz(request: web.Request) -> web.Response:
        data = await asyncio.get_running_loop().run_in_executor(None, receiver.health)
        alive = workers_alive()
        data.update(status="ok" if alive else "workers down", workers=alive)
        return web.json_response(data, status=200 if alive else 503)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/webhook", webhook)
    app.router.add_get("/healthz", healthz)
    return app
