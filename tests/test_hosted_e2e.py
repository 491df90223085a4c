"""End to end: `gitops-hooks serve` as a real process, a real `file://` remote pushed to by real git, the
GitHub double for the platform, GitHub's documented payloads signed with the documented secret."""

from __future__ import annotations

import http.client
import os
import signal
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import BROKEN_DEPLOYMENT, DEPLOYMENT
from doubles.github import Account, GitHubDouble
from hostedkit import REPO, Remote, Service, app_key, encode, github_headers, pull_request, write_config

GOOD, BROKEN = DEPLOYMENT, BROKEN_DEPLOYMENT  # the Deployment most tests push; BROKEN fails at line 7
BROKEN_LINE = 7
APP_ID, INSTALLATION = 8123, 4567


@pytest.fixture
def double() -> Iterator[GitHubDouble]:
    d = GitHubDouble()
    yield d
    d.close()


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    r = Remote(tmp_path)
    r.write("apps/web.yaml", GOOD)
    r.commit("web")
    r.push("refs/heads/master")
    return r


def app_double(double: GitHubDouble) -> tuple[int, str, int]:
    private, public = app_key()
    double.app_id, double.public_key, double.installation_id = APP_ID, public, INSTALLATION
    return APP_ID, private, INSTALLATION


def open_request(remote: Remote, text: str, message: str, number: int = 2) -> str:
    remote.checkout("changes")
    remote.write("apps/web.yaml", text)
    sha = remote.commit(message)
    remote.push(f"refs/pull/{number}/head")  # what GitHub keeps for every pull request
    return sha


def runs_for(double: GitHubDouble, sha: str) -> list[dict[str, Any]]:
    return [r for r in double.check_runs.values() if r["head_sha"] == sha]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for s in started:
        s.stop()


def token_service(tmp_path: Path, double: GitHubDouble, remote: Remote, service: list[Service],
                  api_path: str = "") -> tuple[Service, str, Path]:
    """The service with token credentials (account gitops-bot), started; its config and the base tip."""
    double.tokens["ghp_test"] = Account("gitops-bot", 7)
    base = remote.rev("refs/heads/master")
    assert base
    config = write_config(tmp_path, remote.url, double.url + api_path, token="ghp_test")
    svc = Service(config).start()
    service.append(svc)
    return svc, base, config


def test_a_broken_request_fails_with_annotations_and_the_fix_passes_with_the_comment_edited(
        tmp_path: Path, double: GitHubDouble, remote: Remote, service: list[Service]) -> None:
    base = remote.rev("refs/heads/master")
    assert base
    foreign = double.add_comment(REPO, 2, "<!-- gitops-hooks:summary -->\nquoted by a reviewer", "octocat")
    svc = Service(write_config(tmp_path, remote.url, double.url, app=app_double(double))).start()
    service.append(svc)

    broken = open_request(remote, BROKEN, "scale web")
    assert svc.deliver("pull_request", encode(pull_request(broken, base)))[0] == 202
    run = double.wait_for(lambda: runs_for(double, broken))[0]
    assert run["conclusion"] == "failure" and run["name"] == "gitops-hooks"
    assert run["output"]["title"].startswith("checks failed: 1 error")
    notes = [(a["path"], a["start_line"], a["annotation_level"]) for a in run["annotations"]]
    assert ("apps/web.yaml", BROKEN_LINE, "failure") in notes
    comment = double.wait_for(lambda: [c for c in double.comments_on(REPO, 2) if c["id"] != foreign])[0]
    assert f"`apps/web.yaml:{BROKEN_LINE}:" in comment["body"] and "checks failed" in comment["body"]

    fixed = open_request(remote, GOOD.replace("replicas: 2", "replicas: 3"), "scale web, properly")
    status, _ = svc.deliver("pull_request", encode(pull_request(fixed, base, "synchronize")))
    assert status == 202
    run = double.wait_for(lambda: runs_for(double, fixed))[0]
    assert run["conclusion"] == "success" and run["annotations"] == []
    double.wait_for(lambda: "checks passed" in double.comments[comment["id"]]["body"])
    ours = [c for c in double.comments_on(REPO, 2) if c["id"] != foreign]
    assert len(ours) == 1 and double.comments[comment["id"]]["edits"] == 1  # edited in place, not a new one
    assert double.comments[foreign]["body"].endswith("quoted by a reviewer")  # another's comment untouched
    assert double.errors == []
    assert svc.terminate() == 0
    assert "outcome=failed" in svc.text() and "outcome=passed" in svc.text()


def test_with_a_token_a_commit_status_and_a_comment(tmp_path: Path, double: GitHubDouble, remote: Remote,
                                                     service: list[Service]) -> None:
    svc, base, _ = token_service(tmp_path, double, remote, service, "/api/v3")
    broken = open_request(remote, BROKEN, "scale web")
    body = encode(pull_request(broken, base))
    headers = github_headers("pull_request", body)
    assert svc.deliver("pull_request", body, headers)[0] == 202
    status = double.wait_for(lambda: [s for s in double.statuses if s["sha"] == broken])[0]
    assert (status["state"], status["context"]) == ("failure", "gitops-hooks")
    assert len(status["description"]) <= 140
    double.wait_for(lambda: double.comments_on(REPO, 2))
    assert svc.deliver("pull_request", body, headers)[0] == 200  # a redelivery: nothing posted again
    assert len([s for s in double.statuses if s["sha"] == broken]) == 1
    assert all(c.token == "Bearer ghp_test" for c in double.requests)
    assert "ghp_test" not in svc.text()


