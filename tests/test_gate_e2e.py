"""The gate end to end: install into a bare repository, push with real git, both outcomes."""

from __future__ import annotations

from conftest import Clone, Server

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

