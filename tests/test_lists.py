"""`kind: List` (and any `...List` kind with items) is applied by kubectl item by item: the gate checks each
item as an object at its own line, in a plain folder, in a kustomize build and in an environment's folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Clone, Server, run_suite
from kubeapi import KubeAPI

from gitops_hooks.documents import parse

# The shape of kubectl's documentation example (a v1 List of a Service and a Deployment).
DOCS_EXAMPLE = """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata:
    name: my-nginx-svc
    labels:
      app: nginx
  spec:
    type: LoadBalancer
    ports:
    - port: 80
    selector:
      app: nginx
- apiVersion: apps/v1
  kind: Deployment
  metadata:
    name: my-nginx
    labels:
      app: nginx
  spec:
    replicas: 3
    selector:
      matchLabels:
        app: nginx
    template:
      metadata:
        labels:
          app: nginx
      spec:
        containers:
        - name: nginx
          image: nginx:1.14.2
          ports:
          - containerPort: 80
"""

# Item 1 has a field of the wrong type at line 12; item 2 (line 14) is also defined in settings.yaml.
CONFIGMAPS = """\
apiVersion: v1
kind: ConfigMapList
items:
  - apiVersion: v1
    kind: ConfigMap
    metadata:
      name: first
    data: {mode: fast}
  - apiVersion: v1
    kind: ConfigMap
    metadata:
      name: second
    data: [not, a, map]
  - apiVersion: v1
    kind: ConfigMap
    metadata:
      name: settings
    data: {mode: slow}
"""

SETTINGS = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: fast\n"

SECRET_ITEM = """\
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Secret
    metadata:
      name: db
    stringData:
      password: hunter2-but-longer-Xk29
"""


def errors(lines: list[str], rule: str) -> list[str]:
    return [line for line in lines if f"[{rule}]" in line]


def test_the_documentation_example_is_accepted(server: Server, clone: Clone) -> None:
    clone.write("apps/nginx.yaml", DOCS_EXAMPLE)
    clone.commit()
    push = clone.push()
    assert push.accepted, push.output
    assert "not served" not in push.output


def test_items_are_checked_as_objects_at_their_own_lines(server: Server, clone: Clone) -> None:
    clone.write("apps/configmaps.yaml", CONFIGMAPS)
    clone.write("apps/settings.yaml", SETTINGS)
    clone.commit()
    push = clone.push()
    assert not push.accepted
    lines = push.remote_lines()
    assert [x.split(" error ")[0] for x in errors(lines, "schema-invalid")] == ["apps/configmaps.yaml:13:11:"]
    assert "configmap/second: data" in errors(lines, "schema-invalid")[0]
    duplicate = errors(lines, "object-duplicate")
    assert len(duplicate) == 1 and "configmap/settings" in duplicate[0], lines
    assert {duplicate[0].split(":")[0] + ":" + duplicate[0].split(":")[1]} <= {
        "apps/configmaps.yaml:14", "apps/settings.yaml:1"}
    assert "is not served" not in push.output and "ConfigMapList" not in push.output


def test_a_plaintext_secret_inside_a_list_is_refused(server: Server, clone: Clone) -> None:
    clone.write("apps/list.yaml", SECRET_ITEM)
    clone.commit()
    push = clone.push()
    assert not push.accepted
    found = errors(push.remote_lines(), "secret-plaintext")
    assert len(found) == 1 and found[0].startswith("apps/list.yaml:9:"), push.output
    assert "hunter2" not in push.output


def test_an_empty_list_is_valid(server: Server, clone: Clone) -> None:
    clone.write("apps/empty.yaml", "apiVersion: v1\nkind: List\nitems: []\n")
    clone.write("apps/none.yaml", "apiVersion: v1\nkind: List\nmetadata: {}\n")
    clone.commit()
    push = clone.push()
    assert push.accepted, push.output


def test_items_that_are_not_objects_are_clear_findings(server: Server, clone: Clone) -> None:
    clone.write("apps/bad.yaml", "apiVersion: v1\nkind: List\nitems:\n  - just text\n  - {}\n")
    clone.write("apps/worse.yaml", "apiVersion: v1\nkind: List\nitems:\n  name: x\n")
    clone.commit()
    push = clone.push()
    assert not push.accepted
    lines = push.remote_lines()
    assert "apps/bad.yaml:4:5: error [yaml-not-mapping] list: item 0 is the scalar 'just text', not an object" in lines
    assert any(x.startswith("apps/bad.yaml:5:5: error [object-required]") and "missing apiVersion, kind" in x
               for x in lines), lines
    assert "apps/worse.yaml:4:3: error [yaml-not-mapping] list: items is a map, not a list of objects" in lines


def test_a_list_in_a_kustomize_build(server: Server, clone: Clone) -> None:
    """kubectl kustomize reads List resources and renders their items; an item's error points back to
    its line in the List's file."""
    clone.write("base/list.yaml", CONFIGMAPS.replace("name: settings", "name: third"))
    clone.write("base/kustomization.yaml", "resources: [list.yaml]\n")
    clone.write("prod/kustomization.yaml", "resources: [../base]\nnamePrefix: prod-\n")
    clone.commit()
    push = clone.push()
    assert not push.accepted
    found = errors(push.remote_lines(), "schema-invalid")
    assert found and all(x.startswith("base/list.yaml:13:11:") for x in found), push.output
    assert any("configmap/prod-second" in x for x in found), found
    assert "is not served" not in push.output
    clone.write("base/list.yaml", CONFIGMAPS.replace("data: [not, a, map]", "data: {}").replace(
        "name: settings", "name: third"))
    clone.commit()
    push = clone.push()
    assert push.accepted, push.output


