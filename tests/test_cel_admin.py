"""Administrator rules (cel_rules in the server configuration): push, catalogue, explain, config check."""

from __future__ import annotations

from conftest import Clone, Server, run_suite

CONFIG = """\
cel_rules:
  - id: replicas-at-least-two
    expression: "!has(object.spec.replicas) || object.spec.replicas >= 2"
    message: production Deployments run at least two replicas
    messageExpression: "'replicas is ' + string(object.spec.replicas) + ', production needs at least 2'"
    severity: error
    match: {kinds: [apps/Deployment], namespaces: [prod], paths: ["prod/**"]}
  - id: team-label
    expression: "has(object.metadata.labels) && 'team' in object.metadata.labels"
    message: every object says which team owns it
    severity: warning
    match: {kinds: [ConfigMap]}
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: prod
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: web
          image: nginx:1.27
"""

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: prod
data: {a: b}
"""


def test_administrator_rule_refuses_and_accepts(server: Server, clone: Clone) -> None:
    server.configure(CONFIG)
    clone.write("prod/web.yaml", DEPLOYMENT.format(replicas=1))
    clone.write("prod/settings.yaml", CONFIGMAP)
    clone.commit("one replica")
    push = clone.push()
    assert not push.accepted
    lines = push.remote_lines()
    assert ("prod/web.yaml:1:1: error [replicas-at-least-two] deployment.apps/web: replicas is 1, production needs "
            "at least 2") in lines
    assert ("prod/settings.yaml:1:1: warning [team-label] configmap/settings: every object says which team owns it"
            ) in lines

    clone.write("prod/web.yaml", DEPLOYMENT.format(replicas=3))
    clone.write("staging/web.yaml", DEPLOYMENT.format(replicas=1))  # outside the rule's paths
    sha = clone.commit("three replicas")
    push = clone.push()
    assert push.accepted, push.output
    assert server.rev() == sha
    assert not any("replicas-at-least-two" in line for line in push.remote_lines())


def test_administrator_rules_are_listed_and_explained(server: Server) -> None:
    server.configure(CONFIG)
    listed = run_suite("rules", "--repo", str(server.path))
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith("replicas-at-least-two"))
    assert row.split()[1:3] == ["admin", "error"]
    assert row.endswith("production Deployments run at least two replicas [server config]")
    explained = run_suite("explain", "team-label", "--repo", str(server.path))
    assert explained.returncode == 0, explained.stderr
    assert explained.stdout.startswith("team-label (admin, default warning, source: server config)")
    assert "has(object.metadata.labels) && 'team' in object.metadata.labels" in explained.stdout
    assert "Applies to kinds: ConfigMap." in explained.stdout
    assert "team-label" not in run_suite("rules").stdout  # without --repo: built-in rules only


def test_a_broken_administrator_rule_is_a_configuration_error(server: Server, clone: Clone) -> None:
    server.configure(CONFIG.replace("object.spec.replicas >= 2", "object.spec.replicas >="))
    check = run_suite("config", "check", str(server.path))
    assert check.returncode == 2
    assert "cel_rules[0] (replicas-at-least-two): expression: the expression does not compile" in check.stderr
    clone.write("prod/settings.yaml", CONFIGMAP)
    clone.commit("anything")
    push = clone.push()
    assert not push.accepted  # fail closed
    assert any("the server configuration is broken" in line for line in push.remote_lines())

    server.configure(CONFIG.replace("id: team-label", "id: schema-invalid"))
    check = run_suite("config", "check", str(server.path))
    assert check.returncode == 2
    assert "cel_rules[1] (schema-invalid): the id is taken by a built-in rule; choose another" in check.stderr
