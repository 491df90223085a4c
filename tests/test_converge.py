"""Drift is corrected, not reported forever: forced ownership with the corrections named, the leave-alone
annotation, fields owned by controllers, no-op rounds that send nothing, `reconcile --every` and `status`.

Real pushes into bare repositories with the hooks installed; the real kube-apiserver (realk8s) with the real
kubectl making the hand changes, and the loopback server (tests/kubeapi.py) where requests are counted or
the server must go down."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import EXE, Clone, Server, run_suite
from kubeapi import KubeAPI

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
{replicas}  selector:
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
  name: {name}
{annotations}data:
  colour: blue
"""


def namespace(name: str) -> str:
    return f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"


def deployment(replicas: int | None = 2) -> str:
    return DEPLOYMENT.format(replicas="" if replicas is None else f"  replicas: {replicas}\n")


def configmap(name: str, annotation: str = "") -> str:
    return CONFIGMAP.format(name=name, annotations=f"  annotations:\n    {annotation}\n" if annotation else "")


def add_env(server: Server, kubeconfig: Path, ns: str, *extra: str) -> None:
    proc = run_suite("env", "add", str(server.path), "prod", "--ref", "main", "--path", "clusters/prod",
                     "--kubeconfig", str(kubeconfig), "--namespace", ns, "--health-timeout", "1", *extra)
    assert proc.returncode == 0, proc.stderr


def reconcile(server: Server) -> subprocess.CompletedProcess[str]:
    return run_suite("reconcile", "prod", "--repo", str(server.path))


