"""Installing the gate: idempotent, keeps existing hooks running, refuses what it cannot guard."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import ROOT, Clone, Server, git, run_suite
from test_gate_e2e import DEPLOYMENT


def test_install_creates_bare_repo_config_and_push_options(tmp_path: Path) -> None:
    repo = tmp_path / "new.git"
    proc = run_suite("install", str(repo))
    assert proc.returncode == 0, proc.stderr
    assert f"created the bare repository {repo}" in proc.stdout
    assert git("--git-dir", str(repo), "config", "receive.advertisePushOptions").stdout.strip() == "true"
    assert (repo / "gitops-hooks" / "config.yaml").is_file()
    hook = (repo / "hooks" / "pre-receive").read_text()
    assert "gitops-hooks-managed" in hook and "GITOPS_HOOKS='/" in hook
    assert os.access(repo / "hooks" / "pre-receive", os.X_OK)
    assert run_suite("config", "check", str(repo)).returncode == 0


def test_install_twice_is_idempotent_and_keeps_config(tmp_path: Path) -> None:
    repo = tmp_path / "r.git"
    assert run_suite("install", str(repo)).returncode == 0
    cfg = repo / "gitops-hooks" / "config.yaml"
    cfg.write_text("version: 1\nkubernetes_version: '1.30'\n")
    proc = run_suite("install", str(repo))
    assert proc.returncode == 0
    assert f"kept the configuration {cfg}" in proc.stdout
    assert cfg.read_text() == "version: 1\nkubernetes_version: '1.30'\n"
    assert not (repo / "hooks" / "pre-receive.d").exists()


def test_existing_hook_is_kept_and_still_runs(tmp_path: Path) -> None:
    repo = tmp_path / "r.git"
    git("init", "-q", "--bare", str(repo))
    old = repo / "hooks" / "pre-receive"
    old.write_text("#!/bin/sh\necho 'legacy hook ran'\n"
                   "while read o n r; do git log -1 --format=%s $n | grep -q FORBIDDEN && exit 1; done\nexit 0\n")
    old.chmod(0o755)
    proc = run_suite("install", str(repo))
    assert proc.returncode == 0
    kept = repo / "hooks" / "pre-receive.d" / "00-previous-pre-receive"
    assert f"kept the existing pre-receive hook: it now runs from {kept} after the checks" in proc.stdout
    server = Server(repo)  # installing again is harmless
    clone = Clone(server, tmp_path / "w")
    clone.write("web.yaml", DEPLOYMENT)
    clone.commit("fine")
    push = clone.push()
    assert push.accepted and "legacy hook ran" in push.remote_lines()
    clone.write("web.yaml", DEPLOYMENT.replace("replicas: 2", "replicas: 4"))
    clone.commit("FORBIDDEN by the old hook")
    push = clone.push()
    assert not push.accepted
    assert "gitops-hooks: pre-receive.d/00-previous-pre-receive refused the push (exit 1)" in push.remote_lines()


LEGACY_POST_RECEIVE = """#!/bin/sh
while read -r old new ref; do
  echo "legacy post-receive: $ref"
  echo "$ref" >> "$GIT_DIR/legacy-post-receive.log"
  [ "$ref" = refs/heads/fail ] && exit 3
done
exit 0
"""


def test_existing_post_receive_is_kept_and_runs_after_the_suite(tmp_path: Path, gate_runtime: Path) -> None:
    repo = tmp_path / "r.git"
    git("init", "-q", "--bare", "--initial-branch=main", str(repo))
    (repo / "hooks" / "post-receive").write_text(LEGACY_POST_RECEIVE)
    (repo / "hooks" / "post-receive").chmod(0o755)
    proc = run_suite("install", str(repo))
    assert proc.returncode == 0, proc.stderr
    kept = repo / "hooks" / "post-receive.d" / "00-previous-post-receive"
    assert f"kept the existing post-receive hook: it now runs from {kept} after the checks" in proc.stdout
    server = Server(repo)
    clone = Clone(server, tmp_path / "w")

    def after_the_suite(rev: str, ref: str = "refs/heads/main") -> list[str]:
        """What the pusher sees after the suite's post-receive answer."""
        push = clone.push(ref=f"HEAD:{ref}")
        assert push.accepted, push.output
        lines = push.remote_lines()
        said = f"gitops-hooks: {ref} {rev[:12]}: accepted, not applied: no target configured"
        assert said in lines, push.output
        return lines[lines.index(said) + 1:]

    clone.write("web.yaml", DEPLOYMENT)
    legacy = ["legacy post-receive: refs/heads/main"]
    assert after_the_suite(clone.commit("the suite answers")) == legacy  # a configuration seconds old
    old = time.time_ns() - 60 * 10**9
    os.utime(server.config_path, ns=(old, old))
    assert after_the_suite(clone.commit("the stamp is written")) == legacy
    hook = repo / "hooks" / "post-receive"  # from now on the thin client answers, without the suite
    hook.write_text(re.sub(r"(?m)^GITOPS_HOOKS=.*$", "GITOPS_HOOKS=/nonexistent/gitops-hooks", hook.read_text()))
    assert after_the_suite(clone.commit("the thin client answers")) == legacy
    assert after_the_suite(clone.commit("the old hook fails on this branch"), "refs/heads/fail") == [
        "legacy post-receive: refs/heads/fail",
        "gitops-hooks: post-receive.d/00-previous-post-receive failed (exit 3); the push stands"]
    assert (repo / "legacy-post-receive.log").read_text().split() == ["refs/heads/main"] * 3 + ["refs/heads/fail"]

