"""pre-receive semantics with real pushes: creation, deletion, tags, several refs, force pushes, failures."""

from __future__ import annotations

from pathlib import Path

from conftest import Clone, Server, git
from test_gate_e2e import DEPLOYMENT

BROKEN = DEPLOYMENT.replace("replicas: 2", "replicas: two")


def test_new_branch_is_checked_whole_tree(server: Server, clone: Clone) -> None:
    clone.write("apps/web.yaml", DEPLOYMENT)
    clone.commit()
    assert clone.push().accepted
    git("checkout", "-q", "-b", "feature", cwd=clone.path)
    clone.write("apps/other.yaml", BROKEN.replace("name: web", "name: other"))
    clone.commit("broken on a new branch")
    push = clone.push(ref="HEAD:refs/heads/feature")
    assert not push.accepted
    assert any(line.startswith("apps/other.yaml:7:13: error [schema-invalid]") for line in push.remote_lines())
    assert server.rev("refs/heads/feature") is None


def test_checks_whole_tree_not_only_the_diff(server: Server, clone: Clone) -> None:
    """A file that was broken before the gate existed still blocks the next push that keeps it."""
    clone.write("apps/web.yaml", BROKEN)
    clone.commit()
    # Put the broken commit on the server behind the gate's back, as if it predates the install.
    git("push", "-q", "--no-verify", str(server.path), "HEAD:refs/heads/main", cwd=clone.path, check=False)
    hooks = server.path / "hooks" / "pre-receive"
    saved = hooks.read_text()
    hooks.write_text("#!/bin/sh\nexit 0\n")
    assert clone.push().accepted
    hooks.write_text(saved)
    clone.write("README.md", "docs only\n")
    clone.commit("docs")
    push = clone.push()
    assert not push.accepted
    assert any("apps/web.yaml:7:13" in line for line in push.remote_lines())


def test_branch_deletion_allowed_unless_protected(server: Server, clone: Clone) -> None:
    clone.write("apps/web.yaml", DEPLOYMENT)
    clone.commit()
    assert clone.push().accepted
    assert clone.push(ref="HEAD:refs/heads/tmp").accepted
    assert clone.push(ref=":refs/heads/tmp").accepted
    assert server.rev("refs/heads/tmp") is None
    server.configure("version: 1\nrefs:\n  protect: [refs/heads/main]\n")
    push = clone.push(ref=":refs/heads/main")
    assert not push.accepted
    assert "refs/heads/main:1:1: error [ref-protected] refs/heads/main is protected: it may not be deleted" in push.remote_lines()
    assert server.rev() is not None


def test_tags_not_checked_by_default_but_configurable(server: Server, clone: Clone) -> None:
    clone.write("apps/web.yaml", BROKEN)
    clone.commit()
    git("tag", "v1", cwd=clone.path)
    assert clone.push(ref="refs/tags/v1:refs/tags/v1").accepted
    server.configure('version: 1\nrefs:\n  check: ["refs/heads/*", "refs/tags/*"]\n')
    git("tag", "v2", cwd=clone.path)
    push = clone.push(ref="refs/tags/v2:refs/tags/v2")
    assert not push.accepted
    assert any("push refused: refs/tags/v2 at" in line for line in push.remote_lines())


def test_several_refs_one_bad_refuses_all(server: Server, clone: Clone) -> None:
    clone.write("apps/web.yaml", DEPLOYMENT)
    good = clone.commit()
    git("branch", "good", cwd=clone.path)
    git("checkout", "-q", "-b", "bad", cwd=clone.path)
    clone.write("apps/web.yaml", BROKEN)
    clone.commit()
    proc = git("push", "--porcelain", "origin", "good:refs/heads/good", "bad:refs/heads/bad", cwd=clone.path, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "push refused: refs/heads/bad at" in out
    assert server.rev("refs/heads/good") is None  # pre-receive refuses the whole push
    assert server.rev("refs/heads/bad") is None
    del good


def test_force_push_is_judged_on_the_new_tip(server: Server, clone: Clone) -> None:
    clone.write("apps/web.yaml", DEPLOYMENT)
    first = clone.commit()
    clone.write("apps/web.yaml", DEPLOYMENT.replace("replicas: 2", "replicas: 3"))
    clone.commit()
    assert clone.push().accepted
    git("reset", "-q", "--hard", first, cwd=clone.path)
    clone.write("apps/web.yaml", BROKEN)
    clone.commit("rewrite")
    push = clone.push("--force")
    assert not push.accepted
    git("reset", "-q", "--hard", first, cwd=clone.path)
    assert clone.push("--force").accepted
    assert server.rev() == first


def test_broken_server_config_refuses_with_message_not_traceback(server: Server, clone: Clone) -> None:
    clone.write("apps/web.yaml", DEPLOYMENT)
    clone.commit()
    server.configure("version: 1\nrefs: [not, a, map]\n")
    push = clone.push()
    assert not push.accepted
    text = "\n".join(push.remote_lines())
    assert "the server configuration is broken" in text
    assert "Traceback" not in push.output
    assert server.rev() is None


def test_internal_error_fails_closed_and_logs(server: Server, clone: Clone, tmp_path: Path) -> None:
    clone.write("apps/web.yaml", DEPLOYMENT)
    clone.commit()
    # A schema folder that went missing after the configuration was checked makes the gate fail.
    missing = tmp_path / "gone"
    missing.mkdir()
    server.configure(f"version: 1\nschema_dirs: [{missing}]\n")
    missing.rmdir()
    clone.write("x.yaml", "apiVersion: x.io/v1\nkind: X\nmetadata: {name: a}\n")
    clone.commit()
    push = clone.push()
    assert not push.accepted
    lines = push.remote_lines()
    assert any(line.startswith("gitops-hooks: push refused: internal error (") for line in lines), lines
    assert "Traceback" not in push.output
    log = (server.path / "gitops-hooks" / "log" / "gitops-hooks.log").read_text()
    assert "Traceback" in log


def test_repo_policy_can_tighten_not_loosen(server: Server, clone: Clone) -> None:
    clone.write("x.yaml", "apiVersion: example.io/v1\nkind: Widget\nmetadata: {name: a}\n")
    clone.commit()
    push = clone.push()
    assert push.accepted  # unknown custom kind: a warning by default
    assert any("warning [schema-unknown-kind]" in line for line in push.remote_lines())
    clone.write(".gitops-hooks.yaml", "rules:\n  schema-unknown-kind: error\n")
    clone.commit()
    push = clone.push()
    assert not push.accepted
    assert any("error [schema-unknown-kind]" in line for line in push.remote_lines())
    clone.write(".gitops-hooks.yaml", "rules:\n  schema-unknown-kind: off\n  schema-invalid: off\n")
    clone.write("apps/web.yaml", BROKEN)
    clone.commit()
    push = clone.push()
    assert not push.accepted
    lines = push.remote_lines()
    assert any("[policy-loosening-ignored] rules.schema-invalid: off is looser than error" in line for line in lines)
    assert any("error [schema-invalid]" in line for line in lines)
