"""Shared test helpers: real git, real bare repositories with the hooks installed, real pushes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gitops_hooks.gateclient import settle as settle_gate_servers  # what a test looks at after a push is written
from gitops_hooks.rulebook import register_all

register_all()  # as every entry point does: tests that call the library directly find every rule

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("GITOPS_HOOKS_SHARED") or ROOT.parent / "shared")  # a worktree elsewhere: set it
CORPUS = SHARED / "corpus"
CRDS = SHARED / "crds"
EXE = str(Path(sys.executable).parent / "gitops-hooks")

# The Deployment most tests push; `apps/web.yaml` in a clone. BROKEN_DEPLOYMENT fails at 7:13.
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: apps
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:1.27
"""
BROKEN_DEPLOYMENT = DEPLOYMENT.replace("replicas: 2", "replicas: two")

TEST_HOME = tempfile.mkdtemp(prefix="gitops-hooks-test-home-")

# The resident gate server the hooks start (gateclient.py) keeps its socket in XDG_RUNTIME_DIR: the tests
# get one of their own, its servers exit soon when idle and are stopped when the session ends.
TEST_RUNTIME = tempfile.mkdtemp(prefix="gitops-hooks-test-run-")
os.environ["XDG_RUNTIME_DIR"] = TEST_RUNTIME
os.environ.setdefault("GITOPS_HOOKS_SERVER_IDLE", "120")


def stop_gate_servers(runtime: str | Path) -> None:
    """SIGTERM the gate servers whose pid files are in a runtime folder (XDG_RUNTIME_DIR)."""
    import signal

    for pid_file in (Path(runtime) / "gitops-hooks").glob("gate-*.pid"):
        try:
            os.kill(int(pid_file.read_text(encoding="ascii")), signal.SIGTERM)
        except (OSError, ValueError):
            continue


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stop_gate_servers(TEST_RUNTIME)
    shutil.rmtree(TEST_RUNTIME, ignore_errors=True)  # the servers leave nothing there worth keeping

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Pusher",
    "GIT_AUTHOR_EMAIL": "pusher@example.com",
    "GIT_COMMITTER_NAME": "Test Pusher",
    "GIT_COMMITTER_EMAIL": "pusher@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(*args: str, cwd: Path | None = None, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **GIT_ENV, "HOME": TEST_HOME}  # nothing a test runs writes into the checkout
    env.pop("GIT_DIR", None)
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env, input=input, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def run_suite(*args: str, cwd: Path | None = None, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], cwd=cwd, capture_output=True, text=True, input=input, check=False)


@dataclass
class Push:
    returncode: int
    output: str  # what the pusher sees (git's stderr, with the `remote:` lines)

    @property
    def accepted(self) -> bool:
        return self.returncode == 0

    def remote_lines(self) -> list[str]:
        return [line[len("remote: "):].rstrip() for line in self.output.splitlines() if line.startswith("remote: ")]


class Server:
    """A bare repository guarded by gitops-hooks, installed by the real `gitops-hooks install`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        proc = run_suite("install", str(path))
        assert proc.returncode == 0, proc.stderr
        self.config_path = path / "gitops-hooks" / "config.yaml"

    def configure(self, text: str) -> None:
        self.config_path.write_text(text, encoding="utf-8")

    def rev(self, ref: str = "refs/heads/main") -> str | None:
        proc = git("--git-dir", str(self.path), "rev-parse", "--verify", "--quiet", ref, check=False)
        return proc.stdout.strip() or None


class Clone:
    """A working clone that commits files and pushes them with real `git push`."""

    def __init__(self, server: Server, path: Path) -> None:
        self.server = server
        self.path = path
        git("init", "--quiet", "--initial-branch=main", str(path))
        git("remote", "add", "origin", str(server.path), cwd=path)
        git("config", "user.name", "Test Pusher", cwd=path)
        git("config", "user.email", "pusher@example.com", cwd=path)

    def write(self, rel: str, text: str | bytes) -> Path:
        p = self.path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(text, encoding="utf-8")
        return p

    def copy_tree(self, src: Path, dest: str = "") -> None:
        shutil.copytree(src, self.path / dest if dest else self.path, dirs_exist_ok=True)

    def remove(self, rel: str) -> None:
        git("rm", "-r", "--quiet", rel, cwd=self.path)

    def commit(self, message: str = "change") -> str:
        git("add", "-A", cwd=self.path)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.path)
        return git("rev-parse", "HEAD", cwd=self.path).stdout.strip()

    def push(self, *args: str, ref: str = "HEAD:refs/heads/main") -> Push:
        proc = git("push", "--porcelain", "origin", *args, ref, cwd=self.path, check=False)
        settle_gate_servers()  # what a test looks at next (the cache) is written
        return Push(proc.returncode, proc.stderr + proc.stdout)


@pytest.fixture
def gate_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A runtime folder (and so a gate server) of the test's own; the server is stopped after."""
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(folder))
    yield folder
    stop_gate_servers(folder)


@pytest.fixture
def server(tmp_path: Path) -> Server:
    return Server(tmp_path / "server.git")


@pytest.fixture
def clone(server: Server, tmp_path: Path) -> Clone:
    return Clone(server, tmp_path / "work")


def need_corpus() -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"the shared corpus is not at {CORPUS}")


TOOLS = SHARED / "tools"


def real_kubeconform() -> str:
    """The real kubeconform (v0.7.0) of ../shared/tools, or a skip saying why it cannot be had."""
    wrapper = TOOLS / "kubeconform"
    if not wrapper.is_file():
        pytest.skip(f"the real kubeconform is not here: {wrapper} is missing (a clone without ../shared)")
    return str(wrapper)


@pytest.fixture(scope="session")
def realk8s(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real control plane (etcd, kube-apiserver, kube-controller-manager 1.25) on loopback ports, one
    per test session; yields its kubeconfig. Tests use namespaces of their own. Skips with the reason where
    etcd or ../shared/tools cannot be had. GITOPS_HOOKS_TEST_REALK8S=DIR keeps the cluster of state folder DIR
    running between test runs (started if need be, never stopped here: `realk8s stop DIR` ends it)."""
    script = TOOLS / "realk8s"
    if not script.is_file():
        pytest.skip(f"the real API server is not here: {script} is missing (a clone without ../shared)")
    kept = os.environ.get("GITOPS_HOOKS_TEST_REALK8S", "")
    state = Path(kept) if kept else tmp_path_factory.mktemp("realk8s")
    proc = subprocess.run([str(script), "start", str(state)], capture_output=True, text=True, timeout=240)
    if proc.returncode == 3:
        pytest.skip(f"the real API server cannot start here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    try:
        yield Path(proc.stdout.strip().splitlines()[-1].split("=", 1)[1])
    finally:
        if not kept:
            subprocess.run([str(script), "stop", str(state)], capture_output=True, timeout=60)
