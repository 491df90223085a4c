"""Crash safety of pre-receive: the hook killed with SIGKILL at random points, for real.

A wrapper installed in front of the real hook starts it, records its pid, and reports how it ended; the
test kills that pid after a random delay. A killed hook must refuse its push (git treats the hook's death as
a refusal), and leave the repository, the result cache and later pushes sound.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import GIT_ENV, Clone, Server, git, settle_gate_servers
from test_gate_e2e import DEPLOYMENT

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: '{value}'\n"

WRAPPER = """#!{python}
import subprocess, sys
child = subprocess.Popen([{real!r}])
open({pidfile!r}, "w").write(str(child.pid))
rc = child.wait()
open({rcfile!r}, "w").write(str(rc))
sys.exit(1 if rc < 0 else rc)
"""


def install_wrapper(server: Server, tmp: Path) -> tuple[Path, Path]:
    hook = server.path / "hooks" / "pre-receive"
    real = server.path / "hooks" / "pre-receive.real"
    hook.rename(real)
    pidfile, rcfile = tmp / "hook.pid", tmp / "hook.rc"
    hook.write_text(WRAPPER.format(python=sys.executable, real=str(real), pidfile=str(pidfile), rcfile=str(rcfile)))
    hook.chmod(0o755)
    return pidfile, rcfile


def start_push(clone: Clone, ref: str) -> subprocess.Popen[str]:
    env = {**os.environ, **GIT_ENV, "HOME": str(clone.path)}
    return subprocess.Popen(["git", "push", "--porcelain", "origin", f"HEAD:{ref}"], cwd=clone.path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def write_change(clone: Clone, n: int, files: int) -> None:
    """New content every time (cold cache: the hook parses, validates and writes the cache)."""
    rnd = random.Random(n)
    for i in range(files):
        clone.write(f"apps/cm{i}.yaml", CM.format(name=f"cm{i}", value=f"{n}-{rnd.random()}"))
    clone.write("base/web.yaml", DEPLOYMENT.replace("replicas: 2", f"replicas: {1 + n % 5}"))
    clone.write("base/kustomization.yaml", "resources: [web.yaml]\n")
    clone.write("overlay/kustomization.yaml", f"resources: [../base]\nnamePrefix: p{n}-\n")  # kubectl renders it
    clone.commit(f"change {n}")


def leftover_hooks(server: Server) -> list[str]:
    """Processes still running in the server's folder from a hook (a killed hook's forked workers, kubectl)."""
    out = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and os.readlink(proc / "cwd").startswith(str(server.path)):
                out.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return out


def assert_sound(server: Server) -> None:
    deadline = time.monotonic() + 10
    while leftover_hooks(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not leftover_hooks(server), f"processes left behind: {leftover_hooks(server)}"
    fsck = git("--git-dir", str(server.path), "fsck", "--no-dangling", "--no-progress", check=False)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    left = [p.name for p in (server.path / "objects").iterdir() if p.name.startswith("tmp_objdir")]
    assert not left, f"quarantine left behind: {left}"
    settle_gate_servers()
    db = server.path / "gitops-hooks" / "cache" / "cache.sqlite"
    if db.exists():
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            conn.execute("SELECT count(*) FROM kv").fetchone()


def wait_for(path: Path, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.005)
    raise AssertionError(f"{path} did not appear")


def test_sigkill_at_random_points_refuses_the_push_and_leaves_everything_sound(server: Server, clone: Clone,
                                                                                 tmp_path: Path) -> None:
    pidfile, rcfile = install_wrapper(server, tmp_path)
    # Pushes that nobody kills: the first starts the gate server (it runs in the hook's own process);
    # the second says how long a hook like the killed ones runs here, to spread the kills over it.
    for n in (0, 100):
        pidfile.unlink(missing_ok=True)
        rcfile.unlink(missing_ok=True)
        write_change(clone, n, 80)
        push = start_push(clone, "refs/heads/main")
        wait_for(pidfile)
        started = time.monotonic()
        wait_for(rcfile)
        span = time.monotonic() - started  # the hook's own run, from its start to its exit status
        out, err = push.communicate(timeout=120)
        assert push.returncode == 0, err
    tip = server.rev()
    rnd = random.Random(int(os.environ.get("GITOPS_HOOKS_CRASH_SEED", "7")))
    killed = 0
    for n in range(1, 13):
        pidfile.unlink(missing_ok=True)
        rcfile.unlink(missing_ok=True)
        write_change(clone, n, 80 if n % 2 else 10)
        push = start_push(clone, "refs/heads/main")
        pid = int(wait_for(pidfile))
        time.sleep(rnd.uniform(0, span))
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = push.communicate(timeout=120)
        hook_rc = int(wait_for(rcfile))
        if hook_rc == -signal.SIGKILL:
            killed += 1
            assert push.returncode != 0, err
            assert "pre-receive hook declined" in out + err
            assert server.rev() == tip, "a killed hook's push moved the ref"
        else:  # the hook had finished before the kill: a valid change, accepted
            assert push.returncode == 0 and hook_rc == 0, err
            tip = server.rev()
        assert_sound(server)
    print(f"{killed} of 12 hooks killed mid-run (a hook runs {span:.2f} s)")
    assert killed >= 6, f"only {killed} of 12 kills landed while the hook ran"
    # Later pushes are judged as before: a valid one accepted, an invalid one refused with its finding.
    pidfile.unlink(missing_ok=True)
    write_change(clone, 99, 80)
    push = start_push(clone, "refs/heads/main")
    out, err = push.communicate(timeout=120)
    assert push.returncode == 0, err
    assert server.rev() == git("rev-parse", "HEAD", cwd=clone.path).stdout.strip()
    clone.write("base/web.yaml", DEPLOYMENT.replace("replicas: 2", "replicas: '2'"))
    clone.commit("broken")
    push = start_push(clone, "refs/heads/main")
    out, err = push.communicate(timeout=120)
    assert push.returncode != 0
    assert ("remote: base/web.yaml:7:13: error [schema-invalid] deployment.apps/p99-web: spec.replicas: '2' is not "
            "of type integer") in err, err
    assert_sound(server)


def test_a_suite_that_cannot_load_refuses_with_one_line_not_a_traceback(server: Server, clone: Clone,
                                                                          tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # A dependency broken on the server (here: a pygit2 that fails to import, put first on the path).
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "pygit2.py").write_text("raise ImportError('libgit2.so.1.7: cannot open shared object file')\n")
    monkeypatch.setenv("PYTHONPATH", str(broken))
    monkeypatch.setenv("GITOPS_HOOKS_NO_SERVER", "1")
    clone.write("apps/web.yaml", DEPLOYMENT)
    clone.commit()
    push = clone.push()
    assert not push.accepted
    assert server.rev() is None
    lines = push.remote_lines()
    assert "gitops-hooks: push refused: the gate cannot load (ImportError: libgit2.so.1.7: cannot open shared " \
           "object file); tell the administrator" in lines
    assert not any("Traceback" in line for line in lines)
