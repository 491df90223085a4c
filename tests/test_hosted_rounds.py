"""Rounds of `gitops-hooks serve`: with `reconcile_every`, the service reconciles each repository's
environments on its own (a queued `round` job per repository), takes back a hand change made on the
loopback API server, sends no write when nothing changed, and posts nothing on the platform."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import git
from doubles.github import GitHubDouble
from hostedkit import REPO, Remote, Service, encode, push, write_config
from kubeapi import KubeAPI
from test_hosted_push import TOKEN, ZERO, deploy_states, double, environment, kube, remote  # noqa: F401

from gitops_hooks.hosted.config import ServeConfigError, load


def wait_until(check: Callable[[], bool], svc: Service, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("not seen in time; the service log:\n" + svc.text())


def scale(api: KubeAPI, replicas: int) -> None:
    """`kubectl scale` as the API server sees it: a merge patch of the scale subresource, manager kubectl."""
    req = urllib.request.Request(f"{api.url}/apis/apps/v1/namespaces/apps/deployments/web/scale?fieldManager=kubectl",
                                 data=json.dumps({"spec": {"replicas": replicas}}).encode(), method="PATCH",
                                 headers={"Content-Type": "application/merge-patch+json",
                                          "Authorization": "Bearer kube-token"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def with_rounds(config: Path, every: str) -> Path:
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["reconcile_every"] = every
    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return config


def test_a_round_takes_back_a_hand_change_and_writes_nothing_when_all_is_in_place(
        tmp_path: Path, double: GitHubDouble, kube: KubeAPI, remote: Remote) -> None:  # noqa: F811
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", context="prod")
    env = environment(kubeconfig, "prod")
    env["environments"]["prod"].update(retries=0, request_timeout=2)
    svc = Service(with_rounds(write_config(tmp_path, remote.url, double.url, token=TOKEN, policy=env), "1s")).start()

    def lines(text: str) -> int:
        return sum(1 for line in svc.text().splitlines() if "round repository=" in line and text in line)
    try:
        first = git("rev-parse", "HEAD", cwd=remote.work).stdout.strip()
        remote.push("refs/heads/master")
        assert svc.deliver("push", encode(push("refs/heads/master", ZERO, first)))[0] == 202
        double.wait_for(lambda: deploy_states(double, first) == ["in_progress", "success"])
        statuses = len(double.statuses)
        wait_until(lambda: lines(f"prod: unchanged at {first[:12]}") >= 1, svc)
        kube.reset_requests()
        seen = lines("prod: unchanged")
        wait_until(lambda: lines("prod: unchanged") >= seen + 2, svc)  # a whole round after the reset
        assert kube.requests and [r for r in kube.requests if r[0] != "GET"] == [], kube.requests

        scale(kube, 5)
        wait_until(lambda: lines("prod: corrected 1") >= 1, svc)
        assert kube.object("apps/v1", "Deployment", "web", "apps")["spec"]["replicas"] == 2  # type: ignore[index]
        assert lines("deployment.apps/web -n apps: took back .spec.replicas from kubectl (scale)") == 1
        assert len(double.statuses) == statuses and len(double.deployment_statuses) == 2  # rounds post nothing
        assert svc.terminate() == 0
    finally:
        svc.stop()
    assert "event=round attempt=1 outcome=round" in svc.text()


def test_reconcile_every_is_read_per_repository_and_bad_values_are_named(tmp_path: Path) -> None:
    config = write_config(tmp_path, "file:///nowhere.git", "https://api.github.com",
                          policy={"reconcile_every": "30s"})
    assert load(config).repositories[0].reconcile_every == 30.0
    assert load(with_rounds(config, "off")).repositories[0].reconcile_every == 30.0  # the repository's wins
    config = write_config(tmp_path, "file:///nowhere.git", "https://api.github.com")
    assert load(config).repositories[0].reconcile_every == 300.0
    assert load(with_rounds(config, "0")).repositories[0].reconcile_every == 0.0
    assert load(with_rounds(config, "1h")).repositories[0].reconcile_every == 3600.0
    with pytest.raises(ServeConfigError, match=r"serve.yaml: reconcile_every: 'soon' is not a duration"):
        load(with_rounds(config, "soon"))


def test_a_round_is_queued_once_per_repository_while_one_is_queued_or_running(tmp_path: Path) -> None:
    from gitops_hooks.hosted.config import Repository
    from gitops_hooks.hosted.model import Credentials
    from gitops_hooks.hosted.queue import Queue
    from gitops_hooks.hosted.service import round_event

    repo = Repository("github", REPO, "file:///nowhere.git", b"s", Credentials("https://api.github.com"))
    queue = Queue(tmp_path / "queue.sqlite3")
    assert queue.put_round(repo.key, round_event(repo)) is True
    assert queue.put_round(repo.key, round_event(repo)) is False  # one queued: not doubled
    assert queue.put_round("github:other/repo", round_event(repo)) is True  # another repository's own
    job = queue.claim(1)
    assert job is not None and job.purpose == "round" and job.event.kind == "round"
    assert queue.put_round(repo.key, round_event(repo)) is False  # one running: none added
    queue.done(job, "done")
    assert queue.put_round(repo.key, round_event(repo)) is True
    assert [(p, s) for _, r, p, _, s, _ in queue.jobs() if r == repo.key] == [("round", "done"), ("round", "queued")]


def test_serve_check_says_how_often_rounds_run(tmp_path: Path) -> None:
    from conftest import run_suite

    policy = {**environment(tmp_path / "kubeconfig", "prod"), "reconcile_every": "2m"}
    config = write_config(tmp_path, "file:///nowhere.git", "https://api.github.com", policy=policy)
    out = run_suite("serve", "--config", str(config), "--check")
    assert out.returncode == 0 and "environments: prod; rounds every 120 s)" in out.stdout, out.stdout + out.stderr
    config = write_config(tmp_path, "file:///nowhere.git", "https://api.github.com",
                          policy=environment(tmp_path / "kubeconfig", "prod"))
    out = run_suite("serve", "--config", str(with_rounds(config, "off")), "--check")
    assert out.returncode == 0 and "environments: prod)" in out.stdout, out.stdout + out.stderr  # no rounds