def test_gitlab_style_hooks_dir(tmp_path: Path) -> None:
    repo = tmp_path / "r.git"
    hooks_dir = repo / "custom_hooks" / "pre-receive.d"
    git("init", "-q", "--bare", str(repo))
    proc = run_suite("install", str(repo), "--hooks-dir", str(hooks_dir))
    assert proc.returncode == 0
    assert sorted(p.name for p in hooks_dir.iterdir()) == ["gitops-hooks"]


def test_hooks_path_elsewhere_runs_the_hooks_kept_there(tmp_path: Path, gate_runtime: Path) -> None:
    # core.hooksPath: git runs the hooks of another folder; install keeps the old one beside the new.
    repo, hooks = tmp_path / "r.git", tmp_path / "shared-hooks"
    git("init", "-q", "--bare", "--initial-branch=main", str(repo))
    git("--git-dir", str(repo), "config", "core.hooksPath", str(hooks))
    hooks.mkdir()
    (hooks / "pre-receive").write_text("#!/bin/sh\necho 'shared hook ran'\n"
                                       "while read o n r; do git log -1 --format=%s $n | grep -q FORBIDDEN && exit 4; done\n")
    (hooks / "pre-receive").chmod(0o755)
    assert run_suite("install", str(repo), "--hooks-dir", str(hooks)).returncode == 0
    assert (hooks / "pre-receive.d" / "00-previous-pre-receive").is_file()
    clone = Clone(SimpleNamespace(path=repo), tmp_path / "w")  # type: ignore[arg-type]  # (no second install)
    clone.write("web.yaml", DEPLOYMENT)
    clone.commit("FORBIDDEN by the shared hook")
    push = clone.push()
    assert not push.accepted
    assert push.remote_lines()[-2:] == ["shared hook ran",
                                        "gitops-hooks: pre-receive.d/00-previous-pre-receive refused the push (exit 4)"]


def test_sha256_repository_is_refused_clearly(tmp_path: Path) -> None:
    repo = tmp_path / "sha256.git"
    made = git("init", "-q", "--bare", "--object-format=sha256", str(repo), check=False)
    if made.returncode != 0:
        pytest.skip("this git cannot make SHA-256 repositories")
    proc = run_suite("install", str(repo))
    assert proc.returncode == 2
    assert "uses sha256 object ids" in proc.stderr


def test_not_bare_is_refused(tmp_path: Path) -> None:
    git("init", "-q", str(tmp_path / "work"))
    proc = run_suite("install", str(tmp_path / "work"))
    assert proc.returncode == 2 and "is not a bare repository" in proc.stderr


def test_config_check_reports_problems(server: Server) -> None:
    server.configure("version: 1\nrules:\n  schema-invalid: loud\nkubernetes_version: '1.99'\n")
    proc = run_suite("config", "check", str(server.path))
    assert proc.returncode == 2
    assert "rules/schema-invalid" in proc.stderr
    server.configure("version: 1\nkubernetes_version: '1.99'\n")
    proc = run_suite("config", "check", str(server.path))
    assert proc.returncode == 2
    assert "Kubernetes 1.99 has no bundled schemas; choose one of 1.25 to 1.37" in proc.stderr


@pytest.mark.skipif(os.environ.get("GITOPS_HOOKS_SKIP_INSTALL_SH") == "1", reason="install.sh test switched off")
def test_install_sh_from_the_checkout(tmp_path: Path) -> None:
    """The README's first command: a private virtual environment, the hooks, a working gate."""
    home = tmp_path / "home"
    env = {**os.environ, "GITOPS_HOOKS_HOME": str(home)}
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.run(["bash", str(ROOT / "install.sh"), str(tmp_path / "platform.git")],
                          capture_output=True, text=True, env=env, check=False, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    hook = (tmp_path / "platform.git" / "hooks" / "pre-receive").read_text()
    assert f"GITOPS_HOOKS='{home}/venv/bin/gitops-hooks'" in hook
    again = subprocess.run(["bash", str(ROOT / "install.sh"), str(tmp_path / "platform.git")],
                           capture_output=True, text=True, env=env, check=False, timeout=900)
    assert again.returncode == 0 and "kept the configuration" in again.stdout


def test_every_package_of_the_suite_is_listed_for_installation() -> None:
    """setup.cfg lists the packages by name: one left out installs everywhere but an editable checkout
    (install.sh and pre-commit would fail to import it)."""
    import configparser

    from conftest import ROOT

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "gitops_hooks").rglob("__init__.py")}
    assert on_disk - listed == set()
