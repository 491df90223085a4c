"""End to end on Gitea through `gitops-hooks serve`: Gitea's real payloads (a request from a fork, a
push) signed as Gitea signs them, the platform module and loopback double of Gitea. Skipped where the
Gitea module is not installed beside the service."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import git
from hostedkit import SECRET, WEBHOOKS, Remote, Service, encode, free_port
from kubeapi import KubeAPI
from test_hosted_e2e import BROKEN, GOOD

pytest.importorskip("gitops_hooks.hosted.platforms.gitea", reason="the Gitea platform module is not installed")
gitea_double = pytest.importorskip("doubles.gitea", reason="the Gitea double is not here")

REPO = "example/example"  # as Gitea's example payloads name it
TOKEN = "gitea-token"
ZERO = "0" * 40


def signed(event: str, data: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = encode(data)
    sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    delivery = str(uuid.uuid4())
    return body, {"Content-Type": "application/json", "X-GitHub-Event": event, "X-Gitea-Event": event,
                  "X-Gogs-Event": event, "X-GitHub-Delivery": delivery, "X-Gitea-Delivery": delivery,
                  "X-Gogs-Delivery": delivery, "X-Gitea-Signature": sig, "X-Gogs-Signature": sig,
                  "X-Hub-Signature-256": f"sha256={sig}"}


def wait(predicate: Any, what: str, svc: Service, timeout: float = 60) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = predicate()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"no {what} in {timeout} s:\n{svc.text()}")


@pytest.fixture
def double() -> Iterator[Any]:
    d = gitea_double.GiteaDouble()
    d.add_user(TOKEN, "gitops-bot", 17)
    yield d
    d.close()


def test_gitea_fork_request_gets_checks_without_a_plan_and_a_push_is_applied(tmp_path: Path, double: Any) -> None:
    import yaml

    kube = KubeAPI().start()
    try:
        remote = Remote(tmp_path)
        remote.write("apps/namespace.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n")
        remote.write("apps/web.yaml", GOOD)
        base = remote.commit("web")
        remote.push("refs/heads/master")
        (tmp_path / "secret").write_text(SECRET)
        (tmp_path / "token").write_text(TOKEN + "\n")
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", context="prod")
        env = {"prod": {"ref": "master", "path": "apps", "namespace": "apps",
                        "cluster": {"kubeconfig": str(kubeconfig), "context": "prod"}, "health_timeout": 5}}
        config = tmp_path / "serve.yaml"
        config.write_text(yaml.safe_dump({"listen": f"127.0.0.1:{free_port()}", "state_dir": "state", "repositories": [
            {"platform": "gitea", "repository": REPO, "clone_url": remote.url, "api_url": double.api_url,
             "webhook_secret_file": "secret", "token_file": "token", "environments": env}]}))
        svc = Service(config).start()
        try:
            data = json.loads((WEBHOOKS / "gitea-push.json").read_text())
            data.update(ref="refs/heads/master", before=ZERO, after=base)
            assert svc.deliver("push", *signed("push", data))[0] == 202
            wait(lambda: [s for s in double.statuses if s["sha"] == base and s["context"] == "gitops-hooks/prod"
                          and s["status"] == "success"], "deployment status", svc)
            assert kube.object("apps/v1", "Deployment", "web", "apps") is not None

            remote.checkout("changes")
            remote.write("apps/web.yaml", BROKEN)
            head = remote.commit("from a fork")
            remote.push("refs/pull/2/head")  # Gitea keeps a fork's request head in the base repository
            pr = copy.deepcopy(json.loads((WEBHOOKS / "gitea-pull_request-from-fork.json").read_text()))
            pr["pull_request"]["head"]["sha"], pr["pull_request"]["base"]["sha"] = head, base
            kube.reset_requests()
            body, headers = signed("pull_request", pr)
            assert svc.deliver("pull_request", body, headers)[0] == 202
            assert svc.deliver("pull_request", body, headers)[0] == 200
            status = wait(lambda: [s for s in double.statuses if s["sha"] == head], "status", svc)[0]
            assert status["status"] == "failure" and status["context"] == "gitops-hooks"
            comment = wait(lambda: [c for c in double.comments.values() if c["issue"] == 2], "comment", svc)[0]
            assert "`apps/web.yaml:7:" in comment["body"] and "Plan" not in comment["body"]
            assert kube.requests == []  # a fork's request: no cluster call
            assert svc.terminate() == 0
        finally:
            svc.stop()
        assert git("--git-dir", str(remote.path), "notes", "--ref=refs/notes/gitops", "show", base).returncode == 0
    finally:
        kube.stop()