def one_round(server: Server) -> str:
    proc = run_suite("reconcile", "--every", "1s", "--rounds", "1", "--repo", str(server.path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if " prod: " in line]
    assert len(lines) == 1, proc.stdout
    return lines[0]


# ---------------------------------------------------------------------------- the real API server

def kubectl(kubeconfig: Path, *args: str, editor: str = "") -> str:
    env = {**os.environ, "KUBE_EDITOR": editor} if editor else None
    proc = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True,
                          env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def live(kubeconfig: Path, ns: str, what: str) -> dict:
    return json.loads(kubectl(kubeconfig, "get", "-n", ns, what, "-o", "json"))


@pytest.fixture
def real(realk8s: Path, server: Server, clone: Clone, request: pytest.FixtureRequest) -> Iterator[tuple[Path, str]]:
    ns = "cv-" + request.node.name.removeprefix("test_").replace("_", "-")[:40].rstrip("-")
    add_env(server, realk8s, ns)
    clone.write("clusters/prod/namespace.yaml", namespace(ns))
    yield realk8s, ns


def test_kubectl_scale_and_edit_are_taken_back_naming_the_manager(server: Server, clone: Clone,
                                                                  real: tuple[Path, str]) -> None:
    kc, ns = real
    clone.write("clusters/prod/web.yaml", deployment(2))
    clone.write("clusters/prod/settings.yaml", configmap("settings"))
    clone.commit("web")
    push = clone.push()
    assert "deployment.apps/web created" in push.remote_lines(), push.output
    kubectl(kc, "scale", "-n", ns, "deployment/web", "--replicas=5")
    kubectl(kc, "edit", "-n", ns, "configmap/settings", editor="sed -i s/blue/red/")
    kubectl(kc, "label", "-n", ns, "deployment/web", "team=payments")  # a label git does not mention
    assert live(kc, ns, "deployment/web")["spec"]["replicas"] == 5
    assert live(kc, ns, "configmap/settings")["data"]["colour"] == "red"

    assert run_suite("diff", "prod", "--repo", str(server.path)).returncode == 1
    rec = reconcile(server)
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert "deployment.apps/web configured: took back .spec.replicas from kubectl (scale)" in rec.stdout, rec.stdout
    assert "configmap/settings configured: took back .data.colour from kubectl-edit" in rec.stdout, rec.stdout
    web = live(kc, ns, "deployment/web")
    assert web["spec"]["replicas"] == 2
    assert web["metadata"]["labels"]["team"] == "payments"  # left alone
    assert live(kc, ns, "configmap/settings")["data"]["colour"] == "blue"
    history = run_suite("history", "prod", "--repo", str(server.path)).stdout
    assert f"corrected: deployment.apps/web -n {ns}: took back .spec.replicas from kubectl (scale)" in history
    assert run_suite("diff", "prod", "--repo", str(server.path)).returncode == 0
    # The hand label alone is no drift: the next reconcile changes nothing.
    again = reconcile(server)
    assert "deployment.apps/web unchanged" in again.stdout and "took back" not in again.stdout, again.stdout


def test_force_conflicts_false_keeps_failing_on_a_hand_change(server: Server, clone: Clone, realk8s: Path,
                                                             tmp_path: Path) -> None:
    ns = "cv-no-force"
    add_env(server, realk8s, ns, "--no-force-conflicts")
    clone.write("clusters/prod/namespace.yaml", namespace(ns))
    clone.write("clusters/prod/web.yaml", deployment(2))
    clone.commit("web")
    assert clone.push().accepted
    kubectl(realk8s, "scale", "-n", ns, "deployment/web", "--replicas=5")
    clone.write("clusters/prod/web.yaml", deployment(3))
    clone.commit("three")
    push = clone.push()
    failed = [line for line in push.remote_lines() if line.startswith("deployment.apps/web failed")]
    assert failed and 'conflict with "kubectl" with subresource "scale"' in failed[0], push.output
    assert "force_conflicts: true" in failed[0]
    assert live(realk8s, ns, "deployment/web")["spec"]["replicas"] == 5
    assert "pending:" in run_suite("history", "prod", "--repo", str(server.path)).stdout


def test_objects_marked_to_be_left_alone_are_not_corrected(server: Server, clone: Clone,
                                                           real: tuple[Path, str]) -> None:
    kc, ns = real
    clone.write("clusters/prod/seed.yaml", configmap("seed", "gitops-hooks.io/ssa: IfNotPresent"))
    clone.write("clusters/prod/theirs.yaml", configmap("theirs", "kustomize.toolkit.fluxcd.io/ssa: Ignore"))
    clone.commit("left alone")
    push = clone.push()
    assert push.accepted, push.output  # the gate takes the annotations
    lines = push.remote_lines()
    assert "configmap/seed created" in lines, push.output
    assert "configmap/theirs unchanged: left alone (ssa: Ignore)" in lines, push.output
    assert subprocess.run(["kubectl", "--kubeconfig", str(kc), "get", "-n", ns, "configmap/theirs"],
                          capture_output=True, check=False).returncode != 0  # never created
    kubectl(kc, "edit", "-n", ns, "configmap/seed", editor="sed -i s/blue/green/")
    rec = reconcile(server)
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert "configmap/seed unchanged: left alone: it exists (ssa: IfNotPresent)" in rec.stdout, rec.stdout
    assert live(kc, ns, "configmap/seed")["data"]["colour"] == "green"


def test_a_bad_ssa_value_is_refused_at_the_gate(server: Server, clone: Clone, real: tuple[Path, str]) -> None:
    clone.write("clusters/prod/seed.yaml", configmap("seed", "gitops-hooks.io/ssa: Sometimes"))
    clone.commit("typo")
    push = clone.push()
    assert not push.accepted
    assert any("clusters/prod/seed.yaml:1:1: error [reconcile-desired]" in line and "'Sometimes' is not a way to "
               "apply an object (write Override, IfNotPresent or Ignore)" in line for line in push.remote_lines()), \
        push.output


def test_replicas_owned_by_an_autoscaler_are_not_fought_over(server: Server, clone: Clone,
                                                             real: tuple[Path, str]) -> None:
    kc, ns = real
    clone.write("clusters/prod/web.yaml", deployment(None))  # spec.replicas left to the autoscaler
    clone.commit("web")
    assert clone.push().accepted
    # What a HorizontalPodAutoscaler does: write spec.replicas through the scale subresource, as its own manager.
    kubectl(kc, "patch", "-n", ns, "deployment/web", "--subresource=scale", "--type=merge",
            "--field-manager=horizontal-pod-autoscaler", "-p", '{"spec":{"replicas":4}}')
    for _ in range(2):
        rec = reconcile(server)
        assert rec.returncode == 0 and "took back" not in rec.stdout, rec.stdout
        assert live(kc, ns, "deployment/web")["spec"]["replicas"] == 4
    st = run_suite("status", "prod", "--repo", str(server.path))
    assert st.returncode == 0 and "live: in place" in st.stdout, st.stdout + st.stderr


def test_status_lists_drift_before_it_is_corrected(server: Server, clone: Clone, real: tuple[Path, str]) -> None:
    kc, ns = real
    clone.write("clusters/prod/web.yaml", deployment(2))
    sha = clone.commit("web")
    assert clone.push().accepted
    kubectl(kc, "scale", "-n", ns, "deployment/web", "--replicas=5")
    st = run_suite("status", "prod", "--repo", str(server.path))
    assert st.returncode == 1, st.stdout + st.stderr
    assert f"prod (refs/heads/main): applied {sha[:12]}" in st.stdout
    assert "live: drifted" in st.stdout and f"deployment.apps/web -n {ns} differs" in st.stdout, st.stdout
    data = json.loads(run_suite("status", "prod", "--repo", str(server.path), "-o", "json").stdout)
    env = data["environments"][0]
    assert env["applied_commit"] == sha and env["live"] == "drifted" and env["pending"] is None
    assert env["drifted"] == [f"deployment.apps/web -n {ns} differs"]
    line = one_round(server)
    assert f"prod: corrected 1 at {sha[:12]}" in line and "took back .spec.replicas from kubectl (scale)" in line, line
    data = json.loads(run_suite("status", "prod", "--repo", str(server.path), "-o", "json").stdout)
    env = data["environments"][0]
    assert env["live"] == "in place" and env["in_place"] and env["last_round"]["result"] == "corrected"


# ---------------------------------------------------------------------------- the loopback server

@pytest.fixture
def kube() -> Iterator[KubeAPI]:
    api = KubeAPI().start()
    yield api
    api.stop()


def loopback_env(server: Server, kube: KubeAPI, tmp_path: Path) -> None:
    kc = kube.write_kubeconfig(tmp_path / "kubeconfig")
    server.configure("version: 1\nenvironments:\n  prod:\n    ref: main\n    path: clusters/prod\n"
                     f"    namespace: apps\n    cluster: {{kubeconfig: {kc}}}\n    retries: 0\n"
                     "    request_timeout: 2\n    health_timeout: 1\n")


def scale(kube: KubeAPI, replicas: int, manager: str) -> None:
    """`kubectl scale` as the API server sees it: a merge patch of the scale subresource."""
    req = urllib.request.Request(f"{kube.url}/apis/apps/v1/namespaces/apps/deployments/web/scale?fieldManager={manager}",
                                 data=json.dumps({"spec": {"replicas": replicas}}).encode(), method="PATCH",
                                 headers={"Content-Type": "application/merge-patch+json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def test_a_round_with_nothing_changed_sends_no_apply(server: Server, clone: Clone, kube: KubeAPI,
                                                     tmp_path: Path) -> None:
    loopback_env(server, kube, tmp_path)
    clone.write("clusters/prod/namespace.yaml", namespace("apps"))
    clone.write("clusters/prod/web.yaml", deployment(2))
    for i in range(20):
        clone.write(f"clusters/prod/cm-{i}.yaml", configmap(f"cm-{i}"))
    sha = clone.commit("22 objects")
    assert clone.push().accepted
    kube.reset_requests()
    line = one_round(server)
    assert f"prod: unchanged at {sha[:12]}" in line, line
    assert [r for r in kube.requests if r[0] != "GET"] == [], kube.requests  # no apply, no inventory write
    lists = [p for m, p in kube.requests if m == "GET" and p.endswith(("/configmaps", "/deployments", "/namespaces"))]
    assert len(lists) <= 6, kube.requests  # one LIST per kind and namespace
    # A hand change is found by that LIST and corrected by one apply.
    scale(kube, 5, "kubectl")
    kube.reset_requests()
    line = one_round(server)
    assert "prod: corrected 1" in line and "deployment.apps/web -n apps: took back .spec.replicas from kubectl " \
        "(scale)" in line, line
    assert [r for r in kube.requests if r[0] == "PATCH"] == [("PATCH", "/apis/apps/v1/namespaces/apps/deployments/web")]
    assert kube.object("apps/v1", "Deployment", "web", "apps")["spec"]["replicas"] == 2  # type: ignore[index]
    # A push that changes one object applies that one.
    clone.write("clusters/prod/cm-7.yaml", configmap("cm-7").replace("blue", "green"))
    clone.commit("one change")
    kube.reset_requests()
    push = clone.push()
    assert "configmap/cm-7 configured" in push.remote_lines(), push.output
    assert [r for r in kube.requests if r[0] == "PATCH"] == [("PATCH", "/api/v1/namespaces/apps/configmaps/cm-7")]


def test_every_survives_an_api_server_that_is_down_for_a_round(server: Server, clone: Clone, kube: KubeAPI,
                                                               tmp_path: Path) -> None:
    loopback_env(server, kube, tmp_path)
    clone.write("clusters/prod/namespace.yaml", namespace("apps"))
    clone.write("clusters/prod/web.yaml", deployment(2))
    clone.commit("web")
    assert clone.push().accepted
    kube.down()
    proc = subprocess.Popen([EXE, "reconcile", "--every", "2s", "--rounds", "3", "--repo", str(server.path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert "reconciling every environment" in proc.stdout.readline()
        first = proc.stdout.readline()
        assert " prod: failed" in first and "cannot reach the API server" in first, first
        kube.up()
        scale(kube, 7, "kubectl")
        second = proc.stdout.readline()
        assert " prod: corrected 1" in second, second
        third = proc.stdout.readline()
        assert " prod: unchanged" in third, third
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    st = run_suite("status", "prod", "--repo", str(server.path))
    assert st.returncode == 0 and "last round: " in st.stdout and " unchanged" in st.stdout, st.stdout + st.stderr
    assert "pending:" not in st.stdout


# ---------------------------------------------------------------------------- units

def test_taken_back_names_fields_and_managers_from_managed_fields() -> None:
    from gitops_hooks.reconcile.fields import summary, taken_back

    container = {'k:{"name":"web"}': {".": {}, "f:image": {}, "f:name": {}}}
    before = {"metadata": {"managedFields": [
        {"manager": "gitops-hooks", "operation": "Apply", "fieldsV1": {"f:spec": {"f:template": {"f:spec": {
            "f:containers": {'k:{"name":"web"}': {".": {}, "f:name": {}}}}}}}},
        {"manager": "kubectl", "operation": "Update", "subresource": "scale", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
        {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": {"f:spec": {"f:template": {"f:spec": {
            "f:containers": {'k:{"name":"web"}': {"f:image": {}}}}}}, "f:metadata": {"f:labels": {"f:team": {}}}}},
    ]}}
    after = {"metadata": {"managedFields": [
        {"manager": "gitops-hooks", "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {
            "f:spec": {"f:containers": container}}}}},
        {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": {"f:metadata": {"f:labels": {"f:team": {}}}}},
    ]}}
    taken = taken_back(before, after, "gitops-hooks")
    assert [t.text() for t in taken] == ['.spec.replicas from kubectl (scale)',
                                         '.spec.template.spec.containers[name="web"].image from kubectl-edit']
    assert summary(taken) == ('took back .spec.replicas from kubectl (scale); '
                              '.spec.template.spec.containers[name="web"].image from kubectl-edit')
    assert taken_back(after, after, "gitops-hooks") == ()  # the label kubectl-edit keeps is not ours: left alone


