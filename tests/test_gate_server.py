"""The resident gate server: pushes it judges look exactly like pushes judged in the hook's own process,
and a missing, busy, broken or confused server never changes a verdict."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import BROKEN_DEPLOYMENT, DEPLOYMENT, EXE, Clone, Server, git, settle_gate_servers

PYTHON = str(Path(EXE).parent / "python")


@pytest.fixture(autouse=True)
def runtime(gate_runtime: Path) -> Path:
    """Each test has a gate server of its own."""
    return gate_runtime


def client_path(server: Server) -> str:
    hook = (server.path / "hooks" / "pre-receive").read_text(encoding="utf-8")
    line = next(ln for ln in hook.splitlines() if ln.startswith("GITOPS_HOOKS_CLIENT="))
    return line.split("=", 1)[1].strip("'")


def socket_path(server: Server) -> Path:
    out = subprocess.run([PYTHON, "-I", "-S", client_path(server), "--socket-path"], capture_output=True,
                         text=True, check=True, env={**os.environ})
    return Path(out.stdout.strip())


def server_log(server: Server) -> str:
    log = socket_path(server).with_suffix(".log")
    return log.read_text(encoding="utf-8") if log.exists() else ""


def served_pushes(server: Server) -> int:
    return sum(1 for line in server_log(server).splitlines() if ": pre-receive in " in line)


def wait_for_server(server: Server) -> None:
    path = socket_path(server)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if path.exists():
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(path))
                return
            except OSError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"no gate server at {path}; log:\n{server_log(server)}")


def stop(server: Server) -> None:
    """SIGTERM the server install started, once it listens, and wait until it is gone."""
    wait_for_server(server)
    pid_file = socket_path(server).with_suffix(".pid")
    pid = int(pid_file.read_text(encoding="ascii"))
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while (Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
           and time.monotonic() < deadline):
        time.sleep(0.05)
    while socket_path(server).exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def start(server: Server, clone: Clone) -> None:
    """Push once (the hook starts the server in the background), then wait until it listens."""
    clone.write("apps/web.yaml", DEPLOYMENT)
    clone.commit("base")
    assert clone.push().accepted
    wait_for_server(server)


def test_installed_hook_uses_the_thin_client(server: Server) -> None:
    hook = (server.path / "hooks" / "pre-receive").read_text(encoding="utf-8")
    assert "GITOPS_HOOKS_PYTHON='/" in hook
    assert client_path(server).endswith("gitops_hooks/gateclient.py")


def test_server_verdicts_match_the_hooks_own_process(server: Server, clone: Clone, tmp_path: Path) -> None:
    start(server, clone)
    before = served_pushes(server)
    clone.write("apps/web.yaml", BROKEN_DEPLOYMENT)
    clone.commit("broken")
    served = clone.push()
    assert served_pushes(server) == before + 1, server_log(server)
    assert not served.accepted
    assert "apps/web.yaml:7:13: error [schema-invalid]" in "\n".join(served.remote_lines())

    # The same push judged without a server: the pusher sees the same lines.
    alone = Server(tmp_path / "alone.git")
    other = Clone(alone, tmp_path / "alone-work")
    other.write("apps/web.yaml", DEPLOYMENT)
    other.commit("base")
    os.environ["GITOPS_HOOKS_NO_SERVER"] = "1"
    try:
        assert other.push().accepted
        other.write("apps/web.yaml", BROKEN_DEPLOYMENT)
        other.commit("broken")
        in_process = other.push()
    finally:
        del os.environ["GITOPS_HOOKS_NO_SERVER"]
    assert served_pushes(server) == before + 1  # that push did not reach the server

    def gate_lines(push: object) -> list[str]:
        return [re.sub(r"\b[0-9a-f]{12}\b", "<commit>", ln.split(" (")[0])  # the commits' dates differ
                for ln in push.remote_lines() if ln]  # type: ignore[attr-defined]

    assert gate_lines(served) == gate_lines(in_process)
    assert server.rev() == git("rev-parse", "HEAD~1", cwd=clone.path).stdout.strip()  # untouched


def test_each_push_gets_its_own_environment(server: Server, clone: Clone) -> None:
    """Push options (environment variables) of one push do not leak into the next one."""
    start(server, clone)
    clone.write("apps/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: apps\n")
    clone.commit("cm")
    dry = clone.push("-o", "gitops.dry-run")
    assert not dry.accepted and "dry run" in dry.output
    real = clone.push()
    assert real.accepted, real.output
    assert "dry run" not in real.output
    assert served_pushes(server) >= 2


def test_busy_server_is_not_waited_for(server: Server, clone: Clone) -> None:
    start(server, clone)
    before = served_pushes(server)
    busy = os.open(str(socket_path(server)) + ".busy", os.O_RDWR)
    fcntl.flock(busy, fcntl.LOCK_EX)  # as if another push had the server
    try:
        clone.write("apps/web.yaml", BROKEN_DEPLOYMENT)
        clone.commit("broken")
        push = clone.push()
    finally:
        os.close(busy)
    assert not push.accepted
    assert "apps/web.yaml:7:13: error [schema-invalid]" in "\n".join(push.remote_lines())
    assert served_pushes(server) == before


def test_a_server_that_dies_mid_push_changes_no_verdict(server: Server, clone: Clone) -> None:
    """Whatever listens on the socket and hangs up without an answer: the hook judges the push itself."""
    stop(server)  # the one install started
    path = socket_path(server)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(4)
    hung_up = []

    def rude() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            hung_up.append(1)
            conn.close()

    thread = threading.Thread(target=rude, daemon=True)
    thread.start()
    try:
        clone.write("apps/web.yaml", BROKEN_DEPLOYMENT)
        clone.commit("broken")
        refused = clone.push()
        clone.write("apps/web.yaml", DEPLOYMENT)
        clone.commit("fixed")
        accepted = clone.push()
    finally:
        listener.close()
        path.unlink()
    assert len(hung_up) == 2
    assert not refused.accepted
    assert "apps/web.yaml:7:13: error [schema-invalid]" in "\n".join(refused.remote_lines())
    assert accepted.accepted, accepted.output
    assert server.rev() == git("rev-parse", "HEAD", cwd=clone.path).stdout.strip()


def test_garbage_on_the_socket_does_not_stop_the_server(server: Server, clone: Clone) -> None:
    start(server, clone)
    for junk in (b"", b"\xff" * 10, (3).to_bytes(4, "big") + (2**60).to_bytes(8, "big")):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(socket_path(server)))
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(10)
            assert s.recv(10) == b""  # no answer, the connection is closed
    before = served_pushes(server)
    clone.write("apps/web.yaml", BROKEN_DEPLOYMENT)
    clone.commit("broken")
    assert not clone.push().accepted
    assert served_pushes(server) == before + 1


def test_no_server_when_disabled(server: Server, clone: Clone, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITOPS_HOOKS_NO_SERVER", "1")
    clone.write("apps/web.yaml", BROKEN_DEPLOYMENT)
    clone.commit()
    push = clone.push()
    assert not push.accepted
    assert "apps/web.yaml:7:13: error [schema-invalid]" in "\n".join(push.remote_lines())
    assert served_pushes(server) == 0


def test_install_starts_the_server(tmp_path: Path) -> None:
    repo = Server(tmp_path / "new.git")  # gitops-hooks install
    wait_for_server(repo)


def test_sigterm_stops_an_idle_server_and_the_next_one_cleans_up(server: Server, clone: Clone,
                                                                  runtime: Path) -> None:
    start(server, clone)
    pid_file = socket_path(server).with_suffix(".pid")
    pid = int(pid_file.read_text(encoding="ascii"))
    stop(server)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert not socket_path(server).exists() and not pid_file.exists()
    folder = runtime / "gitops-hooks"
    for suffix in (".sock", ".pid", ".sock.busy", ".sock.lock", ".log"):  # left by a server of older code
        (folder / f"gate-0123456789abcdef{suffix}").write_text("", encoding="utf-8")
    clone.write("apps/web.yaml", BROKEN_DEPLOYMENT)  # judged all the same; starts a new server
    clone.commit("broken")
    assert not clone.push().accepted
    wait_for_server(server)
    assert not (folder / "gate-0123456789abcdef.sock.lock").exists()
    assert not (folder / "gate-0123456789abcdef.pid").exists()
    assert (folder / "gate-0123456789abcdef.log").exists()  # logs stay a week


def test_cold_pushes_forked_across_cores_by_the_server(server: Server, clone: Clone, tmp_path: Path) -> None:
    """Enough files for the forked workers, several cold pushes in a row to one server (each must end
    well inside the timeout: a worker that ignored the pool's SIGTERM once hung the server's push)."""
    start(server, clone)
    for n in range(80):
        clone.write(f"many/cm-{n}.yaml", f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{n}\n"
                                         f"  namespace: apps\ndata:\n  n: \"{n}\"\n")
    clone.write("many/bad.yaml", BROKEN_DEPLOYMENT.replace("name: web", "name: bad"))
    clone.commit("many")
    for i in range(3):
        fresh = Server(tmp_path / f"fresh-{i}.git")
        fresh.configure("version: 1\nlimits:\n  timeout_seconds: 30\n")
        before = served_pushes(server)
        started = time.monotonic()
        push = git("push", "--porcelain", str(fresh.path), "HEAD:refs/heads/main", cwd=clone.path, check=False)
        assert time.monotonic() - started < 25
        assert served_pushes(server) == before + 1
        assert push.returncode != 0
        assert "many/bad.yaml:7:13: error [schema-invalid]" in push.stderr, push.stderr
        assert "82 files" in push.stderr or "82 manifests" in push.stderr, push.stderr


def test_files_the_server_writes_follow_the_pushers_umask(server: Server, clone: Clone, tmp_path: Path) -> None:
    start(server, clone)
    fresh = Server(tmp_path / "fresh.git")
    before = served_pushes(server)
    old = os.umask(0o077)
    try:
        push = git("push", "--porcelain", str(fresh.path), "HEAD:refs/heads/main", cwd=clone.path, check=False)
    finally:
        os.umask(old)
    assert push.returncode == 0, push.stderr
    assert served_pushes(server) == before + 1
    db = fresh.path / "gitops-hooks" / "cache" / "cache.sqlite"
    assert db.stat().st_mode & 0o777 == 0o600


def test_the_server_writes_the_result_cache_after_its_answer(server: Server, clone: Clone, tmp_path: Path) -> None:
    """The server answers first and writes the push's cache rows after; whoever needs them waits on its
    writing lock (gateclient.settle, as Clone.push does) and finds them all."""
    start(server, clone)
    fresh = Server(tmp_path / "fresh.git")
    for i in range(5):
        clone.write(f"apps/web{i}.yaml", DEPLOYMENT.replace("name: web", f"name: web{i}"))
    clone.commit("five more")
    before = served_pushes(server)
    push = git("push", "--porcelain", str(fresh.path), "HEAD:refs/heads/main", cwd=clone.path, check=False)
    assert push.returncode == 0, push.stderr
    assert served_pushes(server) == before + 1  # judged by the server, not in the hook's own process
    settle_gate_servers()
    db = fresh.path / "gitops-hooks" / "cache" / "cache.sqlite"
    rows = dict(sqlite3.connect(db).execute("SELECT substr(k, 1, 9), count(*) FROM kv GROUP BY 1"))
    assert rows.get("v1:parse:", 0) >= 6 and rows.get("v1:checks", 0) >= 6, rows  # each of the six manifests


def test_a_silent_connection_holds_the_server_for_seconds_only(server: Server, clone: Clone,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITOPS_HOOKS_CLIENT_TIMEOUT", "60")  # a server stuck on the peer: 60 s, then in-process
    start(server, clone)
    with socket.socket(socket.AF_UNIX) as silent:
        silent.connect(str(socket_path(server)))  # says nothing, hangs on
        clone.write("apps/web.yaml", BROKEN_DEPLOYMENT)
        clone.commit("broken")
        started = time.monotonic()
        push = clone.push()
        waited = time.monotonic() - started
    assert not push.accepted
    assert "apps/web.yaml:7:13: error [schema-invalid]" in "\n".join(push.remote_lines())
    assert waited < 40  # the server gave up on the silent peer after its 10 s, then judged the push


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, state) of each process whose parent is pid."""
    out = []
    for proc in Path("/proc").iterdir():
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if proc.name.isdigit() and int(fields[1]) == pid:
            out.append((int(proc.name), fields[0]))
    return out


def test_the_server_reaps_the_workers_of_a_parallel_push(server: Server, clone: Clone) -> None:
    """A cold push of many files forks workers; the push does not wait for them to finish exiting, and the
    server waits for them once it has answered: none is left behind, not even as a zombie."""
    start(server, clone)
    pid = int(socket_path(server).with_suffix(".pid").read_text(encoding="ascii"))
    before = served_pushes(server)
    for i in range(80):  # over PARALLEL_MIN blobs: the parallel path
        clone.write(f"apps/web{i}.yaml", DEPLOYMENT.replace("name: web", f"name: web{i}"))
    clone.commit("many")
    assert clone.push().accepted
    assert served_pushes(server) == before + 1, server_log(server)
    deadline = time.monotonic() + 10
    while _children(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _children(pid) == []