def test_kill_9_during_a_job_then_the_job_completes_once_after_a_restart(
        tmp_path: Path, double: GitHubDouble, remote: Remote, service: list[Service]) -> None:
    svc, base, config = token_service(tmp_path, double, remote, service)
    broken = open_request(remote, BROKEN, "scale web")
    double.hold(r"^POST /repos/.*/statuses/")  # the job is inside its report when the service dies
    assert svc.deliver("pull_request", encode(pull_request(broken, base)))[0] == 202
    assert double.wait_held(60), svc.text()
    svc.kill9()
    double.release()
    queue = sqlite3.connect(str(tmp_path / "state" / "queue.sqlite3"))
    assert queue.execute("SELECT state FROM jobs").fetchall() == [("running",)]
    assert double.statuses == []

    again = Service(config).start()
    service.append(again)
    double.wait_for(lambda: [s for s in double.statuses if s["sha"] == broken])
    double.wait_for(lambda: double.comments_on(REPO, 2))
    again.terminate()
    assert [s["state"] for s in double.statuses if s["sha"] == broken] == ["failure"]
    assert len(double.comments_on(REPO, 2)) == 1
    assert queue.execute("SELECT state, attempts FROM jobs").fetchall() == [("done", 2)]
    assert "queued again" in again.text()


def test_bad_input_over_http_gets_the_right_answers_and_sigterm_finishes_the_running_job(
        tmp_path: Path, double: GitHubDouble, remote: Remote, service: list[Service]) -> None:
    svc, base, _ = token_service(tmp_path, double, remote, service)
    good = encode(pull_request(open_request(remote, BROKEN, "scale web"), base))

    host, port = svc.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("POST", "/webhook")
    conn.putheader("Content-Length", str(26 * 1024 * 1024))
    conn.putheader("X-GitHub-Event", "push")
    conn.endheaders()
    assert conn.getresponse().status == 413  # answered before the body is read
    conn.close()
    assert svc.deliver("pull_request", b"{not json")[0] == 400
    assert svc.deliver("pull_request", good, github_headers("pull_request", good, secret="another"))[0] == 401
    assert svc.deliver("pull_request", good, {**github_headers("pull_request", good), "Content-Type": "text/html"})[0] == 415
    assert svc.deliver("issues", good)[0] == 204
    replayed = github_headers("pull_request", good)
    double.hold(r"^POST /repos/.*/statuses/", then_answer=True)
    assert svc.deliver("pull_request", good, replayed)[0] == 202  # the next valid delivery is served
    assert svc.deliver("pull_request", good, replayed)[0] == 200  # replayed: known, nothing posted again

    assert double.wait_held(60), svc.text()
    assert svc.proc is not None
    svc.proc.send_signal(15)
    time_left = 20.0
    while time_left > 0:  # the listener closes at once; the process waits for its worker's job
        try:
            urllib.request.urlopen(svc.url + "/healthz", timeout=1)
        except OSError:
            break
        time.sleep(0.1)
        time_left -= 0.1
    assert svc.proc.poll() is None
    double.release()
    assert svc.proc.wait(30) == 0
    assert [s["state"] for s in double.statuses] == ["failure"]
    log = svc.text()
    for answer in ("answer=413", "answer=400", "answer=401", "answer=415", "answer=204", "answer=202", "answer=200"):
        assert answer in log
    assert "outcome=failed" in log and "stopped" in log and "Traceback" not in log


def test_a_worker_that_dies_is_started_again_and_its_job_completes(
        tmp_path: Path, double: GitHubDouble, remote: Remote, service: list[Service]) -> None:
    svc, base, _ = token_service(tmp_path, double, remote, service)
    assert svc.proc is not None
    children = Path(f"/proc/{svc.proc.pid}/task/{svc.proc.pid}/children").read_text().split()
    assert len(children) == 1  # one worker process
    broken = open_request(remote, BROKEN, "scale web")
    double.hold(r"^POST /repos/.*/statuses/")
    assert svc.deliver("pull_request", encode(pull_request(broken, base)))[0] == 202
    assert double.wait_held(60)
    os.kill(int(children[0]), signal.SIGKILL)
    double.release()
    with pytest.raises(urllib.error.HTTPError) as down:  # noticed within a second
        for _ in range(30):
            urllib.request.urlopen(svc.url + "/healthz", timeout=2)
            time.sleep(0.1)
    assert down.value.code == 503
    double.wait_for(lambda: [s for s in double.statuses if s["sha"] == broken], timeout=60)
    assert [s["state"] for s in double.statuses] == ["failure"]
    assert urllib.request.urlopen(svc.url + "/healthz", timeout=2).status == 200
    assert svc.terminate() == 0
    assert "starting another (1 job(s) queued again)" in svc.text()
