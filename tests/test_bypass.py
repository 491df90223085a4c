"""No way around the gate: every path git offers is judged by the same rules, and nothing a pusher controls
(push options, ref names, file modes, submodule entries) changes the policy, the paths read or the commands run."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from conftest import GIT_ENV, Clone, Push, Server, git
from test_gate_e2e import DEPLOYMENT

BROKEN = DEPLOYMENT.replace("replicas: 2", "replicas: '2'")
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n"


def findings(push: Push) -> list[str]:
    return [x for x in push.remote_lines() if re.search(r":\d+:\d+: (error|warning|info) \[", x)]


def raw_push(clone: Clone, *args: str, env: dict[str, str] | None = None) -> Push:
    full = {**os.environ, **GIT_ENV, "HOME": str(clone.path), **(env or {})}
    full.pop("GIT_DIR", None)
    proc = subprocess.run(["git", "push", "--porcelain", "origin", *args], cwd=clone.path, capture_output=True,
                          text=True, env=full, check=False)
    return Push(proc.returncode, proc.stderr + proc.stdout)


def test_push_options_do_not_change_the_verdict(server: Server, clone: Clone) -> None:
    clone.write("apps/web.yaml", BROKEN)
    clone.commit()
    plain = clone.push()
    assert not plain.accepted
    expected = findings(plain)
    assert any("[schema-invalid]" in x for x in expected)
    for options in (["gitops.skip"], ["anything"], ["gitops.skip=true", "skip", "no-verify"],
                    ["GITOPS_HOOKS_NO_CACHE=1", "GIT_DIR=/etc", "rules.schema-invalid=off", "strict=false",
                     "kustomize.kubectl=/bin/sh", "limits.max_file_bytes=1", "refs.check=refs/nothing"],
                    [f"o{i}" for i in range(120)]):
        args = [x for o in options for x in ("-o", o)]
        push = clone.push(*args)
        assert not push.accepted, (options, push.output)
        assert findings(push) == expected, options
        assert server.rev() is None
    # --no-verify skips client-side hooks only: the server still judges.
    push = clone.push("--no-verify")
    assert not push.accepted and findings(push) == expected


def test_atomic_push_refuses_every_ref_when_one_fails(server: Server, clone: Clone) -> None:
    clone.write("apps/cm.yaml", CM.format(name="good"))
    good = clone.commit()
    git("branch", "good", good, cwd=clone.path)
    clone.write("apps/web.yaml", BROKEN)
    clone.commit()
    push = raw_push(clone, "--atomic", "refs/heads/good:refs/heads/good", "HEAD:refs/heads/main")
    assert push.returncode != 0
    assert "push refused: refs/heads/main at" in push.output
    assert server.rev("refs/heads/good") is None and server.rev("refs/heads/main") is None
    # Without --atomic, git still refuses every ref of a push whose pre-receive fails.
    push = raw_push(clone, "refs/heads/good:refs/heads/good", "HEAD:refs/heads/main")
    assert push.returncode != 0
    assert server.rev("refs/heads/good") is None and server.rev("refs/heads/main") is None


def test_deleting_a_protected_branch_by_every_spelling(server: Server, clone: Clone) -> None:
    server.configure('refs:\n  protect: ["refs/heads/main"]\n')
    clone.write("apps/cm.yaml", CM.format(name="good"))
    clone.commit()
    assert clone.push().accepted
    tip = server.rev()
    assert clone.push("--delete", ref="main").returncode != 0
    for spec in (":refs/heads/main", ":main"):
        push = raw_push(clone, spec)
        assert push.returncode != 0
        protected = "refs/heads/main:1:1: error [ref-protected] refs/heads/main is protected: it may not be deleted"
        assert protected in push.remote_lines()
    push = raw_push(clone, "--atomic", "HEAD:refs/heads/other", ":refs/heads/main")
    assert push.returncode != 0
    assert server.rev() == tip and server.rev("refs/heads/other") is None


def test_notes_refs_are_not_manifests_unless_configured(server: Server, clone: Clone) -> None:
    clone.write("apps/cm.yaml", CM.format(name="good"))
    clone.commit()
    assert clone.push().accepted
    git("notes", "add", "-m", BROKEN, cwd=clone.path)
    push = raw_push(clone, "refs/notes/commits:refs/notes/commits")
    assert push.returncode == 0, push.output
    assert not [x for x in push.remote_lines() if "refs/notes/commits at" in x]  # not checked (refs.check)
    # An administrator who wants every ref judged says so; then notes are checked like any tree.
    server.configure('refs:\n  check: ["refs/**"]\n')
    git("notes", "add", "-f", "-m", "token: AKIAIOSFODNN7EXAMPLE\nkind: x\n", cwd=clone.path)
    push = raw_push(clone, "refs/notes/commits:refs/notes/commits")
    assert any(x.startswith("refs/notes/commits at ") and " files, " in x for x in push.remote_lines()), push.output


def test_annotated_tags_are_checked_when_configured(server: Server, clone: Clone) -> None:
    server.configure('refs:\n  check: ["refs/heads/*", "refs/tags/*"]\n')
    clone.write("apps/web.yaml", BROKEN)
    clone.commit()
    git("tag", "-a", "v1", "-m", "release", cwd=clone.path)
    push = raw_push(clone, "refs/tags/v1:refs/tags/v1")
    assert push.returncode != 0
    assert any("[schema-invalid]" in x for x in push.remote_lines())
    assert server.rev("refs/tags/v1") is None


def test_a_deployed_ref_is_checked_even_outside_refs_check(server: Server, clone: Clone, tmp_path: Path) -> None:
    """An environment that reconciles a tag (or any ref) makes that ref checked: refs.check cannot leave a
    deployed ref unguarded."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    server.configure(f"environments:\n  prod:\n    ref: refs/tags/prod\n    cluster:\n      kubeconfig: {kubeconfig}\n")
    clone.write("apps/web.yaml", BROKEN)
    clone.commit()
    git("tag", "prod", cwd=clone.path)
    git("tag", "other", cwd=clone.path)
    push = raw_push(clone, "refs/tags/prod:refs/tags/prod")
    assert push.returncode != 0, push.output
    assert any("[schema-invalid]" in x for x in push.remote_lines())
    assert server.rev("refs/tags/prod") is None
    assert raw_push(clone, "refs/tags/other:refs/tags/other").returncode == 0  # a tag nobody deploys


