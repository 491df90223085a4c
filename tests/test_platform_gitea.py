"""Gitea and Forgejo: their real payloads signed as they sign, parsed into events; the reporter against
a loopback double of their API."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from doubles.gitea import GiteaDouble
from hostedkit import write_config
from platform_cases import Round, comment_round, edited, failing, http, real, retry_round

from gitops_hooks.hosted.config import ServeConfigError, load
from gitops_hooks.hosted.http import HttpError
from gitops_hooks.hosted.model import Credentials, PayloadError
from gitops_hooks.hosted.platforms import gitea
from gitops_hooks.hosted.queue import Queue
from gitops_hooks.hosted.receiver import Receiver

SECRET = b"gitea-webhook-secret"
FORGEJO, GITEA = gitea.PLATFORMS


def headers(body: bytes, event: str, forgejo: bool = False, secret: bytes = SECRET) -> dict[str, str]:
    """What Gitea (or Forgejo, which sends Gitea's headers beside its own) sends, GitHub's included."""
    sig = hmac.new(secret, body, hashlib.sha256).hexdigest()
    out = {"content-type": "application/json", "x-github-event": event, "x-github-delivery": "d-1",
           "x-hub-signature-256": "sha256=" + sig, "x-gitea-event": event, "x-gitea-delivery": "d-1",
           "x-gitea-signature": sig, "x-gogs-event": event, "x-gogs-delivery": "d-1", "x-gogs-signature": sig}
    if forgejo:
        out.update({"x-forgejo-event": event, "x-forgejo-delivery": "d-1", "x-forgejo-signature": sig})
    return out


def test_gitea_and_forgejo_are_told_apart() -> None:
    body = real("gitea-push.json")
    assert GITEA.matches(headers(body, "push")) and not FORGEJO.matches(headers(body, "push"))
    assert FORGEJO.matches(headers(body, "push", forgejo=True)) and not GITEA.matches(headers(body, "push", forgejo=True))
    github_only = {"x-github-event": "push", "x-hub-signature-256": "sha256=00"}
    assert not GITEA.matches(github_only) and not FORGEJO.matches(github_only)


@pytest.mark.parametrize("platform,forgejo", [(GITEA, False), (FORGEJO, True)])
def test_signature(platform: Any, forgejo: bool) -> None:
    body = real("gitea-push.json")
    h = headers(body, "push", forgejo)
    assert platform.verify(h, body, SECRET)
    assert not platform.verify(h, body.replace(b"example", b"exampl3", 1), SECRET)  # tampered
    assert not platform.verify(headers(body, "push", forgejo, b"another secret"), body, SECRET)
    assert not platform.verify({k: v for k, v in h.items() if not k.endswith("signature")}, body, SECRET)
    assert not platform.verify({**h, platform.prefix + "signature": "é"}, body, SECRET)


def configured(tmp_path: Path, *platforms: str) -> Path:
    (tmp_path / "gitea-secret").write_text(SECRET.decode() + "\n", encoding="utf-8")
    repos = [{"platform": p, "repository": "example/example", "clone_url": "file:///nowhere.git",
              "api_url": "http://127.0.0.1:9", "webhook_secret_file": "gitea-secret"} for p in platforms]
    return write_config(tmp_path, "file:///nowhere.git", "http://127.0.0.1:9", extra_repos=repos)


@pytest.mark.parametrize("platform,forgejo", [("gitea", True), ("forgejo", False), ("gitea", False), ("forgejo", True)])
def test_gitea_and_forgejo_are_one_family_for_the_configured_repository(tmp_path: Path, platform: str,
                                                                         forgejo: bool) -> None:
    receiver = Receiver(load(configured(tmp_path, platform)), Queue(tmp_path / "queue.sqlite3"))
    body = real("gitea-push.json")
    answer = receiver.handle(headers(body, "push", forgejo), body)
    assert answer.status == 202 and ("platform", "forgejo" if forgejo else "gitea") in answer.fields
    assert [(key, purpose) for _, key, purpose, _, _, _ in receiver.queue.jobs()] == [
        (f"{platform}:example/example", "push:refs/heads/master")]
    # the platform told from the headers still decides which signature header is checked
    prefix = "x-forgejo-" if forgejo else "x-gitea-"
    forged = {**headers(body, "push", forgejo), prefix + "signature": "0" * 64, prefix + "delivery": "d-2"}
    assert receiver.handle(forged, body).status == 401
    assert len(receiver.queue.jobs()) == 1


def test_the_same_repository_as_gitea_and_forgejo_is_configured_twice(tmp_path: Path) -> None:
    with pytest.raises(ServeConfigError, match="forgejo example/example is configured twice"):
        load(configured(tmp_path, "gitea", "forgejo"))


def test_push_event() -> None:
    body = real("gitea-push.json")
    [event] = GITEA.parse(headers(body, "push"), body)
    assert event.kind == "push"
    assert (event.repository, event.ref, event.before, event.after) == (
        "example/example", "refs/heads/master", "0" * 40, "67b56589a45103f891bdee7c0546e5d40bc02001")
    assert event.delivery_id == "d-1" and event.clone_url == "http://localhost:3000/example/example.git"


def test_request_from_a_fork() -> None:
    body = real("gitea-pull_request-from-fork.json")
    [event] = FORGEJO.parse(headers(body, "pull_request", forgejo=True), body)
    assert event.platform == "forgejo" and event.kind == "request"
    assert (event.repository, event.number, event.action, event.from_fork) == ("example/example", 2, "opened", True)
    assert event.head_sha == "48e773f892a831faa47c0a160d1b7f0cd369ae2a" and event.head_ref == "refs/pull/2/head"
    assert (event.base_ref, event.base_sha) == ("refs/heads/master", "67b56589a45103f891bdee7c0546e5d40bc02001")
    assert event.sender == "example2" and event.title == "update"


def _same_repo(data: dict[str, Any]) -> None:
    data["pull_request"]["head"]["repo"] = data["pull_request"]["base"]["repo"]
    data["action"] = "synchronized"


def test_request_from_the_same_repository_and_new_commits() -> None:
    body = edited("gitea-pull_request-from-fork.json", _same_repo)
    [event] = GITEA.parse(headers(body, "pull_request"), body)
    assert event.action == "synchronized" and not event.from_fork
    gone = edited("gitea-pull_request-from-fork.json", lambda d: d["pull_request"]["head"].update(repo=None))
    [parsed] = GITEA.parse(headers(gone, "pull_request"), gone)
    assert parsed.from_fork  # a deleted fork is still a fork


def test_events_not_acted_on() -> None:
    body = real("gitea-pull_request-from-fork.json")
    for action in ("closed", "edited", "label_updated", "assigned"):
        other = edited("gitea-pull_request-from-fork.json", lambda d, a=action: d.update(action=a))
        assert GITEA.parse(headers(other, "pull_request"), other) == []
    assert GITEA.parse(headers(body, "issues"), body) == []
    deleted = edited("gitea-push.json", lambda d: d.update(after="0" * 40))
    assert GITEA.parse(headers(deleted, "push"), deleted) == []


def test_signed_bodies_that_are_not_payloads() -> None:
    for body in (b"{not json", b"[1, 2]", b'{"ref": "refs/heads/main"}'):
        with pytest.raises(PayloadError):
            GITEA.parse(headers(body, "push"), body)
    broken = edited("gitea-pull_request-from-fork.json", lambda d: d["pull_request"].pop("head"))
    with pytest.raises(PayloadError, match="pull_request.head.sha"):
        GITEA.parse(headers(broken, "pull_request"), broken)


def test_delivery_id_falls_back_to_the_body() -> None:
    body = real("gitea-push.json")
    assert GITEA.delivery_id({}, body) == GITEA.delivery_id({}, body) != GITEA.delivery_id({}, body + b" ")


# ---------------------------------------------------------------------------- the reporter

@pytest.fixture
def api() -> Iterator[GiteaDouble]:
    double = GiteaDouble()
    double.add_user("bot-token", "gitops-bot", 7)
    double.add_user("reviewer-token", "reviewer", 8)
    yield double
    double.close()


def _event() -> Any:
    body = edited("gitea-pull_request-from-fork.json", _same_repo)
    [event] = GITEA.parse(headers(body, "pull_request"), body)
    return event


def test_status_and_deployment(api: GiteaDouble) -> None:
    client, _ = http()
    rep = gitea.reporter("gitea", "example/example", Credentials(api.api_url, token="bot-token"), client)
    event = _event()
    rep.report(event, failing(event.head_sha))
    rep.deployment(event, "production", "in_progress", "applying 3 objects")
    first, second = api.statuses
    assert (first["status"], first["context"], first["sha"]) == ("failure", "gitops-hooks", event.head_sha)
    assert len(first["description"]) <= 140 and first["description"].startswith("1 error")
    assert (second["status"], second["context"]) == ("pending", "gitops-hooks/production")
    assert api.calls("POST", "statuses")[0].path == f"/api/v1/repos/example/example/statuses/{event.head_sha}"
    assert api.requests[0].headers["authorization"] == "token bot-token"


def test_comment_round(api: GiteaDouble) -> None:
    client, _ = http()
    rep = gitea.reporter("gitea", "example/example", Credentials(api.api_url, token="bot-token"), client)
    reviewer = api.users["reviewer-token"]
    comment_round(Round(rep, _event(), lambda: [c for c in api.comments.values() if c["issue"] == 2],
                        lambda c: c["body"], lambda c: c["user"]["id"], 7,
                        lambda text: api.issue_comment(2, text, reviewer)), gitea.LIMITS.comment_chars)
    assert not api.rejected  # no edit of the reviewer's comment was even tried


def test_retries_after_500_and_429(api: GiteaDouble) -> None:
    client, sleeps = http()
    rep = gitea.reporter("gitea", "example/example", Credentials(api.api_url, token="bot-token"), client)
    event = _event()
    retry_round(api, "POST .*/statuses/", sleeps, lambda: rep.report(event, failing(event.head_sha)),
                lambda: len(api.statuses))


def test_bad_token_raises_so_the_job_stays_queued(api: GiteaDouble) -> None:
    client, _ = http()
    rep = gitea.reporter("gitea", "example/example", Credentials(api.api_url, token="wrong"), client)
    event = _event()
    with pytest.raises(HttpError, match="401"):
        rep.report(event, failing(event.head_sha))


def test_git_auth_header() -> None:
    client, _ = http()
    header = gitea.reporter("forgejo", "o/r", Credentials("http://h/api/v1", token="t0k"), client).git_auth_header()
    assert base64.b64decode(header.removeprefix("Basic ")) == b"t0k:x-oauth-basic"
    assert gitea.reporter("gitea", "o/r", Credentials("http://h/api/v1"), client).git_auth_header() == ""
