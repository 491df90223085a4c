"""Pushes served by `gitops-hooks reconcile --every`: the rounds process of a bare repository runs
post-receive's reconcile for its hooks (reconcileserver.py, gateclient.served_post_receive), with the same
lines for the pusher as `gitops-hooks post-receive` in a process of its own, and falls back to that
process whenever it is not there, is killed in the middle, or is not the pusher's own user.

Real pushes into bare repositories with the hooks installed; the loopback API server (tests/kubeapi.py)
where requests are counted or must be slow, and the real kube-apiserver (realk8s) for one end to end."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import EXE, Clone, Push, Server
from kubeapi import KubeAPI
from test_converge import configmap, deployment, kubectl, live, loopback_env, namespace

from gitops_hooks import gateclient

SERVED = re.compile(r"push to refs/heads/main served in [0-9.]+ s")


class Rounds:
    """`gitops-hooks reconcile --every 1h` of a repository, its log lines read as they come."""

    def __init__(self, server: Server) -> None:
        self.socket = Path(gateclient.rounds_socket(str(server.path)))
        self.proc = subprocess.Popen([EXE, "reconcile", "--every", "1h", "--repo", str(server.path)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        first = self.next()
        assert "reconciling every environment" in first and f"serving its pushes ({self.socket})" in first, first
        first_round = self.next()
        assert " prod: " in first_round, first_round  # the first round is over: it waits, and serves

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def next(self, timeout: float = 20.0) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("the rounds process wrote no line in time") from None

    def served(self) -> str:
        line = self.next()
        assert SERVED.search(line), line
        return line

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def kube() -> Iterator[KubeAPI]:
    api = KubeAPI().start()
    yield api
    api.stop()


@pytest.fixture
def rounds(server: Server) -> Iterator[list[Rounds]]:
    """Start one with `rounds.append(Rounds(server))`; stopped after the test."""
    started: list[Rounds] = []
    yield started
    for r in started:
        r.stop()


def reconcile_lines(push: Push, sha: str) -> list[str]:
    """post-receive's lines for the pusher, with the commit written as <sha>."""
    return [line.replace(sha[:12], "<sha>") for line in push.remote_lines()
            if line.startswith("gitops-hooks: ") or " unchanged" in line or " configured" in line]


def ten_configmaps(server: Server, clone: Clone, kube: KubeAPI, tmp_path: Path) -> None:
    loopback_env(server, kube, tmp_path)
    clone.write("clusters/prod/namespace.yaml", namespace("apps"))
    clone.write("clusters/prod/web.yaml", deployment(2))
    for i in range(10):
        clone.write(f"clusters/prod/cm-{i}.yaml", configmap(f"cm-{i}"))
    clone.commit("12 objects")
    push = clone.push()
    assert push.accepted and "configmap/cm-9 created" in push.remote_lines(), push.output


