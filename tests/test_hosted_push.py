"""Pushes and plans through `gitops-hooks serve`: a failing commit is not applied, a passing one is
reconciled as post-receive does (the loopback API server, and the real kube-apiserver where etcd is
here), deployments and their statuses on the GitHub double; the plan in the request's comment, and no
cluster call for a fork's request."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import git, run_suite
from doubles.github import Account, GitHubDouble
from hostedkit import REPO, Remote, Service, encode, pull_request, push, write_config
from kubeapi import KubeAPI
from test_hosted_e2e import BROKEN, GOOD

NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n"
ZERO = "0" * 40
TOKEN = "ghp_deploy"


@pytest.fixture
def double() -> Iterator[GitHubDouble]:
    d = GitHubDouble()
    d.tokens[TOKEN] = Account("gitops-bot", 7)
    yield d
    d.close()


@pytest.fixture
def kube() -> Iterator[KubeAPI]:
    api = KubeAPI(token="kube-token").start()
    yield api
    api.stop()


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    r = Remote(tmp_path)
    r.write("apps/namespace.yaml", NAMESPACE)
    r.write("apps/web.yaml", GOOD)
    r.commit("web")
    return r


def environment(kubeconfig: Path, context: str, namespace: str = "apps") -> dict[str, Any]:
    return {"environments": {"prod": {"ref": "master", "path": "apps", "namespace": namespace,
                                      "cluster": {"kubeconfig": str(kubeconfig), "context": context},
                                      "health_timeout": 5}}}


def status_of(double: GitHubDouble, sha: str) -> dict[str, Any]:
    found: dict[str, Any] = double.wait_for(lambda: [s for s in double.statuses if s["sha"] == sha])[0]
    return found


def deploy_states(double: GitHubDouble, sha: str) -> list[str]:
    ids = {i for i, d in double.deployments.items() if d["ref"] == sha}
    return [s["state"] for s in double.deployment_statuses if s["deployment_id"] in ids]


def mirror_of(tmp_path: Path) -> Path:
    return tmp_path / "state" / "mirrors" / "github" / "Codertocat" / "Hello-World.git"


def push_cycle(tmp_path: Path, double: GitHubDouble, remote: Remote, svc: Service,
               replicas: Any, namespace: str = "apps") -> None:
    """Good, then broken (not applied), then fixed; `replicas()` reads the live Deployment's replicas."""
    first = git("rev-parse", "HEAD", cwd=remote.work).stdout.strip()
    remote.push("refs/heads/master")
    assert svc.deliver("push", encode(push("refs/heads/master", ZERO, first)))[0] == 202
    assert status_of(double, first)["state"] == "success"
    double.wait_for(lambda: deploy_states(double, first) == ["in_progress", "success"])
    assert replicas() == 2
    assert double.deployments[next(iter(double.deployments))]["environment"] == "prod"

    remote.write("apps/web.yaml", BROKEN.replace("namespace: apps", f"namespace: {namespace}"))
    broken = remote.commit("scale web")
    remote.push("refs/heads/master")
    assert svc.deliver("push", encode(push("refs/heads/master", first, broken)))[0] == 202
    failed = status_of(double, broken)
    assert failed["state"] == "failure" and "not applied" in failed["description"]
    assert deploy_states(double, broken) == [] and replicas() == 2
    mirror = mirror_of(tmp_path)
    assert git("--git-dir", str(mirror), "rev-parse", "refs/heads/master").stdout.strip() == first

    remote.write("apps/web.yaml", GOOD.replace("replicas: 2", "replicas: 3").replace("namespace: apps",
                                                                                     f"namespace: {namespace}"))
    fixed = remote.commit("scale web, properly")
    remote.push("refs/heads/master")
    assert svc.deliver("push", encode(push("refs/heads/master", broken, fixed)))[0] == 202
    assert status_of(double, fixed)["state"] == "success"
    double.wait_for(lambda: deploy_states(double, fixed) == ["in_progress", "success"])
    assert replicas() == 3
    history = run_suite("history", "prod", "--repo", str(mirror))
    assert history.returncode == 0 and f"{fixed[:12]}  applied" in history.stdout, history.stdout + history.stderr
    assert broken[:12] not in history.stdout
    notes = git("--git-dir", str(remote.path), "notes", "--ref=refs/notes/gitops", "show", fixed).stdout
    assert "environment: prod" in notes and "result: applied" in notes  # pushed to the remote's notes


def test_push_checks_first_applies_only_good_commits_to_the_loopback_api_server(
        tmp_path: Path, double: GitHubDouble, kube: KubeAPI, remote: Remote) -> None:
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", context="prod")
    svc = Service(write_config(tmp_path, remote.url, double.url, token=TOKEN,
                               policy=environment(kubeconfig, "prod"))).start()
    try:
        def replicas() -> int:
            dep = kube.object("apps/v1", "Deployment", "web", "apps")
            return int(dep["spec"]["replicas"]) if dep else 0
        push_cycle(tmp_path, double, remote, svc, replicas)
        assert svc.terminate() == 0
    finally:
        svc.stop()
    assert "outcome=not-applied" in svc.text() and "outcome=applied" in svc.text()
    assert "kube-token" not in svc.text() and TOKEN not in svc.text()