def test_items_read_alike_from_the_fast_and_the_careful_reader() -> None:
    fast = parse("x.yaml", CONFIGMAPS.encode())
    careful = parse("x.yaml", (CONFIGMAPS.replace("kind: ConfigMapList", "kind: !!str ConfigMapList")).encode())
    assert [(d.line, d.column, d.prefix, d.obj) for d in fast.documents] == \
        [(d.line, d.column, d.prefix, d.obj) for d in careful.documents]
    assert [(d.line, d.column, d.name) for d in fast.documents] == [(4, 5, "first"), (9, 5, "second"),
                                                                  (14, 5, "settings")]
    assert fast.documents[1].locate(("data",)) == (13, 11)
    nested = parse("n.json", b'{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "List",'
                   b'\n "items": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "deep"}}]}]}')
    assert [(d.name, d.prefix, d.line) for d in nested.documents] == [("deep", ("items", 0, "items", 0), 2)]


@pytest.fixture
def kube() -> Iterator[KubeAPI]:
    api = KubeAPI(token="tok-lists-3a9f").start()
    yield api
    api.stop()


def test_an_environment_applies_the_items(server: Server, clone: Clone, kube: KubeAPI, tmp_path: Path) -> None:
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", context="prod")
    proc = run_suite("env", "add", str(server.path), "prod", "--ref", "main", "--path", "clusters/prod",
                     "--kubeconfig", str(kubeconfig), "--context", "prod", "--namespace", "apps",
                     "--health-timeout", "5")
    assert proc.returncode == 0, proc.stderr
    clone.write("clusters/prod/namespace.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n")
    clone.write("clusters/prod/list.yaml", CONFIGMAPS.replace("data: [not, a, map]", "data: {mode: two}").replace(
        "kind: ConfigMapList", "kind: List"))
    clone.commit()
    push = clone.push()
    assert push.accepted, push.output
    lines = push.remote_lines()
    for name in ("first", "second", "settings"):
        assert f"configmap/{name} created" in lines, lines
        assert kube.object("v1", "ConfigMap", name, "apps") is not None
    # The server-side dry run of `gitops-hooks diff` sees each item against its live object.
    assert run_suite("diff", "prod", "--repo", str(server.path)).returncode == 0
    kube.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "second", "namespace": "apps"},
              "data": {"mode": "hand-edited"}}, manager="kubectl-edit")
    d = run_suite("diff", "prod", "--repo", str(server.path))
    assert d.returncode == 1, d.stdout + d.stderr
    assert "+++ desired ConfigMap/second -n apps" in d.stdout and "+  mode: two" in d.stdout, d.stdout
    assert "differing objects: 1," in d.stdout and "ConfigMap/first" not in d.stdout
