"""What the platform modules share: reading a signed body, HMAC checks in constant
time, fitting text into a platform's limits with a count of what was cut, and the one summary comment
per request found by its hidden marker among the service's own comments.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from ..http import Http
from ..model import PayloadError

ZERO = "0" * 40
MARKER = "<!-- gitops-hooks:summary -->"  # the first line of the summary comment the jobs write


def payload(body: bytes) -> dict[str, Any]:
    """The JSON object of a body whose signature was good (PayloadError when it is not one)."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError("the body is not a JSON object")
    return data


def need(data: Any, *path: str) -> Any:
    """data[path[0]][path[1]]..., or PayloadError naming the path that is missing or null."""
    cur = data
    for key in path:
        if not isinstance(cur, Mapping) or cur.get(key) is None:
            raise PayloadError(f"the payload has no {'.'.join(path)}")
        cur = cur[key]
    return cur


def body_digest(body: bytes) -> str:
    """The delivery id of a platform that sends none: the same body is the same delivery."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def hmac_hex(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def same(given: str, want: str) -> bool:
    """Constant-time equality of two header values (non-ASCII input never matches)."""
    return hmac.compare_digest(want.encode("utf-8"), given.strip().encode("utf-8"))


def standard_webhooks_key(secret: str) -> bytes | None:
    """The HMAC key of a Standard Webhooks secret: `whsec_` then base64 of the key bytes."""
    if not secret.startswith("whsec_"):
        return None
    try:
        return base64.b64decode(secret[len("whsec_"):], validate=True)
    except ValueError:
        return None


def standard_webhooks_ok(headers: Mapping[str, str], body: bytes, key: bytes) -> bool:
    """`webhook-signature` holds space-separated `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`
    entries; one that matches is enough (a sender rotating its secret signs with both)."""
    wid, stamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    if not wid or not stamp:
        return False
    signed = wid.encode("utf-8") + b"." + stamp.encode("utf-8") + b"." + body
    want = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")
    found = False
    for entry in headers.get("webhook-signature", "").split():
        version, _, sig = entry.partition(",")
        found |= version == "v1" and same(sig, want)
    return found


def cut(text: str, limit: int) -> str:
    """One line of text (a status description, a title) within `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def fit(text: str, limit: int) -> str:
    """Markdown within `limit` characters, cut at a line with a count of the lines left out."""
    if len(text) <= limit:
        return text
    lines = text.splitlines()
    kept: list[str] = []
    size = 0
    for n, line in enumerate(lines):
        note = f"\n\n… {len(lines) - n:,} more lines not shown (this platform keeps {limit:,} characters)."
        if size + len(line) + 1 + len(note) > limit:
            return "\n".join(kept) + note
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept)  # not reached: the whole text was over the limit


def next_link(link: str) -> str | None:
    """The URL of `rel="next"` in an RFC 8288 Link header (GitHub, Gitea and Forgejo page so)."""
    for part in link.split(","):
        target, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", ""):
            return target.strip().strip("<>")
    return None


def link_pages(http: Http, url: str, headers: Mapping[str, str], most: int) -> Iterator[list[Mapping[str, Any]]]:
    """The pages of a list endpoint, following its `Link: rel="next"` headers (`most` pages at most)."""
    next_url: str | None = url
    for _ in range(most):
        if next_url is None:
            return
        answer = http.get(next_url, headers=headers)
        yield list(answer.json() or [])
        next_url = next_link(answer.headers.get("link", ""))


def split_marker(body: str) -> tuple[str, str]:
    """(marker, body): the summary's hidden first line, or the service's marker added when missing."""
    first = body.split("\n", 1)[0]
    if first.startswith("<!--") and first.rstrip().endswith("-->"):
        return first.strip(), body
    return MARKER, MARKER + "\n" + body


def find_own(pages: Iterable[list[Mapping[str, Any]]], text_of: Callable[[Mapping[str, Any]], str],
             is_mine: Callable[[Mapping[str, Any]], bool], marker: str) -> Mapping[str, Any] | None:
    """The first comment that carries the marker AND was written by the service's own account: a
    comment by anyone else quoting the marker is never taken (and so never edited)."""
    for page in pages:
        for item in page:
            if marker in text_of(item) and is_mine(item):
                return item
    return None