def test_push_applies_to_the_real_api_server(tmp_path: Path, double: GitHubDouble, remote: Remote,
                                             realk8s: Path) -> None:
    import yaml

    context = yaml.safe_load(realk8s.read_text())["current-context"]
    ns = "hosted-push"
    remote.write("apps/namespace.yaml", NAMESPACE.replace("apps", ns))
    remote.write("apps/web.yaml", GOOD.replace("namespace: apps", f"namespace: {ns}"))
    git("commit", "--quiet", "-am", "own namespace", cwd=remote.work)
    svc = Service(write_config(tmp_path, remote.url, double.url, token=TOKEN,
                               policy=environment(realk8s, context, ns))).start()

    def replicas() -> int:
        out = subprocess.run(["kubectl", "--kubeconfig", str(realk8s), "-n", ns, "get", "deployment", "web",
                              "-o", "jsonpath={.spec.replicas}"], capture_output=True, text=True, check=False)
        return int(out.stdout or 0)
    try:
        push_cycle(tmp_path, double, remote, svc, replicas, ns)
    finally:
        svc.stop()


def test_the_plan_is_in_the_request_comment_and_a_fork_gets_no_cluster_call(
        tmp_path: Path, double: GitHubDouble, kube: KubeAPI, remote: Remote) -> None:
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", context="prod")
    secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: apps\ntype: Opaque\n" \
             "data:\n  password: {}\n"
    remote.write("apps/db.yaml", secret.format("b2xkLXZhbHVl"))  # old-value
    base = remote.commit("db")
    remote.push("refs/heads/master")
    svc = Service(write_config(tmp_path, remote.url, double.url, token=TOKEN,
                               policy={**environment(kubeconfig, "prod"),
                                       "rules": {"secret-plaintext": "off", "secret-in-git": "off"}})).start()
    try:
        assert svc.deliver("push", encode(push("refs/heads/master", ZERO, base)))[0] == 202
        double.wait_for(lambda: deploy_states(double, base) == ["in_progress", "success"])
        remote.checkout("changes")
        remote.write("apps/web.yaml", GOOD.replace("replicas: 2", "replicas: 5"))
        remote.write("apps/db.yaml", secret.format("bmV3LXZhbHVl"))  # new-value
        head = remote.commit("scale and rotate")
        remote.push("refs/pull/2/head")
        kube.reset_requests()
        assert svc.deliver("pull_request", encode(pull_request(head, base, number=2)))[0] == 202
        body = double.wait_for(lambda: [c["body"] for c in double.comments_on(REPO, 2) if "Plan" in c["body"]])[0]
        assert "**Plan for prod**" in body and "would be:" in body
        assert "`deployment.apps/web configured`" in body and "replicas: 5" in body
        assert "`secret/db configured`" in body and "(changed)" in body
        assert "bmV3LXZhbHVl" not in body and "b2xkLXZhbHVl" not in body  # Secret values never shown
        assert kube.object("apps/v1", "Deployment", "web", "apps")["spec"]["replicas"] == 2  # type: ignore[index]
        assert kube.requests  # the plan asked the cluster

        remote.write("apps/web.yaml", GOOD.replace("replicas: 2", "replicas: 9"))
        fork_head = remote.commit("from a fork")
        remote.push("refs/pull/3/head")
        kube.reset_requests()
        assert svc.deliver("pull_request", encode(pull_request(fork_head, base, number=3, fork=True)))[0] == 202
        body = double.wait_for(lambda: [c["body"] for c in double.comments_on(REPO, 3)])[0]
        assert "checks passed" in body and "Plan" not in body
        assert status_of(double, fork_head)["state"] == "success"
        assert kube.requests == []  # a fork's request makes no cluster call
    finally:
        svc.stop()


def test_a_failed_reconcile_is_reported_kept_pending_and_retried(tmp_path: Path, double: GitHubDouble,
                                                                  kube: KubeAPI, remote: Remote) -> None:
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", context="prod")
    env = environment(kubeconfig, "prod")
    env["environments"]["prod"]["retries"] = 0
    svc = Service(write_config(tmp_path, remote.url, double.url, token=TOKEN, policy=env)).start()
    try:
        kube.down()
        first = git("rev-parse", "HEAD", cwd=remote.work).stdout.strip()
        remote.push("refs/heads/master")
        assert svc.deliver("push", encode(push("refs/heads/master", ZERO, first)))[0] == 202
        double.wait_for(lambda: deploy_states(double, first) == ["in_progress", "failure"])
        pending = run_suite("history", "prod", "--repo", str(mirror_of(tmp_path)))
        assert f"pending: {first[:12]}" in pending.stdout and "failed attempts: 1" in pending.stdout
        kube.up()
        double.wait_for(lambda: deploy_states(double, first)[-1:] == ["success"], timeout=60)
        assert kube.object("apps/v1", "Deployment", "web", "apps") is not None
        assert "outcome=error retry-in=5s" in svc.text()
    finally:
        svc.stop()
