"""post-receive on the fast path: with no environment configured, the hooks' thin client answers from the
config stamp without starting the suite; the stamp never outlives the configuration it describes; and a
gate server that is gone, busy or killed in the middle of a push never costs the pusher a right answer."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BROKEN_DEPLOYMENT, DEPLOYMENT, EXE, Clone, Push, Server, git, run_suite
from kubeapi import KubeAPI

from gitops_hooks import config as configmod
from gitops_hooks import gateclient

PYTHON = str(Path(EXE).parent / "python")
NO_TARGET = re.compile(r"gitops-hooks: (\S+) ([0-9a-f]{12}): accepted, not applied: no target configured")


@pytest.fixture(autouse=True)
def runtime(gate_runtime: Path) -> Path:
    """Each test has a gate server of its own."""
    return gate_runtime


def stamp(server: Server) -> str:
    path = server.path / "gitops-hooks" / "config.stamp"
    return path.read_text(encoding="utf-8") if path.exists() else ""


def settled(server: Server) -> None:
    """Date the configuration file back (a file seconds old gets no stamp: its times could repeat)."""
    old = time.time_ns() - 60 * 10**9
    os.utime(server.config_path, ns=(old, old))


def cut_off(server: Server, *names: str) -> None:
    """Point post-receive's GITOPS_HOOKS (the suite) or GITOPS_HOOKS_CLIENT at a file that does not exist."""
    hook = server.path / "hooks" / "post-receive"
    text = hook.read_text(encoding="utf-8")
    for name in names:
        text = re.sub(rf"(?m)^{name}=.*$", f"{name}=/nonexistent/gitops-hooks", text, count=1)
    hook.write_text(text, encoding="utf-8")


def no_target_lines(push: Push) -> list[tuple[str, str]]:
    return [m.groups() for line in push.remote_lines() if (m := NO_TARGET.fullmatch(line))]


def short(clone: Clone, rev: str = "HEAD") -> str:
    return git("rev-parse", rev, cwd=clone.path).stdout.strip()[:12]


def test_the_installed_post_receive_uses_the_thin_client(server: Server) -> None:
    hook = (server.path / "hooks" / "post-receive").read_text(encoding="utf-8")
    assert "GITOPS_HOOKS_PYTHON='/" in hook
    assert re.search(r"(?m)^GITOPS_HOOKS_CLIENT='/.*gitops_hooks/gateclient\.py'$", hook)
    # The client names the same file the suite reads.
    assert (gateclient.CONFIG_DIR, gateclient.CONFIG_FILE) == (configmod.CONFIG_DIR, configmod.CONFIG_FILE)


def test_no_environment_is_answered_without_the_suite(server: Server, clone: Clone) -> None:
    settled(server)
    clone.write("apps/web.yaml", DEPLOYMENT)
    clone.commit("first")
    first = clone.push()
    assert first.accepted, first.output
    assert no_target_lines(first) == [("refs/heads/main", short(clone))]
    assert stamp(server).endswith("\nnone\n")
    cut_off(server, "GITOPS_HOOKS", "GITOPS_HOOKS_CLIENT")  # the hook script alone must answer
    clone.write("README.md", "docs\n")
    clone.commit("docs")
    git("tag", "v1", cwd=clone.path)
    git("branch", "old", cwd=clone.path)
    assert clone.push(ref="old").accepted
    push = clone.push("HEAD:refs/heads/main", "refs/tags/v1", ref=":refs/heads/old")  # a deletion says nothing
    assert push.accepted, push.output
    assert not any("nonexistent" in line or "not found" in line for line in push.remote_lines()), push.output
    assert sorted(no_target_lines(push)) == [("refs/heads/main", short(clone)), ("refs/tags/v1", short(clone))]
    # The suite itself says the same, word for word.
    sha = git("rev-parse", "HEAD", cwd=clone.path).stdout.strip()
    stdin = f"{'0' * 40} {sha} refs/heads/main\n{'0' * 40} {sha} refs/tags/v1\n"
    suite = subprocess.run([EXE, "post-receive"], input=stdin, capture_output=True, text=True, check=False,
                           cwd=server.path, env={**os.environ, "GIT_DIR": "."})
    client = subprocess.run([PYTHON, "-I", "-S", gateclient.__file__, "/nonexistent", "post-receive"], input=stdin,
                            capture_output=True, text=True, check=False, cwd=server.path,
                            env={**os.environ, "GIT_DIR": "."})
    hook = subprocess.run([server.path / "hooks" / "post-receive"], input=stdin + f"{sha} {'0' * 40} refs/heads/x\n"
                          f"{'0' * 40} {sha} refs/notes/gitops\n", capture_output=True, text=True, check=False,
                          cwd=server.path, env={**os.environ, "GIT_DIR": "."})
    assert (client.returncode, client.stderr) == (suite.returncode, suite.stderr) == (0, suite.stderr)
    assert (hook.returncode, hook.stderr) == (0, suite.stderr)
    assert suite.stderr.count("no target configured") == 2


