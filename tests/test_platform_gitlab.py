"""GitLab: its real payloads with the secret token and with a Standard Webhooks signing token, parsed
into events; the reporter against a loopback double of the REST API v4."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from doubles.gitlab import GitLabDouble
from platform_cases import Round, comment_round, edited, failing, http, real, retry_round, summary

from gitops_hooks.hosted.http import HttpError
from gitops_hooks.hosted.model import Credentials, PayloadError
from gitops_hooks.hosted.platforms import gitlab

TOKEN = "gitlab secret token"  # a secret token may hold spaces
KEY = bytes(range(32))
SIGNING = "whsec_" + base64.b64encode(KEY).decode()
NOW = 1_765_000_000
PLATFORM = gitlab.GitLab(now=lambda: NOW)
MR = "gitlab-merge_request-open.json"
SHA = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"


def headers(event: str, token: str | None = TOKEN, **extra: str) -> dict[str, str]:
    out = {"content-type": "application/json", "x-gitlab-event": event, "x-gitlab-instance": "https://gitlab.example",
           "x-gitlab-webhook-uuid": "5e2a8d8a-0000-4000-8000-000000000001",
           "x-gitlab-event-uuid": "5e2a8d8a-0000-4000-8000-0000000000e1",
           "idempotency-key": "a4f0c6a2-6d8e-4c3b-9a53-2f7f0e4b1c11", "user-agent": "GitLab/18.6.0"}
    if token is not None:
        out["x-gitlab-token"] = token
    return {**out, **extra}


def signed(body: bytes, event: str, key: bytes = KEY, stamp: int = NOW, token: str | None = None) -> dict[str, str]:
    """As GitLab with a signing token signs (Standard Webhooks): v1,<base64 HMAC of id.timestamp.body>."""
    wid = "msg_2mBz0sVq7Hc1b7QAbW8E1Xk2mQa"
    sig = base64.b64encode(hmac.new(key, f"{wid}.{stamp}.".encode() + body, hashlib.sha256).digest()).decode()
    return headers(event, token, **{"webhook-id": wid, "webhook-timestamp": str(stamp),
                                    "webhook-signature": f"v1,{sig}"})


def test_matches_only_gitlab() -> None:
    assert PLATFORM.matches(headers("Push Hook"))
    assert not PLATFORM.matches({"x-github-event": "push"}) and not PLATFORM.matches({"x-event-key": "repo:push"})


def test_secret_token() -> None:
    body = real("gitlab-push.json")
    secret = TOKEN.encode()
    assert PLATFORM.verify(headers("Push Hook"), body, secret)
    assert not PLATFORM.verify(headers("Push Hook", "another token"), body, secret)
    assert not PLATFORM.verify(headers("Push Hook", None), body, secret)
    assert not PLATFORM.verify(headers("Push Hook"), body, b"  ")


def test_signing_token() -> None:
    body = real("gitlab-push.json")
    secret = SIGNING.encode()
    assert PLATFORM.verify(signed(body, "Push Hook"), body, secret)
    assert not PLATFORM.verify(signed(body, "Push Hook"), body.replace(b"Diaspora", b"Diasp0ra"), secret)  # tampered
    assert not PLATFORM.verify(signed(body, "Push Hook", key=b"another key"), body, secret)
    assert not PLATFORM.verify(signed(body, "Push Hook", stamp=NOW - 301), body, secret)  # replayed later
    assert not PLATFORM.verify(headers("Push Hook", None), body, secret)  # unsigned
    two = signed(body, "Push Hook")
    two["webhook-signature"] = "v1,bm90IGl0 " + two["webhook-signature"]  # rotation: one of several matches
    assert PLATFORM.verify(two, body, secret)
    assert not PLATFORM.verify({**two, "webhook-signature": two["webhook-signature"].replace("v1,", "v2,")},
                               body, secret)


def test_both_tokens_in_the_secret_file() -> None:
    body = real("gitlab-push.json")
    secret = f"{TOKEN}\n{SIGNING}".encode()
    assert PLATFORM.verify(signed(body, "Push Hook", token=TOKEN), body, secret)
    assert not PLATFORM.verify(signed(body, "Push Hook", token="wrong"), body, secret)
    assert not PLATFORM.verify(headers("Push Hook"), body, secret)  # the signature is missing


def test_delivery_id_is_the_idempotency_key() -> None:
    body = real("gitlab-push.json")
    assert PLATFORM.delivery_id(headers("Push Hook"), body) == "a4f0c6a2-6d8e-4c3b-9a53-2f7f0e4b1c11"
    retried = headers("Push Hook", **{"x-gitlab-webhook-uuid": "another-per-request-uuid"})
    assert PLATFORM.delivery_id(retried, body) == PLATFORM.delivery_id(headers("Push Hook"), body)
    bare = {k: v for k, v in headers("Push Hook").items() if k != "idempotency-key"}
    assert PLATFORM.delivery_id(bare, body).startswith("sha256:")


def test_push_event() -> None:
    body = real("gitlab-push.json")
    [event] = PLATFORM.parse(headers("Push Hook"), body)
    assert event.kind == "push" and event.platform == "gitlab"
    assert (event.repository, event.ref, event.before, event.after) == (
        "mike/diaspora", "refs/heads/master", "95790bf891e76fee5e1747ab589903a6a1f80f22", SHA)
    assert event.sender == "John Smith" and event.clone_url == "http://example.com/mike/diaspora.git"
    deleted = edited("gitlab-push.json", lambda d: d.update(after="0" * 40))
    assert PLATFORM.parse(headers("Push Hook"), deleted) == []


def test_merge_request_open() -> None:
    body = real(MR)
    [event] = PLATFORM.parse(headers("Merge Request Hook"), body)
    assert event.kind == "request" and event.action == "open"
    assert (event.repository, event.number, event.head_sha) == ("gitlabhq/gitlab-test", 1, SHA)
    assert (event.head_ref, event.base_ref) == ("refs/merge-requests/1/head", "refs/heads/master")
    assert not event.from_fork and event.title == "MS-Viewport" and event.sender == "root"


def test_merge_request_from_a_fork() -> None:
    body = edited(MR, lambda d: d["object_attributes"].update(source_project_id=15))
    [event] = PLATFORM.parse(headers("Merge Request Hook"), body)
    assert event.from_fork and event.head_ref == "refs/merge-requests/1/head"


def test_update_acted_on_only_with_a_new_commit() -> None:
    old = "95790bf891e76fee5e1747ab589903a6a1f80f22"
    pushed = edited(MR, lambda d: d["object_attributes"].update(action="update", oldrev=old))
    [event] = PLATFORM.parse(headers("Merge Request Hook"), pushed)
    assert event.action == "update"
    relabelled = edited(MR, lambda d: d["object_attributes"].update(action="update"))
    assert PLATFORM.parse(headers("Merge Request Hook"), relabelled) == []
    for action in ("close", "merge", "approved", "unapproved"):
        other = edited(MR, lambda d, a=action: d["object_attributes"].update(action=a))
        assert PLATFORM.parse(headers("Merge Request Hook"), other) == []
    assert PLATFORM.parse(headers("Note Hook"), real(MR)) == []
    assert PLATFORM.parse(headers("Pipeline Hook"), real(MR)) == []


def test_signed_bodies_that_are_not_payloads() -> None:
    for body in (b"\xff\xfe", b"null", b'{"object_kind": "push"}'):
        with pytest.raises(PayloadError):
            PLATFORM.parse(headers("Push Hook"), body)
    broken = edited(MR, lambda d: d["object_attributes"].pop("last_commit"))
    with pytest.raises(PayloadError, match="object_attributes.last_commit.id"):
        PLATFORM.parse(headers("Merge Request Hook"), broken)


# ---------------------------------------------------------------------------- the reporter

@pytest.fixture
def api() -> Iterator[GitLabDouble]:
    double = GitLabDouble()
    double.add_user("glpat-bot", "project_14_bot_1a2b", 41, bot=True)
    double.add_user("glpat-reviewer", "reviewer", 42)
    double.add_merge_request(1, "ms-viewport", SHA)
    yield double
    double.close()


def _reporter(api: GitLabDouble, token: str = "glpat-bot") -> tuple[Any, Any]:
    client, sleeps = http()
    return gitlab.reporter("gitlab", "gitlabhq/gitlab-test", Credentials(api.api_url, token=token), client), sleeps


def _event() -> Any:
    [event] = PLATFORM.parse(headers("Merge Request Hook"), real(MR))
    return event


def test_status_on_the_source_branch(api: GitLabDouble) -> None:
    rep, _ = _reporter(api)
    rep.report(_event(), failing(SHA))
    (status,) = api.statuses
    assert (status["status"], status["name"], status["ref"], status["sha"]) == ("failed", "gitops-hooks", "ms-viewport", SHA)
    assert status["description"].startswith("1 error") and status["author"]["id"] == 41
    assert api.calls("POST", "statuses")[0].raw_path == f"/api/v4/projects/gitlabhq%2Fgitlab-test/statuses/{SHA}"


def test_a_status_posted_again_is_not_an_error(api: GitLabDouble) -> None:
    rep, _ = _reporter(api)
    event = _event()
    pending = failing(SHA).__class__(sha=SHA, state="pending", title="checking", summary="")
    rep.report(event, pending)
    rep.report(event, pending)  # a retried job: GitLab answers 400 "Cannot transition status"
    assert [s["status"] for s in api.statuses] == ["pending"] and len(api.rejected) == 1
    rep.report(event, failing(SHA))
    assert [s["status"] for s in api.statuses] == ["pending", "failed"]


def test_deployment_status(api: GitLabDouble) -> None:
    rep, _ = _reporter(api)
    [push] = PLATFORM.parse(headers("Push Hook"), real("gitlab-push.json"))
    api.project = "mike/diaspora"
    rep = gitlab.reporter("gitlab", "mike/diaspora", rep.creds, rep.http)
    rep.deployment(push, "production", "in_progress", "applying")
    rep.deployment(push, "production", "success", "applied 3 objects")
    assert [(s["name"], s["status"], s["ref"]) for s in api.statuses] == [
        ("gitops-hooks/production", "running", "master"), ("gitops-hooks/production", "success", "master")]


def test_comment_round(api: GitLabDouble) -> None:
    rep, _ = _reporter(api)
    reviewer = api.users["glpat-reviewer"]
    comment_round(Round(rep, _event(), lambda: [n for n in api.notes.values() if n["mr"] == 1],
                        lambda n: n["body"], lambda n: n["author"]["id"], 41,
                        lambda text: api.note(1, text, reviewer)), gitlab.LIMITS.comment_chars)
    assert not api.rejected


def test_own_note_found_on_a_later_page(api: GitLabDouble) -> None:
    rep, _ = _reporter(api)
    bot, reviewer = api.users["glpat-bot"], api.users["glpat-reviewer"]
    for i in range(120):
        api.note(1, f"review remark {i}", reviewer)
    api.note(1, "added 1 commit", bot, system=True)
    for i in range(90):
        api.note(1, f"another remark {i}", reviewer)
    rep.comment(_event(), summary("1 error"))
    rep.comment(_event(), summary("all checks pass"))
    mine = [n for n in api.notes.values() if n["author"]["id"] == 41 and not n["system"]]
    assert len(mine) == 1 and "all checks pass" in mine[0]["body"]
    pages = [r.query["page"] for r in api.calls("GET", "/notes$")]
    assert pages == ["1", "2", "3", "1", "2", "3"]  # 212 notes in pages of 100, read to the end each time


def test_retries_after_500_and_429(api: GitLabDouble) -> None:
    rep, sleeps = _reporter(api)
    event = _event()
    retry_round(api, "POST .*/statuses/", sleeps, lambda: rep.report(event, failing(SHA)), lambda: len(api.statuses))


def test_refusals_raise(api: GitLabDouble) -> None:
    rep, _ = _reporter(api, token="glpat-unknown")
    with pytest.raises(HttpError, match="401"):
        rep.report(_event(), failing(SHA))
    rep, _ = _reporter(api)
    with pytest.raises(HttpError, match="400"):
        rep._status(SHA, "error", "gitops-hooks", "x", "ms-viewport")  # not a GitLab state
    assert json.dumps(api.rejected[-1][1]).count("state must be one of") == 1


def test_git_auth_header() -> None:
    client, _ = http()
    rep = gitlab.reporter("gitlab", "g/p", Credentials("https://gitlab.example/api/v4", token="glpat-x"), client)
    assert base64.b64decode(rep.git_auth_header().removeprefix("Basic ")) == b"oauth2:glpat-x"


def test_a_real_clock_takes_a_fresh_signature() -> None:
    body = real("gitlab-push.json")
    assert gitlab.PLATFORMS[0].verify(signed(body, "Push Hook", stamp=int(time.time())), body, SIGNING.encode())
