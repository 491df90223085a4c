"""End to end on GitLab, Bitbucket Cloud, Bitbucket Data Center and Gitea: `gitops-hooks serve` as a real
process, a real `file://` remote pushed to by real git at the ref each platform keeps for a request, each
platform's real payload (its commits replaced by the remote's) signed as the platform signs, and the
platform's loopback double. A broken request gets a failing check with the finding at file:line and a
comment; the fixing commit gets success, with the same comment edited in place."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("gitops_hooks.hosted.receiver", reason="the webhook service is not in this tree")
hostedkit = pytest.importorskip("hostedkit", reason="the webhook service's test kit is not in this tree")

import yaml  # noqa: E402
from conftest import BROKEN_DEPLOYMENT, DEPLOYMENT  # noqa: E402
from doubles.bitbucket import BitbucketCloudDouble, BitbucketDataCenterDouble  # noqa: E402
from doubles.gitea import GiteaDouble  # noqa: E402
from doubles.gitlab import GitLabDouble  # noqa: E402
from platform_cases import edited  # noqa: E402

GOOD, BROKEN = DEPLOYMENT, BROKEN_DEPLOYMENT  # BROKEN fails at apps/web.yaml:7
SECRET = "a webhook secret"
TOKEN = "the-service-token"


def _sha256_hex(body: bytes) -> str:
    return hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Case:
    """One platform: how its double is made, where its request lives, how it delivers and what it shows."""

    platform: str
    repository: str
    head_ref: str  # where the platform keeps the request's head
    double: Callable[[], Any]
    body: Callable[[str, str, bool], bytes]  # (head, base, update) -> a delivery's body
    headers: Callable[[bytes, bool], dict[str, str]]
    status: Callable[[Any, str], str]  # the double's check state for a commit ('' when none yet)
    comments: Callable[[Any], list[str]]  # the texts of the service's own comments
    failed: str
    passed: str


def _gitlab(project: str = "gitlabhq/gitlab-test") -> GitLabDouble:
    d = GitLabDouble(project=project)
    d.add_user(TOKEN, "project_14_bot", 41, bot=True)
    d.add_merge_request(1, "changes", "")
    return d


def _gitlab_body(head: str, base: str, update: bool) -> bytes:
    def change(d: dict[str, Any]) -> None:
        d["object_attributes"]["last_commit"]["id"] = head
        if update:
            d["object_attributes"].update(action="update", oldrev=base)
    return edited("gitlab-merge_request-open.json", change)


def _gitlab_headers(body: bytes, update: bool) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Gitlab-Event": "Merge Request Hook", "X-Gitlab-Token": SECRET,
            "Idempotency-Key": str(uuid.uuid4()), "X-Gitlab-Webhook-UUID": str(uuid.uuid4())}


def _gitlab_status(d: GitLabDouble, sha: str) -> str:
    return next((s["status"] for s in reversed(d.statuses) if s["sha"] == sha and s["name"] == "gitops-hooks"), "")


def _cloud() -> BitbucketCloudDouble:
    d = BitbucketCloudDouble()
    d.add_user(f"Bearer {TOKEN}", "repo-bot", 1)
    return d


def _cloud_body(head: str, base: str, update: bool) -> bytes:
    def change(d: dict[str, Any]) -> None:  # Cloud sends 12-character hashes
        d["pullrequest"]["source"]["commit"]["hash"] = head[:12]
        d["pullrequest"]["destination"]["commit"]["hash"] = base[:12]
    return edited("bitbucket-cloud-pullrequest_created.json", change)


def _cloud_headers(body: bytes, update: bool) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Event-Key": "pullrequest:updated" if update else "pullrequest:created",
            "X-Request-UUID": str(uuid.uuid4()), "X-Hook-UUID": "{4f6e1c2a-9b8d-4e7f-a1c3-2d5e6f7a8b9c}",
            "X-Attempt-Number": "1", "X-Hub-Signature": "sha256=" + _sha256_hex(body)}


def _cloud_status(d: BitbucketCloudDouble, sha: str) -> str:
    return str((d.statuses.get((sha, "gitops-hooks")) or {}).get("state", ""))


def _dc() -> BitbucketDataCenterDouble:
    d = BitbucketDataCenterDouble()
    d.add_user(TOKEN, "gitops-bot", 31)
    return d


def _dc_body(head: str, base: str, update: bool) -> bytes:
    def change(d: dict[str, Any]) -> None:
        d["pullRequest"]["fromRef"]["latestCommit"], d["pullRequest"]["toRef"]["latestCommit"] = head, base
        if update:
            d.update(eventKey="pr:from_ref_updated", previousFromHash=base)
    return edited("bitbucket-dc-pr_opened.json", change)


def _dc_headers(body: bytes, update: bool) -> dict[str, str]:
    return {"Content-Type": "application/json; charset=utf-8", "X-Request-Id": str(uuid.uuid4()),
            "X-Event-Key": "pr:from_ref_updated" if update else "pr:opened",
            "X-Hub-Signature": "sha256=" + _sha256_hex(body)}


def _dc_status(d: BitbucketDataCenterDouble, sha: str) -> str:
    return next((b["state"] for b in reversed(d.builds) if b["sha"] == sha and b["key"] == "gitops-hooks"), "")


def _gitea() -> GiteaDouble:
    d = GiteaDouble()
    d.add_user(TOKEN, "gitops-bot", 7)
    return d


def _gitea_body(head: str, base: str, update: bool) -> bytes:
    def change(d: dict[str, Any]) -> None:
        pr = d["pull_request"]
        pr["head"]["repo"], pr["head"]["sha"], pr["base"]["sha"] = pr["base"]["repo"], head, base
        d["action"] = "synchronized" if update else "opened"
    return edited("gitea-pull_request-from-fork.json", change)


def _gitea_headers(body: bytes, update: bool) -> dict[str, str]:
    sig, delivery = _sha256_hex(body), str(uuid.uuid4())
    return {"Content-Type": "application/json", "X-GitHub-Event": "pull_request", "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": "sha256=" + sig, "X-Gitea-Event": "pull_request", "X-Gitea-Delivery": delivery,
            "X-Gitea-Signature": sig}


def _gitea_status(d: GiteaDouble, sha: str) -> str:
    return next((s["status"] for s in reversed(d.statuses) if s["sha"] == sha and s["context"] == "gitops-hooks"), "")


CASES = [
    Case("gitlab", "gitlabhq/gitlab-test", "refs/merge-requests/1/head", _gitlab, _gitlab_body, _gitlab_headers,
         _gitlab_status, lambda d: [n["body"] for n in d.notes.values() if n["author"]["id"] == 41],
         "failed", "success"),
    Case("bitbucket-cloud", "team_name/repo_name", "refs/heads/branch2", _cloud, _cloud_body, _cloud_headers,
         _cloud_status, lambda d: [c["content"]["raw"] for c in d.comments.values() if c["user"]["nickname"] == "repo-bot"],
         "FAILED", "SUCCESSFUL"),
    Case("bitbucket-datacenter", "~gopher/webhook-test", "refs/pull-requests/5/from", _dc, _dc_body, _dc_headers,
         _dc_status, lambda d: [c["text"] for c in d.comments.values() if c["author"]["name"] == "gitops-bot"],
         "FAILED", "SUCCESSFUL"),
    Case("gitea", "example/example", "refs/pull/2/head", _gitea, _gitea_body, _gitea_headers, _gitea_status,
         lambda d: [c["body"] for c in d.comments.values() if c["user"]["id"] == 7], "failure", "success"),
]


def wait_for(what: Callable[[], Any], service: Any, timeout: float = 90) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = what()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError("timed out; the service said:\n" + service.text()[-3000:])


@pytest.fixture
def started() -> Iterator[list[Any]]:
    things: list[Any] = []
    yield things
    for thing in things:
        thing.stop() if hasattr(thing, "stop") else thing.close()


def serve(case: Case, tmp_path: Path, started: list[Any]) -> tuple[Any, Any, str, Any]:
    """The double, a remote with a good master, and the service configured for the platform."""
    double = case.double()
    started.append(double)
    remote = hostedkit.Remote(tmp_path)
    remote.write("apps/web.yaml", GOOD)
    base = remote.commit("web")
    remote.push("refs/heads/master")
    (tmp_path / "secret").write_text(SECRET + "\n", encoding="utf-8")
    (tmp_path / "token").write_text(TOKEN + "\n", encoding="utf-8")
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({
        "listen": f"127.0.0.1:{hostedkit.free_port()}", "state_dir": "state",
        "repositories": [{"platform": case.platform, "repository": case.repository, "clone_url": remote.url,
                          "api_url": double.api_url, "webhook_secret_file": "secret", "token_file": "token"}]}))
    service = hostedkit.Service(config).start()
    started.append(service)
    remote.checkout("changes")
    return double, remote, base, service


def request(case: Case, remote: Any, service: Any, base: str, text: str, update: bool) -> str:
    """Push a commit to the request's ref and deliver the platform's event for it."""
    remote.write("apps/web.yaml", text)
    sha = remote.commit("scale web")
    remote.push(case.head_ref)
    body = case.body(sha, base, update)
    assert service.deliver("", body, case.headers(body, update))[0] == 202
    return str(sha)


@pytest.mark.parametrize("case", CASES, ids=[c.platform for c in CASES])
def test_a_broken_request_fails_and_the_fix_passes_with_the_comment_edited(
        case: Case, tmp_path: Path, started: list[Any]) -> None:
    double, remote, base, service = serve(case, tmp_path, started)
    broken = request(case, remote, service, base, BROKEN, False)
    assert wait_for(lambda: case.status(double, broken) == case.failed, service)
    (first,) = wait_for(lambda: case.comments(double), service)
    assert "apps/web.yaml:7" in first

    fixed = request(case, remote, service, base, GOOD.replace("replicas: 2", "replicas: 3"), True)
    assert wait_for(lambda: case.status(double, fixed) == case.passed, service)
    wait_for(lambda: case.comments(double) != [first], service)
    (second,) = case.comments(double)  # edited in place: still one comment of the service's
    assert "apps/web.yaml:7" not in second
    assert not double.rejected, double.rejected  # nothing the platform would have refused
    assert service.terminate() == 0
    assert "outcome=failed" in service.text() and "outcome=passed" in service.text()


def test_the_bitbucket_cloud_report_carries_the_annotation(tmp_path: Path, started: list[Any]) -> None:
    """Code Insights on the broken commit: the finding at file:line, as Bitbucket shows it in the diff."""
    case = CASES[1]
    double, remote, base, service = serve(case, tmp_path, started)
    broken = request(case, remote, service, base, BROKEN, False)
    report = wait_for(lambda: double.reports.get((broken, "gitops-hooks")), service)
    wait_for(lambda: report["annotations"], service)
    notes = [(a["path"], a.get("line"), a["severity"]) for a in report["annotations"].values()]
    assert ("apps/web.yaml", 7, "HIGH") in notes and report["result"] == "FAILED"


# ---------------------------------------------------------------------------- pushes to a deployed ref

NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n"
ZERO = "0" * 40


@dataclass
class PushCase:
    platform: str
    repository: str
    double: Callable[[], Any]
    body: Callable[[str, str], bytes]  # (before, after)
    headers: Callable[[bytes], dict[str, str]]
    states: Callable[[Any, str, str], list[str]]  # every state posted for (commit, context), in order
    ok: str
    bad: str
    running: str


def _posted(double: Any, key: str, state: str) -> Callable[[Any, str, str], list[str]]:
    """The states the double was sent for a commit and context, read from its request log."""
    def states(d: Any, sha: str, context: str) -> list[str]:
        return [r.json[state] for r in d.calls("POST") if isinstance(r.json, dict) and sha in r.path
                and r.json.get(key) == context]
    return states


def _gitlab_push(before: str, after: str) -> bytes:
    return edited("gitlab-push.json", lambda d: d.update(ref="refs/heads/master", before=before, after=after,
                                                         checkout_sha=after))


def _cloud_push(before: str, after: str) -> bytes:
    def change(d: dict[str, Any]) -> None:
        first = d["push"]["changes"][0]
        first["new"]["name"], first["new"]["target"]["hash"] = "master", after
        first["old"] = None if before == ZERO else {**first["old"], "name": "master",
                                                     "target": {**first["old"]["target"], "hash": before}}
    return edited("bitbucket-cloud-repo_push.json", change)


def _dc_push(before: str, after: str) -> bytes:
    def change(d: dict[str, Any]) -> None:
        repo = d["pullRequest"]["toRef"]["repository"]
        d.clear()
        d.update({"eventKey": "repo:refs_changed", "date": "2019-03-01T10:31:15+0100",
                  "actor": {"name": "gopher", "slug": "gopher", "id": 3231}, "repository": repo,
                  "changes": [{"ref": {"id": "refs/heads/master", "displayId": "master", "type": "BRANCH"},
                               "refId": "refs/heads/master", "fromHash": before, "toHash": after,
                               "type": "ADD" if before == ZERO else "UPDATE"}]})
    return edited("bitbucket-dc-pr_opened.json", change)


def _gitea_push(before: str, after: str) -> bytes:
    return edited("gitea-push.json", lambda d: d.update(ref="refs/heads/master", before=before, after=after))


PUSHES = [
    PushCase("gitlab", "mike/diaspora", lambda: _gitlab("mike/diaspora"), _gitlab_push,
             lambda b: {**_gitlab_headers(b, False), "X-Gitlab-Event": "Push Hook"},
             _posted(None, "name", "state"), "success", "failed", "running"),
    PushCase("bitbucket-cloud", "team_name/repo_name", _cloud, _cloud_push,
             lambda b: {**_cloud_headers(b, False), "X-Event-Key": "repo:push"},
             _posted(None, "key", "state"), "SUCCESSFUL", "FAILED", "INPROGRESS"),
    PushCase("bitbucket-datacenter", "~gopher/webhook-test", _dc, _dc_push,
             lambda b: {**_dc_headers(b, False), "X-Event-Key": "repo:refs_changed"},
             _posted(None, "key", "state"), "SUCCESSFUL", "FAILED", "INPROGRESS"),
    PushCase("gitea", "example/example", _gitea, _gitea_push,
             lambda b: {**_gitea_headers(b, False), "X-Gitea-Event": "push", "X-GitHub-Event": "push"},
             _posted(None, "context", "state"), "success", "failure", "pending"),
]


@pytest.mark.parametrize("case", PUSHES, ids=[c.platform for c in PUSHES])
def test_pushes_apply_only_good_commits_with_deployment_statuses(case: PushCase, tmp_path: Path,
                                                                 started: list[Any]) -> None:
    kubeapi = pytest.importorskip("kubeapi")
    kube = kubeapi.KubeAPI(token="kube-token").start()
    started.append(kube)
    double = case.double()
    started.append(double)
    remote = hostedkit.Remote(tmp_path)
    remote.write("apps/namespace.yaml", NAMESPACE)
    remote.write("apps/web.yaml", GOOD)
    first = remote.commit("web")
    remote.push("refs/heads/master")
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", context="prod")
    (tmp_path / "secret").write_text(SECRET, encoding="utf-8")
    (tmp_path / "token").write_text(TOKEN, encoding="utf-8")
    env = {"prod": {"ref": "master", "path": "apps", "namespace": "apps", "health_timeout": 5,
                    "cluster": {"kubeconfig": str(kubeconfig), "context": "prod"}}}
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump({
        "listen": f"127.0.0.1:{hostedkit.free_port()}", "state_dir": "state",
        "repositories": [{"platform": case.platform, "repository": case.repository, "clone_url": remote.url,
                          "api_url": double.api_url, "webhook_secret_file": "secret", "token_file": "token",
                          "environments": env}]}))
    service = hostedkit.Service(tmp_path / "serve.yaml").start()
    started.append(service)

    def replicas() -> int:
        dep = kube.object("apps/v1", "Deployment", "web", "apps")
        return int(dep["spec"]["replicas"]) if dep else 0

    def deliver(before: str, after: str) -> None:
        body = case.body(before, after)
        assert service.deliver("", body, case.headers(body))[0] == 202

    deliver(ZERO, first)
    wait_for(lambda: case.states(double, first, "gitops-hooks/prod") == [case.running, case.ok], service)
    assert case.states(double, first, "gitops-hooks") == [case.ok] and replicas() == 2

    remote.write("apps/web.yaml", BROKEN)
    broken = remote.commit("scale web")
    remote.push("refs/heads/master")
    deliver(first, broken)
    wait_for(lambda: case.states(double, broken, "gitops-hooks") == [case.bad], service)
    assert case.states(double, broken, "gitops-hooks/prod") == [] and replicas() == 2  # not applied

    remote.write("apps/web.yaml", GOOD.replace("replicas: 2", "replicas: 3"))
    fixed = remote.commit("scale web, properly")
    remote.push("refs/heads/master")
    deliver(broken, fixed)
    wait_for(lambda: case.states(double, fixed, "gitops-hooks/prod") == [case.running, case.ok], service)
    assert replicas() == 3 and not double.rejected
    assert service.terminate() == 0
    assert "outcome=not-applied" in service.text() and "outcome=applied" in service.text()
    assert TOKEN not in service.text() and SECRET not in service.text()