def test_a_configuration_younger_than_its_clock_tick_gets_no_stamp(server: Server) -> None:
    folder = str(server.path)
    server.configure(server.config_path.read_text(encoding="utf-8") + "\n")  # written just now
    gateclient.write_stamp(folder, gateclient.config_key(folder), None)
    assert stamp(server) == ""  # a same-size rewrite in this clock tick could repeat its times
    assert gateclient.post_receive_without_environments(folder, f"{'0' * 40} {'1' * 40} refs/heads/main\n") is None
    settled(server)
    gateclient.write_stamp(folder, gateclient.config_key(folder), None)
    assert gateclient.post_receive_without_environments(folder, f"{'0' * 40} {'1' * 40} refs/heads/main\n") == \
        gateclient.no_target("refs/heads/main", "1" * 40)
    assert gateclient.post_receive_without_environments(folder, "not a ref line\n") is None  # the suite says why


@pytest.fixture
def kube() -> Iterator[KubeAPI]:
    api = KubeAPI(token="tok-post-receive").start()
    yield api
    api.stop()


def test_the_stamp_never_outlives_the_configuration(server: Server, clone: Clone, kube: KubeAPI,
                                                   tmp_path: Path) -> None:
    settled(server)
    clone.write("clusters/prod/ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n")
    clone.write("clusters/prod/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n"
                "data:\n  a: b\n")
    clone.commit("first")
    assert no_target_lines(clone.push()) == [("refs/heads/main", short(clone))]
    assert stamp(server).endswith("\nnone\n")
    cut_off(server, "GITOPS_HOOKS")  # from here on, a push the stamp cannot answer shows "not found"
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", context="prod")
    added = run_suite("env", "add", str(server.path), "prod", "--ref", "main", "--path", "clusters/prod",
                      "--kubeconfig", str(kubeconfig), "--context", "prod", "--namespace", "apps")
    assert added.returncode == 0, added.stderr
    clone.write("clusters/prod/cm.yaml", clone.path.joinpath("clusters/prod/cm.yaml").read_text() + "  c: d\n")
    clone.commit("second")
    push = clone.push()
    assert push.accepted, push.output
    assert no_target_lines(push) == []  # the client did not answer from the old stamp: it ran the suite
    assert ("gitops-hooks: accepted, not applied: cannot start /nonexistent/gitops-hooks (No such file or "
            "directory); tell the administrator") in push.remote_lines(), push.output
    (server.path / "hooks" / "post-receive").unlink()
    run_suite("install", str(server.path))  # the real fallback again
    settled(server)
    clone.write("clusters/prod/cm.yaml", clone.path.joinpath("clusters/prod/cm.yaml").read_text() + "  e: f\n")
    clone.commit("third")
    push = clone.push()
    assert any(line.startswith("gitops-hooks: prod: applied:") for line in push.remote_lines()), push.output
    assert kube.object("v1", "ConfigMap", "settings", "apps") is not None
    assert stamp(server).endswith("\nenvironments\nrefs/heads/main\n")
    # Hand edits in place that keep the size and put the modification time back: the change time moved.
    with_env = server.config_path.read_text(encoding="utf-8")
    without = commented_environments(with_env)
    assert len(without) == len(with_env) and without != with_env
    server.configure(without)
    settled(server)
    clone.write("README.md", "docs\n")
    clone.commit("docs")
    push = clone.push()
    assert no_target_lines(push) == [("refs/heads/main", short(clone))], push.output
    assert stamp(server).endswith("\nnone\n")
    before = server.config_path.stat()
    with open(server.config_path, "r+", encoding="utf-8") as fh:
        fh.write(with_env)
    os.utime(server.config_path, ns=(before.st_atime_ns, before.st_mtime_ns))
    clone.write("README.md", "more docs\n")
    clone.commit("more docs")
    push = clone.push()
    assert no_target_lines(push) == [], push.output
    assert any(line.startswith("gitops-hooks: prod: applied:") for line in push.remote_lines()), push.output


def commented_environments(text: str) -> str:
    """The configuration with its `environments:` block commented out character for character."""
    lines, inside = [], False
    for line in text.splitlines(keepends=True):
        inside = line.startswith("environments:") or (inside and line[:1] in (" ", "\t"))
        lines.append("#" + line[1:] if inside else line)
    return "".join(lines)


def gate_server_pid(runtime: Path) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for pid_file in (runtime / "gitops-hooks").glob("gate-*.pid"):
            pid = int(pid_file.read_text(encoding="ascii"))
            sock = pid_file.with_suffix(".sock")
            if Path(f"/proc/{pid}").exists() and sock.exists():
                return pid
        time.sleep(0.05)
    raise AssertionError("no gate server came up")


