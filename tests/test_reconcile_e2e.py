"""Reconciliation end to end: real `git push` into a bare repository with the hooks installed, applied through
the real `kubernetes` client to a real API server (../shared/tools/realk8s: etcd, kube-apiserver and
kube-controller-manager of Kubernetes 1.25, one per test session) and to the loopback fake (tests/kubeapi.py).

Tests marked BOTH run twice, `[fake]` and `[real]`; on the real server each test works in a namespace of its own.
Faults (a server that is down, 5xx and 429 answers, slow answers) and what controllers the real server lacks
would do (a Deployment rolling out) are the fake's alone.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import Clone, Server, git, run_suite
from kubeapi import KubeAPI
from realcluster import RealCluster

from gitops_hooks import kustomize

TOKEN = "tok-3f9a1c-very-secret"

NAMESPACE = """\
apiVersion: v1
kind: Namespace
metadata:
  name: apps
"""
BOTH = pytest.mark.parametrize("cluster", ["fake", "real"], indirect=True)
Cluster = KubeAPI | RealCluster

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
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

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  cluster: ${CLUSTER_NAME}
  region: ${REGION:=eu-west-1}
"""


@pytest.fixture
def kube() -> Iterator[KubeAPI]:
    api = KubeAPI(token=TOKEN).start()
    yield api
    api.stop()


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> Cluster:
    """The fake (the `kube` of the test), or with BOTH's `real` the real API server of this test run (the realk8s fixture)."""
    if getattr(request, "param", "fake") == "real":
        return RealCluster(request.getfixturevalue("realk8s"))
    return request.getfixturevalue("kube")


@pytest.fixture
def ns(cluster: Cluster) -> str:
    """The environment's namespace: `apps` on a fake of the test's own, a new one on the shared real server."""
    return "apps" if isinstance(cluster, KubeAPI) else f"apps-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def env(server: Server, cluster: Cluster, ns: str, tmp_path: Path) -> str:
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig", context="prod")
    proc = run_suite("env", "add", str(server.path), "prod", "--ref", "main", "--path", "clusters/prod",
                     "--kubeconfig", str(kubeconfig), "--context", "prod", "--namespace", ns,
                     "--var", "CLUSTER_NAME=prod-eu", "--health-timeout", "5")
    assert proc.returncode == 0, proc.stderr
    return "prod"


def set_env(server: Server, name: str, **settings: object) -> None:
    """Set fields of an environment in the server's configuration file (as an administrator edits it)."""
    data = yaml.safe_load(server.config_path.read_text(encoding="utf-8"))
    data["environments"][name].update(settings)
    server.configure(yaml.safe_dump(data))


def history(server: Server, env: str = "prod") -> str:
    proc = run_suite("history", env, "--repo", str(server.path))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def note(server: Server, commit: str) -> str:
    return git("--git-dir", str(server.path), "notes", "--ref=refs/notes/gitops", "show", commit, check=False).stdout


def namespace(name: str) -> str:
    return NAMESPACE.replace("name: apps", f"name: {name}")


def base_tree(clone: Clone, ns: str = "apps") -> None:
    clone.write("clusters/prod/namespace.yaml", namespace(ns))
    clone.write("clusters/prod/web.yaml", DEPLOYMENT)
    clone.write("clusters/prod/settings.yaml", CONFIGMAP)


@BOTH
def test_push_creates_objects_streams_progress_and_records_a_note(server: Server, clone: Clone, cluster: Cluster,
                                                                   ns: str, env: str) -> None:
    base_tree(clone, ns)
    sha = clone.commit("first")
    push = clone.push()
    assert push.accepted, push.output
    lines = push.remote_lines()
    assert f"namespace/{ns} created" in lines
    assert "deployment.apps/web created" in lines
    assert "configmap/settings created" in lines
    assert any(line.startswith("gitops-hooks: prod: applied: 3 created") for line in lines), lines
    cm = cluster.object("v1", "ConfigMap", "settings", ns)
    assert cm is not None and cm["data"] == {"cluster": "prod-eu", "region": "eu-west-1"}
    dep = cluster.object("apps/v1", "Deployment", "web", ns)
    assert dep is not None
    assert dep["metadata"]["managedFields"][0]["manager"] == "gitops-hooks"
    text = note(server, sha)
    assert "environment: prod" in text and "result: applied" in text and f"deployment.apps/web -n {ns}" in text
    assert "Test Pusher" in text or "pusher:" in text
    assert TOKEN not in push.output + text
    # Pushing the same state again changes nothing.
    clone.write("README.md", "docs\n")
    clone.commit("docs only")
    again = clone.push()
    assert "deployment.apps/web unchanged" in again.remote_lines()


