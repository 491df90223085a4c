"""Before the push: the plain git pre-commit hook (`install --client`) and the pre-commit framework's hook
(`.pre-commit-hooks.yaml`), each with real `git commit` or the real `pre-commit` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import DEPLOYMENT, GIT_ENV, ROOT, git, run_suite

PRE_COMMIT = str(Path(sys.executable).parent / "pre-commit")

GOOD = DEPLOYMENT
BAD = GOOD.replace("replicas: 2", "replicas: two")
BAD_LINE = ("apps/web.yaml:7:13: error [schema-invalid] deployment.apps/web: "
            "spec.replicas: 'two' is not of type integer")


def new_repo(path: Path) -> Path:
    git("init", "--quiet", "--initial-branch=main", str(path))
    git("config", "user.name", "Dev", cwd=path)
    git("config", "user.email", "dev@example.com", cwd=path)
    return path


def put(repo: Path, rel: str, text: str) -> None:
    p = repo / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")


def commit(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return git("commit", "-m", "change", *args, cwd=repo, check=False)


def head(repo: Path) -> str | None:
    return git("rev-parse", "--verify", "--quiet", "HEAD", cwd=repo, check=False).stdout.strip() or None


# ---------------------------------------------------------------------------- install --client

def test_client_hook_refuses_an_invalid_commit_and_accepts_a_valid_one(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "work")
    installed = run_suite("install", "--client", str(repo))
    assert installed.returncode == 0, installed.stderr
    assert "installed" in installed.stdout

    put(repo, "apps/web.yaml", BAD)
    git("add", "-A", cwd=repo)
    refused = commit(repo)
    assert refused.returncode != 0
    assert BAD_LINE in refused.stderr  # git shows hook output on stderr
    assert "commit refused" in refused.stderr
    assert head(repo) is None

    put(repo, "apps/web.yaml", GOOD)
    git("add", "-A", cwd=repo)
    accepted = commit(repo)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert head(repo) is not None


def test_client_hook_checks_what_commit_a_will_commit(tmp_path: Path) -> None:
    """`git commit -a` stages into a temporary index (GIT_INDEX_FILE); the hook must judge that one."""
    repo = new_repo(tmp_path / "work")
    assert run_suite("install", "--client", str(repo)).returncode == 0
    put(repo, "apps/web.yaml", GOOD)
    git("add", "-A", cwd=repo)
    assert commit(repo).returncode == 0
    first = head(repo)
    put(repo, "apps/web.yaml", BAD)  # modified, not staged
    refused = commit(repo, "-a")
    assert refused.returncode != 0
    assert BAD_LINE in refused.stderr  # git shows hook output on stderr
    assert head(repo) == first
    put(repo, "other.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: other\n")
    git("add", "other.yaml", cwd=repo)
    refused_path = commit(repo, "--", "apps/web.yaml")  # `git commit PATH` also uses a temporary index
    assert refused_path.returncode != 0
    assert head(repo) == first


def test_client_install_keeps_and_chains_the_previous_hook(tmp_path: Path) -> None:
    repo = new_repo(tmp_path / "work")
    hooks = repo / ".git" / "hooks"
    log = tmp_path / "previous.log"
    previous = hooks / "pre-commit"
    previous.write_text(f"#!/bin/sh\necho ran >> '{log}'\nexit \"${{PREVIOUS_EXIT:-0}}\"\n", encoding="utf-8")
    previous.chmod(0o755)

    installed = run_suite("install", "--client", str(repo))
    assert installed.returncode == 0
    assert "kept the existing pre-commit hook" in installed.stdout
    kept = hooks / "pre-commit.d" / "00-previous-pre-commit"
    assert "echo ran" in kept.read_text(encoding="utf-8")

    put(repo, "apps/web.yaml", BAD)
    git("add", "-A", cwd=repo)
    assert commit(repo).returncode != 0
    assert not log.exists()  # the checks refused first; the previous hook did not need to run

    put(repo, "apps/web.yaml", GOOD)
    git("add", "-A", cwd=repo)
    env = {**os.environ, **GIT_ENV, "PREVIOUS_EXIT": "3"}
    vetoed = subprocess.run(["git", "commit", "-m", "x"], cwd=repo, env=env, capture_output=True, text=True)
    assert vetoed.returncode != 0
    assert "pre-commit.d/00-previous-pre-commit refused the commit (exit 3)" in vetoed.stderr
    assert log.read_text() == "ran\n"

    assert commit(repo).returncode == 0
    assert log.read_text() == "ran\nran\n"

    again = run_suite("install", "--client", str(repo))  # idempotent: our own hook is not chained
    assert again.returncode == 0
    assert sorted(p.name for p in (hooks / "pre-commit.d").iterdir()) == ["00-previous-pre-commit"]


def test_client_install_into_a_folder_that_is_no_clone_exits_2(tmp_path: Path) -> None:
    proc = run_suite("install", "--client", str(tmp_path))
    assert proc.returncode == 2
    assert "is not a git working clone" in proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------- the pre-commit framework

def test_hook_manifest_is_valid_for_pre_commit() -> None:
    manifest = ROOT / ".pre-commit-hooks.yaml"
    proc = subprocess.run([PRE_COMMIT, "validate-manifest", str(manifest)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [hook] = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    assert hook["id"] == "gitops-hooks"
    assert hook["pass_filenames"] is False


def try_repo(repo: Path) -> subprocess.CompletedProcess[str]:
    """`pre-commit try-repo <this project> gitops-hooks` in a repository, as a team would try the hook.

    pre-commit clones this project at its HEAD commit and installs it, with its dependencies from the package
    index, into a fresh environment. `--ref HEAD` keeps uncommitted edits in the checkout out of it."""
    env = {**os.environ, **GIT_ENV}
    env.pop("GIT_DIR", None)
    env.pop("GIT_INDEX_FILE", None)
    sha = git("rev-parse", "HEAD", cwd=ROOT).stdout.strip()
    command = [PRE_COMMIT, "try-repo", str(ROOT), "gitops-hooks", "--ref", sha, "--color", "never"]
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize(("manifest", "accepted"), [(BAD, False), (GOOD, True)], ids=["invalid", "valid"])
def test_pre_commit_try_repo(tmp_path: Path, manifest: str, accepted: bool) -> None:
    repo = new_repo(tmp_path / "work")
    put(repo, "apps/web.yaml", manifest)
    git("add", "-A", cwd=repo)
    proc = try_repo(repo)
    out = proc.stdout + proc.stderr
    if accepted:
        assert proc.returncode == 0, out
        assert "Passed" in out
    else:
        assert proc.returncode == 1, out
        assert "Failed" in out
        assert BAD_LINE in out
        assert "- exit code: 1" in out


def test_pre_commit_framework_as_a_team_installs_it(tmp_path: Path) -> None:
    """.pre-commit-config.yaml naming this project, `pre-commit install`, then real `git commit`s."""
    repo = new_repo(tmp_path / "work")
    sha = git("rev-parse", "HEAD", cwd=ROOT).stdout.strip()
    config = {"repos": [{"repo": str(ROOT), "rev": sha, "hooks": [{"id": "gitops-hooks"}]}]}
    put(repo, ".pre-commit-config.yaml", yaml.safe_dump(config))
    env = {**os.environ, **GIT_ENV, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    env.pop("GIT_DIR", None)
    installed = subprocess.run([PRE_COMMIT, "install"], cwd=repo, env=env, capture_output=True, text=True)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    def commit_with_framework() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "commit", "-m", "change"], cwd=repo, env=env, capture_output=True,
                              text=True, timeout=900)

    put(repo, "apps/web.yaml", BAD)
    git("add", "-A", cwd=repo)
    refused = commit_with_framework()
    assert refused.returncode != 0
    assert BAD_LINE in refused.stdout + refused.stderr
    assert head(repo) is None

    put(repo, "apps/web.yaml", GOOD)
    git("add", "-A", cwd=repo)
    accepted = commit_with_framework()
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "Passed" in accepted.stdout + accepted.stderr
    assert head(repo) is not None
