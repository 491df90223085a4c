"""The receiver and the durable queue: GitHub's real payloads signed as GitHub signs them, every answer
the service gives (202, 200, 204, 400, 401, 415), duplicates, supersession, and `serve --check`."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest
from conftest import run_suite
from hostedkit import REPO, SECRET, WEBHOOKS, encode, github_headers, payload, pull_request, push, write_config

from gitops_hooks.hosted.config import ServeConfigError, load
from gitops_hooks.hosted.platforms import detect
from gitops_hooks.hosted.platforms.github import GitHub
from gitops_hooks.hosted.queue import Queue
from gitops_hooks.hosted.receiver import Receiver

HEAD = "a" * 40
BASE = "b" * 40


@pytest.fixture
def receiver(tmp_path: Path) -> Receiver:
    config = load(write_config(tmp_path, "file:///nowhere.git", "http://127.0.0.1:9", token="t"))
    return Receiver(config, Queue(tmp_path / "queue.sqlite3"))


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def deliver(receiver: Receiver, event: str, body: bytes, **kw: str) -> int:
    return receiver.handle(lower(github_headers(event, body, **kw)), body).status


def test_the_real_pull_request_is_queued_once_and_a_redelivery_is_200(receiver: Receiver) -> None:
    body = encode(pull_request(HEAD, BASE))
    headers = lower(github_headers("pull_request", body))
    first = receiver.handle(headers, body)
    assert (first.status, first.text) == (202, "queued\n")
    assert ("outcome", "queued") in first.fields and ("repository", REPO) in first.fields
    assert receiver.handle(headers, body).status == 200  # the same X-GitHub-Delivery
    assert deliver(receiver, "pull_request", body) == 200  # another delivery id, same commit and request
    assert receiver.queue.jobs() == [(1, f"github:{REPO.lower()}", "request:2", HEAD, "queued", 0)]


def test_a_newer_commit_supersedes_the_queued_older_one(receiver: Receiver) -> None:
    assert deliver(receiver, "pull_request", encode(pull_request(HEAD, BASE))) == 202
    assert deliver(receiver, "pull_request", encode(pull_request("c" * 40, BASE, "synchronize"))) == 202
    states = [(sha[:1], state) for _, _, _, sha, state, _ in receiver.queue.jobs()]
    assert states == [("a", "superseded"), ("c", "queued")]
    job = receiver.queue.claim(1)
    assert job.sha == "c" * 40 and job.event.action == "synchronize"
    assert receiver.queue.claim(2) is None  # one job at a time per repository


def test_ping_and_a_deleted_tag_are_not_acted_on(receiver: Receiver) -> None:
    ping = json.dumps({"zen": "Design for failure.", "hook_id": 1, "repository": {"full_name": REPO}}).encode()
    assert deliver(receiver, "ping", ping) == 204
    example = (WEBHOOKS / "github-push.json").read_bytes()  # GitHub's example: refs/tags/simple-tag deleted
    assert deliver(receiver, "push", example) == 204
    assert receiver.queue.jobs() == []


def test_signatures_are_checked_before_anything_parses_the_body(receiver: Receiver) -> None:
    body = encode(pull_request(HEAD, BASE))
    assert deliver(receiver, "pull_request", body, secret="another secret") == 401
    headers = lower(github_headers("pull_request", body))
    del headers["x-hub-signature-256"]
    headers["x-hub-signature"] = "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    refused = receiver.handle(headers, body)
    assert (refused.status, refused.text) == (401, "")  # sha1 alone is not enough, and no detail is given
    assert deliver(receiver, "pull_request", b"{not json", secret="wrong") == 401  # not parsed: not 400
    assert receiver.queue.jobs() == []


def test_bad_bodies_get_the_right_answers_and_the_next_delivery_is_served(receiver: Receiver) -> None:
    bad = receiver.handle(lower(github_headers("pull_request", b"{not json")), b"{not json")
    assert bad.status == 400 and "not a github payload: the body is not JSON" in bad.text
    no_pr = encode({"action": "opened", "repository": {"full_name": REPO}})
    assert deliver(receiver, "pull_request", no_pr) == 400
    form = encode(pull_request(HEAD, BASE))
    headers = lower(github_headers("pull_request", form))
    headers["content-type"] = "application/x-www-form-urlencoded"
    answer = receiver.handle(headers, form)
    assert answer.status == 415 and "application/json" in answer.text
    other = pull_request(HEAD, BASE)
    other["repository"]["full_name"] = "someone/else"
    assert deliver(receiver, "pull_request", encode(other)) == 401  # an unconfigured repository: no detail
    moved = pull_request(HEAD, BASE)
    moved["repository"]["clone_url"] = "https://evil.example/x.git"
    answer = receiver.handle(lower(github_headers("pull_request", encode(moved))), encode(moved))
    assert answer.status == 202 and ("note", "payload-clone-url-ignored") in answer.fields
    job = receiver.queue.claim(1)
    assert job.event.clone_url == "https://evil.example/x.git"  # kept for the log only


def test_gitea_headers_are_not_taken_for_github() -> None:
    body = (WEBHOOKS / "gitea-push.json").read_bytes()
    headers = lower(github_headers("push", body))
    headers.update({"x-gitea-event": "push", "x-gitea-delivery": "d", "x-gitea-signature": "00"})
    found = detect(headers)
    assert found is None or found.name in ("gitea", "forgejo")
    assert detect(lower(github_headers("push", body))).name == "github"  # type: ignore[union-attr]


def test_github_parses_its_documented_payloads() -> None:
    body = (WEBHOOKS / "github-pull_request-synchronize.json").read_bytes()
    [event] = GitHub().parse(lower(github_headers("pull_request", body, delivery="d-1")), body)
    assert (event.kind, event.number, event.head_ref, event.base_ref, event.from_fork, event.delivery_id) == \
        ("request", 2, "refs/pull/2/head", "refs/heads/master", False, "d-1")
    assert event.head_sha == payload("github-pull_request-synchronize.json")["pull_request"]["head"]["sha"]
    [fork] = GitHub().parse(lower(github_headers("pull_request", encode(pull_request(HEAD, BASE, fork=True)))),
                          encode(pull_request(HEAD, BASE, fork=True)))
    assert fork.from_fork
    [pushed] = GitHub().parse(lower(github_headers("push", encode(push("refs/heads/master", BASE, HEAD)))),
                            encode(push("refs/heads/master", BASE, HEAD)))
    assert (pushed.kind, pushed.ref, pushed.after) == ("push", "refs/heads/master", HEAD)


# ---------------------------------------------------------------------------- serve --check

def test_serve_check_accepts_a_good_file_and_names_the_field_of_a_bad_one(tmp_path: Path) -> None:
    config = write_config(tmp_path, "file:///x.git", "https://ghe.example/api/v3", token="tok",
                          policy={"kubernetes_version": "1.29", "rules": {"secret-plaintext": "error"}})
    ok = run_suite("serve", "--config", str(config), "--check")
    assert ok.returncode == 0, ok.stderr
    assert f"github {REPO}: file:///x.git (token; API https://ghe.example/api/v3" in ok.stdout
    assert "tok" not in ok.stdout.replace("token", "")  # the token itself is never shown

    text = config.read_text().replace("kubernetes_version: '1.29'", "kubernetes_versoin: '1.29'")
    config.write_text(text)
    bad = run_suite("serve", "--config", str(config), "--check")
    assert bad.returncode == 2 and "repositories/0" in bad.stderr and "kubernetes_versoin" in bad.stderr

    (tmp_path / "secret").unlink()
    config.write_text(text.replace("kubernetes_versoin", "kubernetes_version"))
    gone = run_suite("serve", "--config", str(config), "--check")
    assert gone.returncode == 2 and "webhook_secret_file: cannot read" in gone.stderr

    (tmp_path / "secret").write_text("s")
    config.write_text(text.replace("platform: github", "platform: bitbucket-datacenter")
                      .replace("  api_url: https://ghe.example/api/v3\n", "").replace("kubernetes_versoin", "kubernetes_version"))
    with pytest.raises(ServeConfigError, match="api_url is required for bitbucket-datacenter"):
        load(config)
    config.write_text("listen: 127.0.0.1:8080\nrepositories: []\n")
    empty = run_suite("serve", "--config", str(config), "--check")
    assert empty.returncode == 2 and "repositories" in empty.stderr


def test_serve_check_says_what_a_mistyped_value_should_be(tmp_path: Path) -> None:
    config = write_config(tmp_path, "file:///x.git", "https://ghe.example/api/v3", token="tok")
    text = config.read_text()
    config.write_text(text.replace("platform: github", "platform: githb").replace(REPO, "Hello-World")
                      .replace("listen: 127.0.0.1:", "listen: localhost-"))
    bad = run_suite("serve", "--config", str(config), "--check")
    assert bad.returncode == 2, bad.stderr
    lines = bad.stderr.splitlines()
    assert f"{config}: repositories/0/platform: \"githb\" is not one of github, gitlab, bitbucket-cloud, " \
        "bitbucket-datacenter, gitea, forgejo" in bad.stderr
    assert any(line.endswith('repositories/0/repository: "Hello-World" is not owner/name (GitHub, Gitea, '
                             'Forgejo), group/project (GitLab), workspace/slug (Bitbucket Cloud) or PROJECT/slug '
                             '(Bitbucket Data Center)') for line in lines)
    assert any(f"{config}: listen: " in line and "is not HOST:PORT" in line for line in lines)


def test_serve_refuses_a_state_folder_in_use_or_unusable_with_one_line(tmp_path: Path) -> None:
    from hostedkit import Service

    config = write_config(tmp_path, "file:///x.git", "http://127.0.0.1:9", token="t")
    first = Service(config).start()
    try:
        second = run_suite("serve", "--config", str(config))
        assert second.returncode == 2
        assert "is in use by another gitops-hooks serve" in second.stderr and "Traceback" not in second.stderr
    finally:
        assert first.terminate() == 0
    (tmp_path / "state").rename(tmp_path / "moved")
    (tmp_path / "state").write_text("a file, not a folder")
    broken = run_suite("serve", "--config", str(config))
    assert broken.returncode == 2 and "cannot be used" in broken.stderr and "Traceback" not in broken.stderr


def test_the_hook_path_never_loads_the_services_libraries() -> None:
    import subprocess
    import sys

    code = ("import sys, gitops_hooks.cli, gitops_hooks.prereceive, gitops_hooks.postreceive, "
            "gitops_hooks.hosted.receiver, gitops_hooks.hosted.platforms.github, gitops_hooks.hosted.jobs\n"
            "print(sorted(m for m in ('aiohttp', 'jwt', 'cryptography') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_old_finished_jobs_and_delivery_ids_are_forgotten(receiver: Receiver) -> None:
    assert deliver(receiver, "pull_request", encode(pull_request(HEAD, BASE))) == 202
    job = receiver.queue.claim(1)
    receiver.queue.done(job)
    assert receiver.queue.prune(days=30) == 0  # recent: kept, a redelivery is still a duplicate
    assert deliver(receiver, "pull_request", encode(pull_request(HEAD, BASE))) == 200
    assert receiver.queue.prune(days=-1) == 1
    assert receiver.queue.jobs() == []
