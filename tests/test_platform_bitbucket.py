"""Bitbucket Cloud and Data Center: their real payloads signed as they sign, parsed into events; the
reporters against loopback doubles of their REST APIs (build status, Code Insights, comments)."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from doubles.bitbucket import BitbucketCloudDouble, BitbucketDataCenterDouble, basic
from hostedkit import write_config
from platform_cases import Round, comment_round, edited, failing, http, real, retry_round, summary

from gitops_hooks.hosted.config import load
from gitops_hooks.hosted.model import Annotation, Credentials, PayloadError, Report
from gitops_hooks.hosted.platforms import bitbucket
from gitops_hooks.hosted.queue import Queue
from gitops_hooks.hosted.receiver import Receiver

SECRET = b"bitbucket-webhook-secret"
CLOUD, DC = bitbucket.PLATFORMS
SHA = "32a0b8a740c2963c6f56bd8baf3dc05683d299e0"
HIDDEN = "[//]: # (gitops-hooks:summary)"


def cloud_headers(body: bytes, key: str, secret: bytes = SECRET) -> dict[str, str]:
    return {"content-type": "application/json", "user-agent": "Bitbucket-Webhooks/2.0", "x-event-key": key,
            "x-request-uuid": "8c9a2f4e-1b7d-4c4e-9e1a-5d2f0b6a7c31", "x-attempt-number": "1",
            "x-hook-uuid": "{4f6e1c2a-9b8d-4e7f-a1c3-2d5e6f7a8b9c}",
            "x-hub-signature": "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()}


def dc_headers(body: bytes, key: str, secret: bytes = SECRET) -> dict[str, str]:
    return {"content-type": "application/json; charset=utf-8", "x-event-key": key,
            "x-request-id": "a1b2c3d4-0000-4000-8000-00000000dc01", "user-agent": "Atlassian HttpClient 4.2.0",
            "x-hub-signature": "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()}


def test_cloud_and_data_center_are_told_apart() -> None:
    body = b"{}"
    assert CLOUD.matches(cloud_headers(body, "repo:push")) and not DC.matches(cloud_headers(body, "repo:push"))
    assert DC.matches(dc_headers(body, "pr:opened")) and not CLOUD.matches(dc_headers(body, "pr:opened"))
    for other in ({"x-github-event": "push"}, {"x-gitlab-event": "Push Hook"}, {"x-gitea-event": "push"}):
        assert not CLOUD.matches(other) and not DC.matches(other)


@pytest.mark.parametrize("platform,make,name", [(CLOUD, cloud_headers, "bitbucket-cloud-repo_push.json"),
                                                (DC, dc_headers, "bitbucket-dc-pr_opened.json")])
def test_signature(platform: Any, make: Any, name: str) -> None:
    body = real(name)
    h = make(body, "repo:push")
    assert platform.verify(h, body, SECRET)
    assert not platform.verify(h, body.replace(b"a54f", b"a55f", 1) if b"a54f" in body else body + b" ", SECRET)
    assert not platform.verify(make(body, "repo:push", b"another secret"), body, SECRET)
    sha1 = {**h, "x-hub-signature": "sha1=" + hmac.new(SECRET, body, hashlib.sha1).hexdigest()}
    assert not platform.verify(sha1, body, SECRET)
    assert not platform.verify({k: v for k, v in h.items() if k != "x-hub-signature"}, body, SECRET)


def test_cloud_push() -> None:
    body = real("bitbucket-cloud-repo_push.json")
    [event] = CLOUD.parse(cloud_headers(body, "repo:push"), body)
    assert event.kind == "push" and event.platform == "bitbucket-cloud"
    assert (event.repository, event.ref) == ("team_name/repo_name", "refs/heads/name-of-branch")
    assert (event.before, event.after) == ("1e65c05c1d5171631d92438a13901ca7dae9618c",
                                           "709d658dc5b6d6afcd46049c2f332ee3f515a67d")
    assert event.delivery_id == "8c9a2f4e-1b7d-4c4e-9e1a-5d2f0b6a7c31" and event.sender == "emmap1"
    deleted = edited("bitbucket-cloud-repo_push.json", lambda d: d["push"]["changes"][0].update(new=None))
    assert CLOUD.parse(cloud_headers(deleted, "repo:push"), deleted) == []
    created = edited("bitbucket-cloud-repo_push.json", lambda d: d["push"]["changes"][0].update(old=None))
    [parsed] = CLOUD.parse(cloud_headers(created, "repo:push"), created)
    assert parsed.before == "0" * 40


def test_cloud_pull_request_keeps_short_hashes() -> None:
    body = real("bitbucket-cloud-pullrequest_created.json")
    [event] = CLOUD.parse(cloud_headers(body, "pullrequest:created"), body)
    assert event.kind == "request" and event.action == "pullrequest:created"
    assert (event.number, event.head_sha, event.base_sha) == (1, "d3022fc0ca3d", "ce5965ddd289")
    assert (event.head_ref, event.base_ref, event.from_fork) == ("refs/heads/branch2", "refs/heads/master", False)
    assert event.title == "Title of pull request"
    fork = edited("bitbucket-cloud-pullrequest_created.json",
                  lambda d: d["pullrequest"]["source"]["repository"].update(full_name="forker/repo_name"))
    [parsed] = CLOUD.parse(cloud_headers(fork, "pullrequest:updated"), fork)
    assert parsed.from_fork and parsed.head_ref == ""  # Cloud has no ref for it


def test_data_center_pull_request() -> None:
    body = real("bitbucket-dc-pr_opened.json")
    [event] = DC.parse(dc_headers(body, "pr:opened"), body)
    assert event.kind == "request" and event.platform == "bitbucket-datacenter"
    assert (event.repository, event.number, event.head_sha) == ("~gopher/webhook-test", 5, SHA)
    assert (event.head_ref, event.base_ref) == ("refs/pull-requests/5/from", "refs/heads/master")
    assert event.base_sha == "cde6c45a4210afe81638aa1f3aa960d633c66a90" and not event.from_fork
    assert event.sender == "gopher" and event.clone_url == "https://server.bitbucket.local/scm/~gopher/webhook-test.git"
    assert event.delivery_id == "a1b2c3d4-0000-4000-8000-00000000dc01"
    fork = edited("bitbucket-dc-pr_opened.json",
                  lambda d: d["pullRequest"]["fromRef"]["repository"]["project"].update(key="~tux"))
    [parsed] = DC.parse(dc_headers(fork, "pr:from_ref_updated"), fork)
    assert parsed.from_fork and parsed.head_ref == "refs/pull-requests/5/from"


def _refs_changed(d: dict[str, Any]) -> None:
    """repo:refs_changed as Data Center's event reference shows it, around the real payload's repository."""
    repo = d["pullRequest"]["toRef"]["repository"]
    d.clear()
    d.update({"eventKey": "repo:refs_changed", "date": "2019-03-01T10:31:15+0100",
              "actor": {"name": "gopher", "slug": "gopher", "id": 3231}, "repository": repo,
              "changes": [{"ref": {"id": "refs/tags/v1", "displayId": "v1", "type": "TAG"}, "refId": "refs/tags/v1",
                           "fromHash": "0" * 40, "toHash": SHA, "type": "ADD"},
                          {"ref": {"id": "refs/heads/master", "displayId": "master", "type": "BRANCH"},
                           "refId": "refs/heads/master", "fromHash": "cde6c45a4210afe81638aa1f3aa960d633c66a90",
                           "toHash": SHA, "type": "UPDATE"}]})


def test_data_center_push() -> None:
    body = edited("bitbucket-dc-pr_opened.json", _refs_changed)
    [event] = DC.parse(dc_headers(body, "repo:refs_changed"), body)
    assert event.kind == "push" and event.repository == "~gopher/webhook-test"
    assert (event.ref, event.before, event.after) == ("refs/heads/master", "cde6c45a4210afe81638aa1f3aa960d633c66a90", SHA)


RELEASE = "c4b2b7914156a878aa7c9da452a09fb50c2091f2"


def _two_branches_cloud(d: dict[str, Any]) -> None:
    """The real repo:push with a second change, as `git push origin name-of-branch release` sends it: the
    branch `release` created at another commit (Cloud names a created branch's `old` null)."""
    second = copy.deepcopy(d["push"]["changes"][0])
    second["new"]["name"], second["new"]["target"]["hash"], second["old"] = "release", RELEASE, None
    d["push"]["changes"].append(second)


def _two_branches_dc(d: dict[str, Any]) -> None:
    _refs_changed(d)
    d["changes"].append({"ref": {"id": "refs/heads/release", "displayId": "release", "type": "BRANCH"},
                         "refId": "refs/heads/release", "fromHash": "0" * 40, "toHash": RELEASE, "type": "ADD"})


@pytest.fixture
def receiver(tmp_path: Path) -> Receiver:
    (tmp_path / "bitbucket-secret").write_text(SECRET.decode() + "\n", encoding="utf-8")
    repos = [{"platform": "bitbucket-cloud", "repository": "team_name/repo_name", "clone_url": "file:///nowhere.git",
              "webhook_secret_file": "bitbucket-secret"},
             {"platform": "bitbucket-datacenter", "repository": "~gopher/webhook-test", "api_url": "http://127.0.0.1:9",
              "clone_url": "file:///nowhere.git", "webhook_secret_file": "bitbucket-secret"}]
    config = load(write_config(tmp_path, "file:///nowhere.git", "http://127.0.0.1:9", extra_repos=repos))
    return Receiver(config, Queue(tmp_path / "queue.sqlite3"))


@pytest.mark.parametrize("make,change,key,repo", [
    (cloud_headers, _two_branches_cloud, "repo:push", "bitbucket-cloud:team_name/repo_name"),
    (dc_headers, _two_branches_dc, "repo:refs_changed", "bitbucket-datacenter:~gopher/webhook-test")])
def test_a_push_of_two_branches_is_a_job_per_branch(receiver: Receiver, make: Any, change: Any, key: str,
                                                     repo: str) -> None:
    name = "bitbucket-cloud-repo_push.json" if key == "repo:push" else "bitbucket-dc-pr_opened.json"
    body = edited(name, change)
    headers = make(body, key)
    first = receiver.handle(headers, body)
    assert first.status == 202
    branch = "name-of-branch" if key == "repo:push" else "master"
    assert ("event", f"push:refs/heads/{branch},push:refs/heads/release") in first.fields
    jobs = [(r, purpose, sha) for _, r, purpose, sha, _, _ in receiver.queue.jobs()]
    assert jobs[1:] == [(repo, "push:refs/heads/release", RELEASE)] and jobs[0][1] == f"push:refs/heads/{branch}"
    assert receiver.handle(headers, body).status == 200  # a retry keeps its request id
    other_id = {k: v + "-resent" if k in ("x-request-uuid", "x-request-id") else v for k, v in headers.items()}
    assert receiver.handle(other_id, body).status == 200  # another id, but both jobs are known
    assert len(receiver.queue.jobs()) == 2
    # the jobs run one after the other (they share the repository's mirror), each once
    seen = []
    while (job := receiver.queue.claim(1)) is not None:
        seen.append((job.event.ref, job.event.after))
        receiver.queue.done(job)
    assert seen == [(f"refs/heads/{branch}", jobs[0][2]), ("refs/heads/release", RELEASE)]


def test_a_push_of_a_known_branch_and_a_new_one_queues_the_new_one(receiver: Receiver) -> None:
    one = edited("bitbucket-cloud-repo_push.json", lambda d: None)
    assert receiver.handle(cloud_headers(one, "repo:push"), one).status == 202
    two = edited("bitbucket-cloud-repo_push.json", _two_branches_cloud)
    headers = {**cloud_headers(two, "repo:push"), "x-request-uuid": "another-delivery"}
    assert receiver.handle(headers, two).status == 202
    assert [purpose for _, _, purpose, _, _, _ in receiver.queue.jobs()] == [
        "push:refs/heads/name-of-branch", "push:refs/heads/release"]


def test_events_not_acted_on_and_bad_bodies() -> None:
    body = real("bitbucket-dc-pr_opened.json")
    for key in ("pr:modified", "pr:merged", "pr:comment:added", "diagnostics:ping", "repo:modified"):
        assert DC.parse(dc_headers(body, key), body) == []
    cloud = real("bitbucket-cloud-pullrequest_created.json")
    for key in ("pullrequest:approved", "pullrequest:fulfilled", "repo:commit_status_updated"):
        assert CLOUD.parse(cloud_headers(cloud, key), cloud) == []
    with pytest.raises(PayloadError):
        CLOUD.parse(cloud_headers(b"<html>", "repo:push"), b"<html>")
    broken = edited("bitbucket-dc-pr_opened.json", lambda d: d["pullRequest"]["fromRef"].pop("latestCommit"))
    with pytest.raises(PayloadError, match="fromRef.latestCommit"):
        DC.parse(dc_headers(broken, "pr:opened"), broken)


# ---------------------------------------------------------------------------- reporters

def findings(failures: int, warnings: int) -> tuple[Annotation, ...]:
    fail = [Annotation(f"apps/f{i}.yaml", i + 1, "failure", "schema", "spec.replicas: 'two' is not of type 'integer'")
            for i in range(failures)]
    warn = [Annotation(f"apps/w{i}.yaml", 0, "warning", "deprecated-api", "x" * 3000) for i in range(warnings)]
    return tuple(warn + fail)  # warnings first: the reporter puts failures before them


@pytest.fixture
def cloud() -> Iterator[BitbucketCloudDouble]:
    double = BitbucketCloudDouble()
    double.add_user("Bearer repo-access-token", "repo-bot", 1)
    double.add_user(basic("reviewer", "app-password"), "reviewer", 2)
    yield double
    double.close()


def _cloud(api: BitbucketCloudDouble, token: str = "repo-access-token") -> Any:
    client, sleeps = http()
    return bitbucket.reporter("bitbucket-cloud", "team_name/repo_name", Credentials(api.api_url, token=token), client), sleeps


def _cloud_event() -> Any:
    body = real("bitbucket-cloud-pullrequest_created.json")
    [event] = CLOUD.parse(cloud_headers(body, "pullrequest:created"), body)
    return event


def test_cloud_build_status_and_report(cloud: BitbucketCloudDouble) -> None:
    rep, _ = _cloud(cloud)
    report = Report(sha=SHA, state="failure", title="3 errors", summary="apps/f0.yaml:1 schema ...",
                    annotations=findings(3, 0))
    rep.report(_cloud_event(), report)
    status = cloud.statuses[(SHA, "gitops-hooks")]
    assert status["state"] == "FAILED" and status["url"].endswith(f"/team_name/repo_name/commits/{SHA}")
    stored = cloud.reports[(SHA, "gitops-hooks")]
    assert (stored["result"], stored["report_type"], len(stored["annotations"])) == ("FAILED", "BUG", 3)
    note = stored["annotations"]["gitops-hooks-0000"]
    assert (note["path"], note["line"], note["severity"], note["result"]) == ("apps/f0.yaml", 1, "HIGH", "FAILED")
    rep.report(_cloud_event(), Report(sha=SHA, state="success", title="all checks pass", summary="ok"))
    assert cloud.statuses[(SHA, "gitops-hooks")]["state"] == "SUCCESSFUL"  # the same key, overwritten
    assert cloud.reports[(SHA, "gitops-hooks")]["result"] == "PASSED"


def test_cloud_annotations_batched_and_capped(cloud: BitbucketCloudDouble) -> None:
    rep, _ = _cloud(cloud)
    rep.report(_cloud_event(), Report(sha=SHA, state="failure", title="1,500 findings", summary="many",
                                      annotations=findings(600, 900)))
    posts = cloud.calls("POST", "/annotations$")
    assert [len(p.json) for p in posts] == [100] * 10  # at most 100 per request, 1,000 per report
    stored = cloud.reports[(SHA, "gitops-hooks")]
    assert len(stored["annotations"]) == 1000 and not cloud.rejected
    assert sum(a["severity"] == "HIGH" for a in stored["annotations"].values()) == 600  # every failure kept
    assert "500 more findings are not annotated" in stored["details"] and len(stored["details"]) <= 2000
    assert all(len(a["summary"]) <= 450 for a in stored["annotations"].values())


def test_cloud_deployment(cloud: BitbucketCloudDouble) -> None:
    rep, _ = _cloud(cloud)
    body = real("bitbucket-cloud-repo_push.json")
    [push] = CLOUD.parse(cloud_headers(body, "repo:push"), body)
    rep.deployment(push, "production", "failure", "not applied: the commit fails its checks")
    status = cloud.statuses[(push.after, "gitops-hooks/production")]
    assert status["state"] == "FAILED" and status["description"].startswith("not applied")


def test_cloud_comment_round(cloud: BitbucketCloudDouble) -> None:
    rep, _ = _cloud(cloud)
    reviewer = cloud.users[basic("reviewer", "app-password")]
    for i in range(150):  # the service's comment is on the second page of 100
        cloud.pr_comment(1, f"remark {i}", reviewer)
    me = cloud.users["Bearer repo-access-token"]["uuid"]
    comment_round(Round(rep, _cloud_event(), lambda: [c for c in cloud.comments.values() if c["pullrequest"]["id"] == 1
                                                      and not c["content"]["raw"].startswith("remark")],
                        lambda c: c["content"]["raw"], lambda c: c["user"]["uuid"], me,
                        lambda text: cloud.pr_comment(1, text, reviewer), HIDDEN), bitbucket.LIMITS.comment_chars)
    assert not cloud.rejected
    assert {r.query.get("page") for r in cloud.calls("GET", "/comments$")} == {None, "2"}


def test_cloud_app_password_and_git_auth(cloud: BitbucketCloudDouble) -> None:
    rep, _ = _cloud(cloud, token="reviewer:app-password")
    rep.comment(_cloud_event(), summary("1 error"))
    (posted,) = cloud.comments.values()
    assert posted["user"]["nickname"] == "reviewer" and posted["content"]["raw"].startswith(HIDDEN + "\n")
    assert base64.b64decode(rep.git_auth_header().removeprefix("Basic ")) == b"reviewer:app-password"
    rep, _ = _cloud(cloud)
    assert base64.b64decode(rep.git_auth_header().removeprefix("Basic ")) == b"x-token-auth:repo-access-token"


def test_cloud_retries(cloud: BitbucketCloudDouble) -> None:
    rep, sleeps = _cloud(cloud)
    retry_round(cloud, "POST .*/statuses/build", sleeps, lambda: rep.report(_cloud_event(), failing(SHA)),
                lambda: len(cloud.calls("POST", "/statuses/build$")))


@pytest.fixture
def dc() -> Iterator[BitbucketDataCenterDouble]:
    double = BitbucketDataCenterDouble()
    double.add_user("http-access-token", "gitops-bot", 31)
    double.add_user("reviewer-token", "tux", 32)
    yield double
    double.close()


def _dc(api: BitbucketDataCenterDouble) -> Any:
    client, sleeps = http()
    creds = Credentials(api.api_url, token="http-access-token")
    return bitbucket.reporter("bitbucket-datacenter", "~gopher/webhook-test", creds, client), sleeps


def _dc_event() -> Any:
    body = real("bitbucket-dc-pr_opened.json")
    [event] = DC.parse(dc_headers(body, "pr:opened"), body)
    return event


def test_dc_build_status_and_insights(dc: BitbucketDataCenterDouble) -> None:
    rep, _ = _dc(dc)
    long_title = "3 errors: " + "apps/web.yaml:7 replicas is not an integer; " * 20
    rep.report(_dc_event(), Report(sha=SHA, state="failure", title=long_title, summary="see the comment",
                                   annotations=findings(1200, 300)))
    (build,) = dc.builds
    assert (build["state"], build["key"], build["sha"]) == ("FAILED", "gitops-hooks", SHA)
    assert len(build["description"]) <= 255 and build["url"].endswith(f"/projects/~gopher/repos/webhook-test/commits/{SHA}")
    report = dc.reports[(SHA, "gitops-hooks")]
    assert report["result"] == "FAIL" and len(report["annotations"]) == 1000 and not dc.rejected
    assert "500 more findings are not annotated" in report["details"]
    assert all(n["severity"] == "HIGH" for n in report["annotations"].values())  # 1,200 failures: the first 1,000
    calls = [(r.method, r.path.rsplit("/", 1)[-1]) for r in dc.calls(pattern="/insights/")]
    assert calls[:3] == [("PUT", "gitops-hooks"), ("DELETE", "annotations"), ("POST", "annotations")]
    rep.report(_dc_event(), Report(sha=SHA, state="failure", title="again", summary="", annotations=findings(2, 0)))
    assert len(dc.reports[(SHA, "gitops-hooks")]["annotations"]) == 2  # the old ones were deleted first


@pytest.mark.parametrize("ausername", [True, False])
def test_dc_comment_round(dc: BitbucketDataCenterDouble, ausername: bool) -> None:
    dc.send_ausername = ausername
    rep, _ = _dc(dc)
    tux = dc.users["reviewer-token"]
    for _ in range(120):
        dc.pr_event(5, "RESCOPED", tux)
    comment_round(Round(rep, _dc_event(), lambda: [c for c in dc.comments.values() if c["pr"] == 5],
                        lambda c: c["text"], lambda c: c["author"]["name"], "gitops-bot",
                        lambda text: dc.pr_comment(5, text, tux), HIDDEN), bitbucket.LIMITS.comment_chars)
    assert not dc.rejected
    mine = [c for c in dc.comments.values() if c["author"]["name"] == "gitops-bot"]
    assert mine[0]["version"] == 2  # edited twice, each time with the version it had
    assert bool(dc.calls("GET", "whoami")) is not ausername  # asked only when the answers do not say


def test_dc_deployment_and_retries(dc: BitbucketDataCenterDouble) -> None:
    rep, sleeps = _dc(dc)
    body = edited("bitbucket-dc-pr_opened.json", _refs_changed)
    [push] = DC.parse(dc_headers(body, "repo:refs_changed"), body)
    retry_round(dc, "POST .*/builds", sleeps, lambda: rep.deployment(push, "staging", "success", "applied"),
                lambda: len(dc.builds))
    assert (dc.builds[-1]["key"], dc.builds[-1]["state"]) == ("gitops-hooks/staging", "SUCCESSFUL")
    assert rep.git_auth_header() == "Bearer http-access-token"
    assert json.loads(json.dumps(dc.requests[-1].headers))["authorization"] == "Bearer http-access-token"