@BOTH
def test_removed_file_is_pruned_and_opt_out_is_kept(server: Server, clone: Clone, cluster: Cluster, ns: str,
                                                     env: str) -> None:
    base_tree(clone, ns)
    clone.write("clusters/prod/keep.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\n  annotations:\n"
                "    gitops-hooks.io/prune: disabled\ndata: {a: b}\n")
    clone.commit("first")
    assert clone.push().accepted
    parent = cluster.object("v1", "Secret", "gitops-hooks-prod", ns)
    assert parent is not None
    kinds = parent["metadata"]["annotations"]["applyset.kubernetes.io/contains-group-kinds"]
    assert kinds == "ConfigMap,Deployment.apps,Namespace"
    clone.remove("clusters/prod/web.yaml")
    clone.remove("clusters/prod/keep.yaml")
    clone.commit("drop web")
    push = clone.push()
    lines = push.remote_lines()
    assert "deployment.apps/web pruned" in lines, push.output
    assert "configmap/keep kept: pruning is disabled by annotation" in lines
    assert cluster.object("apps/v1", "Deployment", "web", ns) is None
    assert cluster.object("v1", "ConfigMap", "keep", ns) is not None
    assert "pruned: 1" not in history(server)  # history prints counts as "1 pruned"
    assert "1 pruned" in history(server)


def test_empty_tree_does_not_wipe_the_cluster(server: Server, clone: Clone, kube: KubeAPI, env: str) -> None:
    base_tree(clone)
    clone.commit("first")
    assert clone.push().accepted
    clone.remove("clusters")
    clone.write("README.md", "oops\n")
    clone.commit("empty")
    push = clone.push()
    assert push.accepted
    assert any("refusing to prune 3 objects: the desired set is empty" in line for line in push.remote_lines()), push.output
    assert kube.object("apps/v1", "Deployment", "web", "apps") is not None


CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"""

WIDGET = """\
apiVersion: example.com/v1
kind: Widget
metadata:
  name: blue
spec:
  size: 3
