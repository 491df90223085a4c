"""The mirror: exactly what an event names is fetched from the configured remote, the credentials reach
git through its environment only, a head that is gone is a skip, short commit ids are resolved."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from conftest import git
from hostedkit import GitHttp, Remote

from gitops_hooks.hosted.config import Repository
from gitops_hooks.hosted.mirror import Mirror, MirrorError
from gitops_hooks.hosted.model import Credentials

AUTH = "Basic eC1hY2Nlc3MtdG9rZW46Z2hzX3NlY3JldA=="  # x-access-token:ghs_secret


def repository(url: str) -> Repository:
    return Repository("github", "acme/deploy", url, b"s", Credentials("http://127.0.0.1:9", token="ghs_secret"),
                      {"kubernetes_version": "1.29"})


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    r = Remote(tmp_path)
    r.write("a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    r.commit("a")
    r.push("refs/heads/master")
    return r


def test_a_request_head_is_fetched_without_a_ref_so_its_commits_stay_new(tmp_path: Path, remote: Remote) -> None:
    remote.checkout("topic")
    remote.write("b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n")
    head = remote.commit("b")
    remote.push("refs/pull/1/head")
    mirror = Mirror(tmp_path / "state", repository(remote.url))
    mirror.ensure()
    assert (mirror.path / "gitops-hooks" / "config.yaml").read_text() == "kubernetes_version: '1.29'\n"
    fetched = mirror.fetch_request("refs/pull/1/head", head[:12], "refs/heads/master")  # a short id, resolved
    assert fetched is not None and fetched.head == head and fetched.base == remote.rev("refs/heads/master")
    refs = git("--git-dir", str(mirror.path), "for-each-ref", "--format=%(refname)").stdout.split()
    assert refs == ["refs/gitops-hooks/base/master"]  # the head is reachable from no ref: base..head is new

    remote.checkout("topic", "master")
    remote.write("c.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    remote.commit("force-pushed instead")
    remote.push("refs/pull/2/head")
    gone = "f" * 40
    assert mirror.fetch_request("refs/pull/2/head", gone, "refs/heads/master") is None  # a logged skip
    assert mirror.fetch_request("refs/pull/9/head", gone, "refs/heads/master") is None  # no such request


def test_credentials_reach_git_through_its_environment_never_argv(tmp_path: Path, remote: Remote) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    record = tmp_path / "git-calls"
    real = git("--exec-path").stdout.strip() + "/git"
    wrapper = bindir / "git"
    wrapper.write_text(f"#!/bin/sh\necho \"argv: $*\" >> {record}\n"
                       f"echo \"key: $GIT_CONFIG_KEY_0 value: $GIT_CONFIG_VALUE_0\" >> {record}\nexec {real} \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    old = os.environ["PATH"]
    os.environ["PATH"] = f"{bindir}:{old}"
    try:
        mirror = Mirror(tmp_path / "state", repository(remote.url), AUTH)
        mirror.ensure()
        assert mirror.fetch_push("refs/heads/master", remote.rev("refs/heads/master") or "") is not None
        with pytest.raises(MirrorError) as err:
            Mirror(tmp_path / "state", repository("https://user:pw@127.0.0.1:9/x.git"), AUTH).fetch_push(
                "refs/heads/master", "e" * 40)
    finally:
        os.environ["PATH"] = old
    lines = record.read_text().splitlines()
    assert any(line.startswith("argv: ") and "fetch" in line for line in lines)
    assert all(AUTH not in line for line in lines if line.startswith("argv: "))
    assert f"key: http.extraHeader value: Authorization: {AUTH}" in lines
    assert AUTH not in str(err.value) and "pw@" not in str(err.value)


def test_fetch_and_notes_push_over_smart_http_with_the_header_from_the_environment(tmp_path: Path,
                                                                                  remote: Remote) -> None:
    git("--git-dir", str(remote.path), "config", "http.receivepack", "true")
    server = GitHttp(tmp_path, AUTH)
    try:
        url = server.url("remote.git")
        mirror = Mirror(tmp_path / "state", repository(url), AUTH)
        mirror.ensure()
        head = remote.rev("refs/heads/master") or ""
        fetched = mirror.fetch_push("refs/heads/master", head)
        assert fetched is not None and fetched.head == head
        git("--git-dir", str(mirror.path), "-c", "user.name=gitops-hooks", "-c", "user.email=g@h",
            "notes", "--ref=refs/notes/gitops", "add", "-m", "environment: prod", head)
        assert mirror.push_notes()
        assert git("--git-dir", str(remote.path), "notes", "--ref=refs/notes/gitops", "show", head).stdout.strip() \
            == "environment: prod"
        assert AUTH in server.seen

        refused = Mirror(tmp_path / "other", repository(url), "Basic d3Jvbmc6d3Jvbmc=")
        refused.ensure()
        with pytest.raises(MirrorError) as err:
            refused.fetch_push("refs/heads/master", head)
        assert "d3Jvbmc6d3Jvbmc=" not in str(err.value)
        assert Mirror(tmp_path / "anon", repository(url)).push_notes() is False  # no notes, nothing pushed
    finally:
        server.stop()
