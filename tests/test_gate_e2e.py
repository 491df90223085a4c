"""The gate end to end: install into a bare repository, push with real git, both outcomes."""

from __future__ import annotations

from conftest import DEPLOYMENT, Clone, Server


def test_valid_push_is_accepted(server: Server, clone: Clone) -> None:
    clone.write("apps/web.yaml", DEPLOYMENT)
    sha = clone.commit("add web")
    push = clone.push()
    assert push.accepted, push.output
    assert server.rev() == sha
    assert any("gitops-hooks: accepted" in line for line in push.remote_lines())


def test_invalid_push_is_refused_with_file_line_and_rule(server: Server, clone: Clone) -> None:
    clone.write("apps/web.yaml", DEPLOYMENT)
    good = clone.commit("add web")
    assert clone.push().accepted
    clone.write("apps/web.yaml", DEPLOYMENT.replace("replicas: 2", "replicas: two"))
    clone.commit("break it")
    push = clone.push()
    assert not push.accepted
    lines = push.remote_lines()
    assert "apps/web.yaml:7:13: error [schema-invalid] deployment.apps/web: spec.replicas: 'two' is not of type integer" in lines
    assert any("push refused: refs/heads/main at" in line for line in lines)
    assert server.rev() == good  # the ref did not move