def test_every_takes_durations_and_refuses_nonsense() -> None:
    from gitops_hooks.reconcile.commands import duration

    assert duration("5m") == 300 and duration("30s") == 30 and duration("1h") == 3600 and duration("90") == 90
    for bad in ("five", "0.5s", "-1m"):
        with pytest.raises(ValueError):
            duration(bad)


def test_every_with_a_bad_duration_or_environment_says_so(server: Server) -> None:
    proc = run_suite("reconcile", "--every", "soon", "--repo", str(server.path))
    assert proc.returncode == 2 and "'soon' is not a duration: write 30s, 5m or 1h" in proc.stderr
    proc = run_suite("reconcile", "--every", "5m", "nowhere", "--repo", str(server.path))
    assert proc.returncode == 2 and "no environment 'nowhere'" in proc.stderr


def test_an_object_deleted_by_hand_is_listed_missing_then_created_again(server: Server, clone: Clone,
                                                                        kube: KubeAPI, tmp_path: Path) -> None:
    loopback_env(server, kube, tmp_path)
    clone.write("clusters/prod/namespace.yaml", namespace("apps"))
    clone.write("clusters/prod/settings.yaml", configmap("settings"))
    clone.commit("settings")
    assert clone.push().accepted
    req = urllib.request.Request(f"{kube.url}/api/v1/namespaces/apps/configmaps/settings", method="DELETE")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
    st = run_suite("status", "--repo", str(server.path))
    assert st.returncode == 1 and "live: drifted" in st.stdout and "configmap/settings -n apps is missing" in st.stdout, \
        st.stdout + st.stderr
    line = one_round(server)
    assert "prod: corrected 1" in line and "configmap/settings created" in line, line
    assert kube.object("v1", "ConfigMap", "settings", "apps") is not None
    assert run_suite("status", "--repo", str(server.path)).returncode == 0