def test_a_push_served_by_the_rounds_process_says_the_same_and_writes_only_what_changed(
        server: Server, clone: Clone, kube: KubeAPI, tmp_path: Path, rounds: list[Rounds],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ten_configmaps(server, clone, kube, tmp_path)
    clone.write("README.md", "outside the environment's folder\n")
    sha = clone.commit("readme")
    alone = clone.push()  # no rounds process: `gitops-hooks post-receive` in a process of its own
    assert alone.accepted, alone.output
    expected = reconcile_lines(alone, sha)
    assert "gitops-hooks: prod: applying <sha> (refs/heads/main, clusters/prod)" in expected, alone.output
    assert "gitops-hooks: prod: applied: 0 created, 0 configured, 12 unchanged, 0 pruned" in expected, alone.output
    assert "gitops-hooks: prod: nothing changed, so no health check (push with -o gitops.wait to check)" \
        in expected, alone.output

    rounds.append(Rounds(server))
    clone.write("README.md", "still outside\n")
    sha = clone.commit("readme again")
    kube.reset_requests()
    push = clone.push()
    rounds[0].served()
    assert push.accepted, push.output
    assert reconcile_lines(push, sha) == expected, push.output
    assert gateclient.SERVED_GONE.strip() not in push.output
    assert [r for r in kube.requests if r[0] != "GET"] == [], kube.requests  # nothing changed: no write

    clone.write("clusters/prod/cm-7.yaml", configmap("cm-7").replace("blue", "green"))
    sha = clone.commit("one change")
    kube.reset_requests()
    monkeypatch.setenv("GL_USERNAME", "alice")  # who pushed, as GitLab tells its hooks
    push = clone.push("-o", "gitops.wait")
    rounds[0].served()
    lines = push.remote_lines()
    assert "configmap/cm-7 configured" in lines, push.output
    assert "gitops-hooks: prod: waiting up to 1 s for 1 object to be healthy" in lines, push.output  # the option
    assert [r for r in kube.requests if r[0] == "PATCH"] == [("PATCH", "/api/v1/namespaces/apps/configmaps/cm-7")]
    assert kube.object("v1", "ConfigMap", "cm-7", "apps")["data"]["colour"] == "green"  # type: ignore[index]
    history = subprocess.run([EXE, "history", "prod", "--repo", str(server.path)], capture_output=True, text=True,
                             check=False).stdout
    assert f"{sha[:12]}  applied   alice (GL_USERNAME): 0 created, 1 configured, 11 unchanged" in history, history

    server.configure("version: 1\n")  # read again for each push: no environment now
    clone.write("README.md", "no environment\n")
    sha = clone.commit("after the configuration changed")
    push = clone.push()
    rounds[0].served()
    assert f"gitops-hooks: refs/heads/main {sha[:12]}: accepted, not applied: no target configured" \
        in push.remote_lines(), push.output

    rounds[0].stop()
    assert rounds[0].proc.returncode == 0 and not rounds[0].socket.exists()


def test_a_rounds_process_killed_in_the_middle_of_a_push_loses_nothing(
        server: Server, clone: Clone, kube: KubeAPI, tmp_path: Path, rounds: list[Rounds]) -> None:
    ten_configmaps(server, clone, kube, tmp_path)
    r = Rounds(server)
    rounds.append(r)
    clone.write("clusters/prod/cm-3.yaml", configmap("cm-3").replace("blue", "red"))
    sha = clone.commit("red")
    kube.reset_requests()
    kube.slow(0.3)
    result: list[Push] = []
    pushing = threading.Thread(target=lambda: result.append(clone.push()))
    pushing.start()
    deadline = time.monotonic() + 20
    while not kube.requests and time.monotonic() < deadline:  # the rounds process is reconciling the push
        time.sleep(0.02)
    assert kube.requests, "the push never reached the API server"
    r.proc.kill()
    r.proc.wait()
    kube.slow(0)
    pushing.join(timeout=60)
    push = result[0]
    assert push.accepted, push.output
    lines = push.remote_lines()
    assert gateclient.SERVED_GONE.strip() in lines, push.output
    assert "configmap/cm-3 configured" in lines, push.output  # the hook's own process applied it
    assert kube.object("v1", "ConfigMap", "cm-3", "apps")["data"]["colour"] == "red"  # type: ignore[index]
    pending = server.path / "gitops-hooks" / "state" / "prod.pending.json"
    assert not pending.exists()
    assert sha[:12] in subprocess.run([EXE, "history", "prod", "--repo", str(server.path)], capture_output=True,
                                      text=True, check=False).stdout

    assert r.socket.exists()  # left by the killed process: nobody listens
    clone.write("clusters/prod/cm-4.yaml", configmap("cm-4").replace("blue", "red"))
    clone.commit("red again")
    push = clone.push()
    assert "configmap/cm-4 configured" in push.remote_lines(), push.output
    assert gateclient.SERVED_GONE.strip() not in push.output


NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"  # one another user may run (the test's own may live in a closed folder)
LISTENER = """
import os, socket, sys
import gateclient
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(1)
print("ready", flush=True)
conn, _ = s.accept()
conn.settimeout(5)
data = b""
try:
    conn.sendall(gateclient.encode(["accepted"]) + gateclient.encode(["out", "a stranger answered\\n"])
                 + gateclient.encode(["done"]))
    while chunk := conn.recv(65536):
        data += chunk
except OSError:
    pass
open(sys.argv[2], "w").write(str(len(data)))
"""
CONNECT = """
import socket, sys
import gateclient
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.settimeout(10)
try:
    s.sendall(gateclient.encode(["post-receive", "", "18", "GIT_DIR", "."]))
    print(gateclient.receive(s))
except OSError as exc:
    print(type(exc).__name__)
"""


@pytest.fixture
def stranger() -> Iterator[Path]:
    """A folder of user `nobody` holding a copy of the hooks' thin client (standard library only)."""
    if os.getuid() != 0 or not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"a process of another user takes root and {SYSTEM_PYTHON}")
    folder = Path("/tmp") / f"gitops-hooks-stranger-{os.getpid()}"
    folder.mkdir(mode=0o755)
    shutil.copy(gateclient.__file__, folder / "gateclient.py")
    for p in (folder, folder / "gateclient.py"):
        os.chown(p, NOBODY, NOBODY)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def as_nobody(folder: Path, script: str, *args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([SYSTEM_PYTHON, "-I", "-c", f"import sys; sys.path.insert(0, {str(folder)!r})\n{script}",
                             *args], user=NOBODY, text=True, cwd=folder, **kw)


def test_a_socket_of_another_user_gets_no_push(server: Server, clone: Clone, kube: KubeAPI, tmp_path: Path,
                                               stranger: Path) -> None:
    ten_configmaps(server, clone, kube, tmp_path)
    got = stranger / "received"
    other = as_nobody(stranger, LISTENER, str(stranger / "s"), str(got), stdout=subprocess.PIPE)
    assert other.stdout is not None and other.stdout.readline().strip() == "ready"
    os.rename(stranger / "s", gateclient.rounds_socket(str(server.path)))  # the same socket, at the hook's path
    clone.write("clusters/prod/cm-5.yaml", configmap("cm-5").replace("blue", "red"))
    clone.commit("red")
    push = clone.push()
    assert "configmap/cm-5 configured" in push.remote_lines(), push.output  # in the hook's own process
    assert "a stranger answered" not in push.output
    other.wait(timeout=10)
    assert got.read_text() == "0"  # neither the ref updates nor the environment went to it


def test_the_rounds_process_serves_no_other_user(server: Server, clone: Clone, kube: KubeAPI, tmp_path: Path,
                                                  rounds: list[Rounds], stranger: Path) -> None:
    ten_configmaps(server, clone, kube, tmp_path)
    r = Rounds(server)
    rounds.append(r)
    os.chmod(r.socket, 0o666)  # the mode would stop another user first: open it to reach the check behind it
    state = os.open(r.socket.parent, os.O_RDONLY | os.O_DIRECTORY)  # (the test's folders are closed to others)
    try:
        other = as_nobody(stranger, CONNECT, f"/proc/self/fd/{state}/{r.socket.name}", pass_fds=(state,),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = other.communicate(timeout=20)
    finally:
        os.close(state)
    assert out.strip() in ("None", "BrokenPipeError", "ConnectionResetError"), out + err  # closed, no answer
    assert f"refused a connection from another user (uid {NOBODY})" in r.next()


def test_a_push_served_on_the_real_api_server(realk8s: Path, server: Server, clone: Clone,
                                              rounds: list[Rounds]) -> None:
    ns = "cv-served-push"
    proc = subprocess.run([EXE, "env", "add", str(server.path), "prod", "--ref", "main", "--path", "clusters/prod",
                           "--kubeconfig", str(realk8s), "--namespace", ns, "--health-timeout", "1"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    clone.write("clusters/prod/namespace.yaml", namespace(ns))
    clone.write("clusters/prod/settings.yaml", configmap("settings"))
    clone.commit("settings")
    assert clone.push().accepted
    r = Rounds(server)
    rounds.append(r)
    clone.write("clusters/prod/settings.yaml", configmap("settings").replace("blue", "green"))
    sha = clone.commit("green")
    push = clone.push()
    r.served()
    lines = push.remote_lines()
    assert f"gitops-hooks: prod: applying {sha[:12]} (refs/heads/main, clusters/prod)" in lines, push.output
    assert "configmap/settings configured" in lines, push.output
    assert live(realk8s, ns, "configmap/settings")["data"]["colour"] == "green"
    kubectl(realk8s, "edit", "-n", ns, "configmap/settings", editor="sed -i s/green/red/")
    clone.write("README.md", "outside\n")
    clone.commit("readme")
    push = clone.push()
    r.served()
    assert "configmap/settings configured: took back .data.colour from kubectl-edit" in push.remote_lines(), \
        push.output
    assert live(realk8s, ns, "configmap/settings")["data"]["colour"] == "green"