def test_a_mode_only_change_is_judged(server: Server, clone: Clone) -> None:
    clone.write("apps/web.yaml", DEPLOYMENT)
    clone.commit()
    assert clone.push().accepted
    os.chmod(clone.path / "apps" / "web.yaml", 0o755)  # same blob, same cache entry for its content
    clone.commit()
    assert git("diff", "--summary", "HEAD~1", cwd=clone.path).stdout.strip() == "mode change 100644 => 100755 apps/web.yaml"
    push = clone.push()
    assert not push.accepted
    assert ("apps/web.yaml:1:1: error [imperative-script] apps/web.yaml is a script (its mode is executable (100755))"
            in push.remote_lines()), push.output


def test_a_script_becoming_executable_is_judged_by_its_mode(server: Server, clone: Clone) -> None:
    server.configure('allow:\n  - {rule: imperative-script, path: "tools/*"}\n')
    clone.write("tools/run.sh", "echo hello\n")
    clone.commit()
    assert clone.push().accepted
    os.chmod(clone.path / "tools" / "run.sh", 0o755)
    clone.commit()
    push = clone.push()
    # Allowed by the administrator for tools/*: still accepted, but judged again (the message names the mode).
    assert push.accepted
    server.configure("{}\n")
    push = clone.push(ref="HEAD:refs/heads/other")
    assert not push.accepted
    assert ("tools/run.sh:1:1: error [imperative-script] tools/run.sh is a script (its mode is executable (100755); "
            "its extension is .sh)") in push.remote_lines(), push.output


def test_a_submodule_only_change_is_judged(server: Server, clone: Clone) -> None:
    clone.write("apps/cm.yaml", CM.format(name="good"))
    clone.commit()
    git("update-index", "--add", "--cacheinfo", f"160000,{'1' * 40},vendor/lib", cwd=clone.path)
    git("commit", "-q", "-m", "submodule", cwd=clone.path)
    push = clone.push()
    assert push.accepted
    assert f"vendor/lib:1:1: info [tree-submodule] submodule vendor/lib ({'1' * 12}): not checked" in push.remote_lines()
    server.configure("rules:\n  tree-submodule: error\n")
    git("update-index", "--cacheinfo", f"160000,{'2' * 40},vendor/lib", cwd=clone.path)
    git("commit", "-q", "-m", "move submodule", cwd=clone.path)
    push = clone.push()
    assert not push.accepted
    assert f"vendor/lib:1:1: error [tree-submodule] submodule vendor/lib ({'2' * 12}): not checked" in push.remote_lines()


def test_no_finding_prints_a_secret_value_or_an_environment_variable(server: Server, clone: Clone) -> None:
    value = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzz9SECRET"
    env_value = "pusher-env-value-7f3a9c"
    clone.write("apps/secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n"
                f"  aws_secret_access_key: {value}\n  password: hunter2-{env_value}\n")
    clone.write("apps/cm.yaml", CM.format(name="env").replace("k: v", "k: ${GITOPS_BYPASS_TOKEN}\n  h: $(HOME)\n  p: '%PATH%'"))
    clone.write("apps/kustomization.yaml", "resources: [secret.yaml, cm.yaml]\nconfigMapGenerator:\n"
                "  - name: from-env\n    envs: [vars.env]\n")
    clone.write("apps/vars.env", "GITOPS_BYPASS_TOKEN\nHOME\n")  # kustomize would read these from the environment
    clone.commit()
    push = raw_push(clone, "HEAD:refs/heads/main", env={"GITOPS_BYPASS_TOKEN": env_value})
    assert push.returncode != 0
    assert any("[secret-plaintext]" in x or "[secret-value]" in x for x in push.remote_lines()), push.output
    assert value not in push.output and env_value not in push.output
    assert str(Path.home()) not in push.output or str(Path.home()) in str(clone.path)
    log = server.path / "gitops-hooks" / "log" / "gitops-hooks.log"
    assert not log.exists() or (value not in log.read_text() and env_value not in log.read_text())


def test_the_audit_notes_cannot_be_forged_or_deleted_by_a_push(server: Server, clone: Clone) -> None:
    clone.write("apps/cm.yaml", CM.format(name="good"))
    sha = clone.commit()
    assert clone.push().accepted
    git("--git-dir", str(server.path), "notes", "--ref=refs/notes/gitops", "add", "-m", "result: applied", sha)
    audit = server.rev("refs/notes/gitops")
    git("notes", "--ref=refs/notes/gitops", "add", "-m", "result: applied (forged)", sha, cwd=clone.path)
    for spec in ("+refs/notes/gitops:refs/notes/gitops", ":refs/notes/gitops"):
        push = raw_push(clone, spec)
        assert push.returncode != 0, push.output
        assert ("refs/notes/gitops:1:1: error [ref-protected] refs/notes/gitops is the server's audit trail: "
                "pushes may not change or delete it") in push.remote_lines(), push.output
        assert server.rev("refs/notes/gitops") == audit