def held(lock: Path) -> bool:
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def right_answers(clone: Clone, server: Server, tag: str) -> None:
    """A broken change is refused with its finding; the fix is accepted and told there is no target."""
    clone.write("apps/web.yaml", BROKEN_DEPLOYMENT)
    clone.commit(f"broken {tag}")
    refused = clone.push()
    assert not refused.accepted, (tag, refused.output)
    assert "apps/web.yaml:7:13: error [schema-invalid]" in "\n".join(refused.remote_lines()), tag
    assert no_target_lines(refused) == [], tag  # post-receive does not run for a refused push
    clone.write("apps/web.yaml", DEPLOYMENT.replace("nginx:1.27", f"nginx:1.27-{tag}"))
    clone.commit(f"fixed {tag}")
    accepted = clone.push()
    assert accepted.accepted, (tag, accepted.output)
    assert no_target_lines(accepted) == [("refs/heads/main", short(clone))], tag
    assert server.rev() == git("rev-parse", "HEAD", cwd=clone.path).stdout.strip()


def test_gone_busy_or_killed_the_push_gets_a_right_answer(server: Server, clone: Clone, runtime: Path) -> None:
    settled(server)
    clone.write("apps/web.yaml", DEPLOYMENT)
    clone.commit("first")
    assert clone.push().accepted
    pid = gate_server_pid(runtime)
    busy = next((runtime / "gitops-hooks").glob("gate-*.sock")).with_suffix(".sock.busy")
    # Busy: another push holds the server.
    fd = os.open(busy, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        right_answers(clone, server, "busy")
    finally:
        os.close(fd)
    # Killed in the middle of a push: stopped, handed the request, then killed.
    os.kill(pid, signal.SIGSTOP)
    clone.write("apps/web.yaml", BROKEN_DEPLOYMENT)
    clone.commit("broken while killed")
    result: list[Push] = []
    pusher = threading.Thread(target=lambda: result.append(clone.push()))
    pusher.start()
    deadline = time.monotonic() + 30
    while not held(busy) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert held(busy), "the client never took the server"
    os.kill(pid, signal.SIGKILL)
    pusher.join(60)
    assert result and not result[0].accepted, result
    assert "apps/web.yaml:7:13: error [schema-invalid]" in "\n".join(result[0].remote_lines())
    # Gone: the next push starts a new server in the background and judges itself meanwhile.
    right_answers(clone, server, "gone")


def test_a_ref_no_environment_follows_costs_no_suite_unless_a_reconcile_is_pending(
        server: Server, clone: Clone, kube: KubeAPI, tmp_path: Path) -> None:
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", context="prod")
    added = run_suite("env", "add", str(server.path), "prod", "--ref", "main", "--path", "clusters/prod",
                      "--kubeconfig", str(kubeconfig), "--context", "prod", "--namespace", "apps")
    assert added.returncode == 0, added.stderr
    settled(server)
    clone.write("clusters/prod/ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n")
    clone.commit("first")
    first = clone.push()
    assert any(line.startswith("gitops-hooks: prod: applied:") for line in first.remote_lines()), first.output
    cut_off(server, "GITOPS_HOOKS")  # only the thin client can answer now
    clone.write("docs/notes.md", "draft\n")
    clone.commit("draft")
    feature = clone.push(ref="HEAD:refs/heads/feature")
    assert feature.accepted, feature.output
    line = f"gitops-hooks: refs/heads/feature {short(clone)}: accepted, not applied: no environment follows this ref"
    assert line in feature.remote_lines(), feature.output
    assert not any("cannot start" in x for x in feature.remote_lines())
    # A reconcile left pending (the cluster was down): any push must let the suite pick it up.
    kube.stop()
    clone.write("clusters/prod/ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n"
                "  labels: {tier: prod}\n")
    clone.commit("second")
    main = clone.push()
    assert main.accepted, main.output
    assert ("gitops-hooks: accepted, not applied: cannot start /nonexistent/gitops-hooks (No such file or "
            "directory); tell the administrator") in main.remote_lines(), main.output
    (server.path / "hooks" / "post-receive").unlink()
    run_suite("install", str(server.path))
    settled(server)
    clone.write("clusters/prod/ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n"
                "  labels: {tier: production}\n")
    clone.commit("third")
    failed = clone.push()
    assert any(x.startswith("gitops-hooks: prod: failed:") for x in failed.remote_lines()), failed.output
    cut_off(server, "GITOPS_HOOKS")
    clone.write("docs/notes.md", "second draft\n")
    clone.commit("second draft")
    feature = clone.push(ref="HEAD:refs/heads/feature")
    assert ("gitops-hooks: accepted, not applied: cannot start /nonexistent/gitops-hooks (No such file or "
            "directory); tell the administrator") in feature.remote_lines(), feature.output