"""


@BOTH
def test_crd_and_its_custom_resource_in_one_commit(server: Server, clone: Clone, cluster: Cluster, ns: str,
                                                   env: str) -> None:
    clone.write("clusters/prod/namespace.yaml", namespace(ns))
    group = f"{ns}.example.com"  # CRDs are cluster-wide: one group per test on the shared real server
    clone.write("clusters/prod/widget.yaml", WIDGET.replace("example.com", group))  # sorts before the CRD
    clone.write("clusters/prod/zz-crd.yaml", CRD.replace("example.com", group))
    clone.commit("crd")
    push = clone.push()
    lines = push.remote_lines()
    assert f"customresourcedefinition.apiextensions.k8s.io/widgets.{group} created" in lines, push.output
    assert f"widget.{group}/blue created" in lines, push.output
    assert lines.index(f"customresourcedefinition.apiextensions.k8s.io/widgets.{group} created") < \
        lines.index(f"widget.{group}/blue created")
    widget = cluster.object(f"{group}/v1", "Widget", "blue", ns)
    assert widget is not None and widget["spec"] == {"size": 3}


@BOTH
def test_conflict_with_another_manager_fails_naming_it_and_next_push_can_force(
        server: Server, clone: Clone, cluster: Cluster, ns: str, env: str, tmp_path: Path) -> None:
    set_env(server, env, force_conflicts=False)  # refusing is what this test is about, whatever the default
    base_tree(clone, ns)
    clone.commit("first")
    assert clone.push().accepted
    cluster.put({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
                 "spec": {"replicas": 5}}, manager="kubectl-edit")
    clone.write("clusters/prod/web.yaml", DEPLOYMENT.replace("replicas: 2", "replicas: 3"))
    sha = clone.commit("scale")
    push = clone.push()
    assert push.accepted  # post-receive cannot refuse: the failure is reported and recorded
    lines = push.remote_lines()
    failed = [line for line in lines if line.startswith("deployment.apps/web failed")]
    assert failed and 'conflict with "kubectl-edit" using apps/v1: .spec.replicas' in failed[0], push.output
    assert "clusters/prod/web.yaml:1" in failed[0]
    assert any("nothing was pruned" in line for line in lines)
    assert cluster.object("apps/v1", "Deployment", "web", ns)["spec"]["replicas"] == 5  # type: ignore[index]
    assert "result: failed" in note(server, sha)
    assert "pending:" in history(server)
    # The administrator allows force; `gitops-hooks reconcile` applies the pending commit.
    kubeconfig = tmp_path / "kubeconfig"
    proc = run_suite("env", "add", str(server.path), "prod", "--replace", "--ref", "main", "--path", "clusters/prod",
                     "--kubeconfig", str(kubeconfig), "--context", "prod", "--namespace", ns,
                     "--var", "CLUSTER_NAME=prod-eu", "--force-conflicts")
    assert proc.returncode == 0, proc.stderr
    rec = run_suite("reconcile", "prod", "--repo", str(server.path))
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert "deployment.apps/web configured" in rec.stdout
    assert cluster.object("apps/v1", "Deployment", "web", ns)["spec"]["replicas"] == 3  # type: ignore[index]
    assert "pending:" not in history(server)


def test_api_server_down_is_recorded_and_the_next_push_recovers(server: Server, clone: Clone, kube: KubeAPI,
                                                                env: str) -> None:
    base_tree(clone)
    clone.commit("first")
    kube.down()
    push = clone.push()
    assert push.accepted
    assert any("gitops-hooks: prod: failed" in line and "cannot reach the API server" in line
               for line in push.remote_lines()), push.output
    assert "pending:" in history(server)
    kube.up()
    clone.write("clusters/prod/more.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: more\ndata: {a: b}\n")
    clone.commit("second")
    push = clone.push()
    lines = push.remote_lines()
    assert "deployment.apps/web created" in lines and "configmap/more created" in lines, push.output
    assert "pending:" not in history(server)


def test_transient_faults_are_retried(server: Server, clone: Clone, kube: KubeAPI, env: str) -> None:
    base_tree(clone)
    clone.commit("first")
    kube.inject("500", 1, methods=("PATCH",))
    kube.inject("429", 1, methods=("GET",), retry_after=1)
    kube.inject("drop", 1, methods=("PATCH",))
    push = clone.push()
    assert any(line.startswith("gitops-hooks: prod: applied: 3 created") for line in push.remote_lines()), push.output


def test_unknown_variable_refuses_the_push(server: Server, clone: Clone, kube: KubeAPI, env: str) -> None:
    clone.write("clusters/prod/namespace.yaml", NAMESPACE)
    clone.write("clusters/prod/settings.yaml", CONFIGMAP.replace("${CLUSTER_NAME}", "${CLUSTR_NAME}"))
    clone.commit("typo")
    push = clone.push()
    assert not push.accepted
    assert any("clusters/prod/settings.yaml:6:12: error [reconcile-variable] configmap/settings: ${CLUSTR_NAME} is "
               "not set for this environment (environment prod)" in line for line in push.remote_lines()), push.output
    assert server.rev() is None
    assert kube.names("ConfigMap") == []


@BOTH
def test_dry_run_prints_the_plan_and_refuses(server: Server, clone: Clone, cluster: Cluster, ns: str, env: str) -> None:
    base_tree(clone, ns)
    clone.commit("first")
    assert clone.push().accepted
    clone.write("clusters/prod/web.yaml", DEPLOYMENT.replace("replicas: 2", "replicas: 4"))
    clone.remove("clusters/prod/settings.yaml")
    clone.commit("change")
    push = clone.push("-o", "gitops.dry-run")
    assert not push.accepted
    lines = push.remote_lines()
    assert "deployment.apps/web configured (server dry run)" in lines, push.output
    assert f"namespace/{ns} unchanged (server dry run)" in lines
    assert "configmap/settings pruned (server dry run)" in lines
    assert any("push refused so that nothing changes" in line for line in lines)
    assert cluster.object("apps/v1", "Deployment", "web", ns)["spec"]["replicas"] == 2  # type: ignore[index]
    assert cluster.object("v1", "ConfigMap", "settings", ns) is not None


def test_wait_option_keeps_the_pusher_until_healthy(server: Server, clone: Clone, kube: KubeAPI, env: str) -> None:
    base_tree(clone)
    sha = clone.commit("first")
    push = clone.push("-o", "gitops.wait")
    lines = push.remote_lines()
    assert "deployment.apps/web healthy" in lines, push.output
    assert "gitops-hooks: prod: health: healthy" in lines
    assert "health: healthy" in note(server, sha)


@BOTH
def test_background_health_timeout_is_recorded(server: Server, clone: Clone, cluster: Cluster, ns: str,
                                               env: str) -> None:
    if isinstance(cluster, KubeAPI):
        cluster.store.controllers = False  # nobody rolls the Deployment out (the real server has no such controller)
    base_tree(clone, ns)
    sha = clone.commit("first")
    push = clone.push()
    assert any("continues in the background" in line for line in push.remote_lines()), push.output
    deadline = time.monotonic() + 20
    while "health: timed out" not in note(server, sha) and time.monotonic() < deadline:
        time.sleep(0.3)
    text = note(server, sha)
    assert "health: timed out" in text and "deployment.apps/web timed out: 0/2 updated replicas" in text


def test_diff_shows_drift_and_reconcile_corrects_it(server: Server, clone: Clone, kube: KubeAPI, env: str) -> None:
    base_tree(clone)
    clone.commit("first")
    assert clone.push().accepted
    assert run_suite("diff", "prod", "--repo", str(server.path)).returncode == 0
    kube.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "apps"},
              "data": {"cluster": "hand-edited"}}, manager="kubectl-edit")
    d = run_suite("diff", "prod", "--repo", str(server.path))
    assert d.returncode == 1, d.stdout + d.stderr
    assert "-  cluster: hand-edited" in d.stdout and "+  cluster: prod-eu" in d.stdout
    # The fields in git win (force_conflicts defaults to true): the reconcile takes the field back and says so.
    rec = run_suite("reconcile", "prod", "--repo", str(server.path))
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert "configmap/settings configured: took back .data.cluster from kubectl-edit" in rec.stdout, rec.stdout
    assert run_suite("diff", "prod", "--repo", str(server.path)).returncode == 0


def test_concurrent_pushes_coalesce_to_the_newest_commit(server: Server, clone: Clone, kube: KubeAPI, env: str,
                                                         tmp_path: Path) -> None:
    base_tree(clone)
    clone.commit("first")
    assert clone.push().accepted
    kube.slow(0.3)  # every request takes a while: pushes overlap
    others = []
    for i in range(3):
        c = Clone(server, tmp_path / f"other{i}")
        git("fetch", "--quiet", "origin", cwd=c.path)
        git("checkout", "--quiet", "-B", "main", "origin/main", cwd=c.path)
        others.append(c)
    results: list[str] = []

    def push_from(c: Clone, i: int) -> None:
        for _ in range(20):
            git("pull", "--quiet", "--rebase", "origin", "main", cwd=c.path, check=False)
            c.write(f"clusters/prod/cm{i}.yaml", f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm{i}\n"
                    "data: {a: b}\n")
            c.commit(f"cm{i}")
            p = c.push()
            if p.accepted:
                results.append(p.output)
                return
        results.append("gave up")

    threads = [threading.Thread(target=push_from, args=(c, i)) for i, c in enumerate(others)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    kube.slow(0)
    assert len(results) == 3 and "gave up" not in results
    # Some push may have left its commit to the running reconcile; a last reconcile finds nothing pending.
    deadline = time.monotonic() + 30
    while "pending:" in history(server) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert "pending:" not in history(server)
    for i in range(3):
        assert kube.object("v1", "ConfigMap", f"cm{i}", "apps") is not None
    newest = server.rev()
    assert newest is not None and "result: applied" in note(server, newest)


def test_no_environment_keeps_the_old_message(server: Server, clone: Clone) -> None:
    clone.write("apps/web.yaml", DEPLOYMENT)
    clone.commit("first")
    push = clone.push()
    assert push.accepted
    assert any("accepted, not applied: no target configured" in line for line in push.remote_lines())


def test_env_commands_validate_like_the_config_file(server: Server, tmp_path: Path) -> None:
    bad = run_suite("env", "add", str(server.path), "Prod", "--ref", "main", "--kubeconfig", "/x")
    assert bad.returncode == 2 and "environments" in bad.stderr
    ok = run_suite("env", "add", str(server.path), "staging", "--ref", "main", "--path", "clusters/staging",
                   "--kubeconfig", str(tmp_path / "kc"), "--context", "stg", "--namespace", "apps")
    assert ok.returncode == 0, ok.stderr
    text = server.config_path.read_text()
    assert "# Check it with `gitops-hooks config check <repo>`" in text  # comments kept
    assert run_suite("config", "check", str(server.path)).returncode == 0
    listing = run_suite("env", "list", str(server.path)).stdout
    assert "staging\trefs/heads/main\tclusters/staging" in listing
    assert run_suite("env", "remove", str(server.path), "staging").returncode == 0
    assert "staging" not in run_suite("env", "list", str(server.path)).stdout


def test_kustomization_is_rendered_and_substituted(server: Server, clone: Clone, kube: KubeAPI, env: str) -> None:
    clone.write("base/web.yaml", DEPLOYMENT)
    clone.write("base/settings.yaml", CONFIGMAP)
    clone.write("base/kustomization.yaml", "resources: [web.yaml, settings.yaml]\n")
    clone.write("clusters/prod/namespace.yaml", NAMESPACE)
    clone.write("clusters/prod/kustomization.yaml", "resources: [namespace.yaml, ../../base]\n"
                "namePrefix: prod-\ncommonLabels: {env: prod}\n")
    clone.commit("kustomize")
    push = clone.push()
    lines = push.remote_lines()
    assert "deployment.apps/prod-web created" in lines and "configmap/prod-settings created" in lines, push.output
    cm = kube.object("v1", "ConfigMap", "prod-settings", "apps")
    assert cm is not None and cm["data"]["cluster"] == "prod-eu" and cm["metadata"]["labels"]["env"] == "prod"


def test_periodic_reconcile_without_changes_does_not_grow_the_note(server: Server, clone: Clone, kube: KubeAPI,
                                                                   env: str) -> None:
    base_tree(clone)
    sha = clone.commit("first")
    assert clone.push().accepted
    for _ in range(2):
        rec = run_suite("reconcile", "prod", "--repo", str(server.path))
        assert rec.returncode == 0 and "applied: 0 created, 0 configured, 3 unchanged, 0 pruned" in rec.stdout
    text = note(server, sha)
    assert text.count("environment: prod") == 1 and "checked: " in text
    kube.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "extra", "namespace": "apps",
              "labels": {"applyset.kubernetes.io/part-of": "someone-elses"}}}, manager="other")
    web = kube.store.objects[("apps", "deployments", "apps", "web")]
    web["spec"]["replicas"] = 9  # drift nobody owns; like every write, it moves the resourceVersion
    kube.store.rv += 1
    web["metadata"]["resourceVersion"] = str(kube.store.rv)
    rec = run_suite("reconcile", "prod", "--repo", str(server.path))
    assert "deployment.apps/web configured" in rec.stdout, rec.stdout
    assert note(server, sha).count("environment: prod") == 2  # a run that changed something is its own record
    assert kube.object("v1", "ConfigMap", "extra", "apps") is not None  # not ours: never pruned


@BOTH
def test_namespace_that_leaves_git_is_deleted_with_what_it_holds(server: Server, clone: Clone, cluster: Cluster,
                                                                 ns: str, env: str) -> None:
    extra = f"{ns}-old"
    clone.write("clusters/prod/namespace.yaml", namespace(ns))
    clone.write("clusters/prod/old/namespace.yaml", namespace(extra))
    clone.write("clusters/prod/old/leftover.yaml", f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: leftover\n"
                f"  namespace: {extra}\ndata: {{a: b}}\n")
    clone.commit("two namespaces")
    push = clone.push()
    assert f"namespace/{extra} created" in push.remote_lines(), push.output
    clone.remove("clusters/prod/old")
    clone.commit("drop the old namespace")
    push = clone.push()
    lines = push.remote_lines()
    assert f"namespace/{extra} pruned" in lines and "configmap/leftover pruned" in lines, push.output
    # The real server finalizes a deleted namespace (its controller empties it first): wait until it is gone.
    deadline = time.monotonic() + 30
    while cluster.object("v1", "Namespace", extra) is not None and time.monotonic() < deadline:
        time.sleep(0.3)
    assert cluster.object("v1", "Namespace", extra) is None
    assert cluster.object("v1", "ConfigMap", "leftover", extra) is None
    assert cluster.object("v1", "Namespace", ns) is not None  # the environment's own stays, with the inventory
    assert "result: applied" in note(server, server.rev() or "")


@BOTH
def test_wait_reports_health_a_real_server_can_give(server: Server, clone: Clone, cluster: Cluster, ns: str,
                                                    env: str) -> None:
    # A CRD is healthy once Established; no Deployment here (no controller rolls one out on the real server:
    # see test_background_health_timeout_is_recorded).
    clone.write("clusters/prod/namespace.yaml", namespace(ns))
    clone.write("clusters/prod/settings.yaml", CONFIGMAP)
    group = f"{ns}.example.com"  # CRDs are cluster-wide: one group per test on the shared real server
    clone.write("clusters/prod/crd.yaml", CRD.replace("example.com", group).replace("widget", "gadget")
                .replace("Widget", "Gadget"))
    sha = clone.commit("definitions")
    push = clone.push("-o", "gitops.wait")
    lines = push.remote_lines()
    # Only the CRD has a state to wait for; the Namespace and the ConfigMap are healthy once stored.
    assert "gitops-hooks: prod: waiting up to 5 s for 1 object to be healthy" in lines, push.output
    assert f"customresourcedefinition.apiextensions.k8s.io/gadgets.{group} healthy" in lines
    assert "gitops-hooks: prod: health: healthy" in lines
    assert "health: healthy" in note(server, sha)
    crd = cluster.object("apiextensions.k8s.io/v1", "CustomResourceDefinition", f"gadgets.{group}")
    assert crd is not None and {"type": "Established", "status": "True"}.items() <= \
        next(c for c in crd["status"]["conditions"] if c["type"] == "Established").items()


@pytest.mark.parametrize("cluster", ["real"], indirect=True)  # the fake's counterpart: test_reconcile_units.py
def test_real_kubectl_reads_the_applyset_of_a_push(server: Server, clone: Clone, cluster: Cluster, ns: str,
                                                   env: str, tmp_path: Path) -> None:
    base_tree(clone, ns)
    clone.commit("first")
    assert clone.push().accepted
    kubectl = kustomize.kubectl_command("")  # the suite's own kubectl
    assert kubectl is not None
    kc = str(tmp_path / "kubeconfig")
    parent = cluster.object("v1", "Secret", "gitops-hooks-prod", ns)
    assert parent is not None
    ident = parent["metadata"]["labels"]["applyset.kubernetes.io/id"]
    listed = subprocess.run([kubectl, "--kubeconfig", kc, "get", "deployments,configmaps", "-n", ns, "-o", "name",
                             "-l", f"applyset.kubernetes.io/part-of={ident}"], capture_output=True, text=True, timeout=60)
    assert listed.stdout.split() == ["deployment.apps/web", "configmap/settings"], listed.stderr
    (tmp_path / "x.yaml").write_text(f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\n  namespace: {ns}\n")
    command = [kubectl, "--kubeconfig", kc, "apply", "--server-side", "--prune", "--applyset=secrets/gitops-hooks-prod",
               "-n", ns, "-f", str(tmp_path / "x.yaml"), "--dry-run=server"]
    environ = {"KUBECTL_APPLYSET": "true", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60, env=environ)
    assert 'is managed by tooling "gitops-hooks" instead of "kubectl"' in refused.stderr, refused.stderr
    # Handed to kubectl, the set is kubectl's to prune: it accepts our id and finds the members by our
    # contains-group-kinds annotation.
    cluster.put({"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "gitops-hooks-prod", "namespace": ns, "annotations": {"applyset.kubernetes.io/tooling": "kubectl/v1.37.1"}}},
        manager="admin")
    taken = subprocess.run(command, capture_output=True, text=True, timeout=60, env=environ)
    assert "deployment.apps/web pruned (server dry run)" in taken.stdout, taken.stdout + taken.stderr
    assert "configmap/settings pruned (server dry run)" in taken.stdout
    assert cluster.object("apps/v1", "Deployment", "web", ns) is not None  # a dry run
