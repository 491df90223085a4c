"""Live-state leakage (a `kubectl get -o yaml` dump) is refused, each field at its own line."""

from __future__ import annotations

from conftest import Clone, Push, Server

DUMP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: |
      {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"settings","namespace":"apps"}}
  creationTimestamp: "2024-05-01T10:00:00Z"
  managedFields:
    - manager: kubectl-client-side-apply
      operation: Update
  name: settings
  namespace: apps
  resourceVersion: "48213"
  uid: 6f0f3f4e-1b7c-4e9b-9a53-0c1d2e3f4a5b
data:
  mode: fast
"""

DEPLOYMENT_WITH_STATUS = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: apps
  generation: 4
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:1.27
status:
  replicas: 2
  readyReplicas: 2
"""


def push_files(clone: Clone, files: dict[str, str]) -> Push:
    for path, text in files.items():
        clone.write(path, text)
    clone.commit("change")
    return clone.push()


def finding_lines(push: Push, prefix: str) -> list[str]:
    return [line for line in push.remote_lines() if "[live-state" in line and line.startswith(prefix)]


def test_a_kubectl_dump_is_refused_field_by_field(server: Server, clone: Clone) -> None:
    push = push_files(clone, {"apps/settings.yaml": DUMP})
    assert not push.accepted
    assert finding_lines(push, "apps/settings.yaml") == [
        "apps/settings.yaml:5:5: error [live-state-last-applied] configmap/settings: the "
        "kubectl.kubernetes.io/last-applied-configuration annotation is a copy kubectl keeps of a past apply",
        "apps/settings.yaml:7:3: error [live-state-field] configmap/settings: metadata.creationTimestamp is "
        "live state written by the API server",
        "apps/settings.yaml:8:3: error [live-state-field] configmap/settings: metadata.managedFields is live "
        "state written by the API server",
        "apps/settings.yaml:13:3: error [live-state-field] configmap/settings: metadata.resourceVersion is "
        "live state written by the API server",
        "apps/settings.yaml:14:3: error [live-state-field] configmap/settings: metadata.uid is live state "
        "written by the API server",
    ]
    assert "hint: strip the fields the API server writes" in push.output
    assert server.rev() is None


def test_status_and_generation_are_refused(server: Server, clone: Clone) -> None:
    push = push_files(clone, {"apps/web.yaml": DEPLOYMENT_WITH_STATUS})
    assert not push.accepted
    assert [x.split(" error ")[0] for x in finding_lines(push, "apps/web.yaml")] == [
        "apps/web.yaml:6:3:", "apps/web.yaml:17:1:"]
    assert "deployment.apps/web: status is live state" in push.output


def test_a_list_dump_is_checked_item_by_item(server: Server, clone: Clone) -> None:
    dump = ("apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: ConfigMap\n    metadata:\n"
            "      name: a\n      namespace: apps\n      selfLink: /api/v1/namespaces/apps/configmaps/a\n"
            "      deletionTimestamp: \"2024-05-01T10:00:00Z\"\n")
    push = push_files(clone, {"apps/list.yaml": dump})
    assert not push.accepted
    got = finding_lines(push, "apps/list.yaml")
    assert [x.split(" error ")[0] for x in got] == ["apps/list.yaml:9:7:", "apps/list.yaml:10:7:"]
    assert "configmap/a: metadata.selfLink is live state" in got[0]  # the item, an object of its own


def test_generate_name_is_refused(server: Server, clone: Clone) -> None:
    job = ("apiVersion: batch/v1\nkind: Job\nmetadata:\n  generateName: migrate-\n  namespace: apps\nspec:\n"
           "  template:\n    spec:\n      restartPolicy: Never\n      containers:\n"
           "        - {name: m, image: registry.example.com/migrate:1.0}\n")
    push = push_files(clone, {"apps/job.yaml": job})
    assert not push.accepted
    assert finding_lines(push, "apps/job.yaml") == [
        "apps/job.yaml:4:3: error [live-state-generate-name] job.batch: metadata.generateName makes a new "
        "object on every sync (not idempotent)"]


def test_clean_manifests_and_empty_dry_run_fields_are_accepted(server: Server, clone: Clone) -> None:
    # `kubectl create --dry-run=client -o yaml` writes these empty fields; they hold no cluster state.
    dry_run = ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  creationTimestamp: null\n  name: settings\n"
               "  namespace: apps\ndata:\n  mode: fast\n")
    clean = DEPLOYMENT_WITH_STATUS.split("status:")[0].replace("  generation: 4\n", "")
    push = push_files(clone, {"apps/settings.yaml": dry_run, "apps/web.yaml": clean})
    assert push.accepted, push.output
    assert [x for x in push.remote_lines() if "[live-state" in x] == []


def test_the_quick_look_passes_only_objects_with_nothing_to_report() -> None:
    """live_state first looks at an object's keys at once (`_clean`): each field it reports, alone, makes
    the quick look fail, and the full check finds nothing wherever the quick look passes."""
    import itertools

    from gitops_hooks import config, pipeline
    from gitops_hooks.checks.livestate import LAST_APPLIED, _clean, live_state
    from gitops_hooks.documents import Document

    ctx = pipeline.make_context(config.Policy(config.checked({}, "test")))
    parts = {
        "status": {"status": {"replicas": 1}}, "empty status": {"status": {}},
        "items": {"items": [{"metadata": {"uid": "x"}}]},
        **{f"metadata.{k}": {"metadata": {k: "x"}} for k in
           ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "selfLink",
            "deletionTimestamp", "generateName")},
        "empty uid": {"metadata": {"uid": ""}},
        "last-applied": {"metadata": {"annotations": {LAST_APPLIED: "{}"}}},
        "other annotation": {"metadata": {"annotations": {"team": "shop"}}},
        "metadata not a map": {"metadata": "x"},
    }
    seen = 0
    for n in (1, 2):
        for names in itertools.combinations(parts, n):
            obj: dict = {"apiVersion": "v1", "kind": "ConfigMapList" if "items" in names else "ConfigMap"}
            for name in names:
                for key, value in parts[name].items():
                    if isinstance(value, dict) and isinstance(obj.get(key), dict):
                        obj[key] = {**obj[key], **value}
                    else:
                        obj[key] = value
            found = list(live_state(Document("x.yaml", 0, 1, 1, obj), ctx))
            if _clean(obj):
                assert found == [], names
            seen += bool(found)
            if len(names) == 1 and names[0] not in ("empty status", "empty uid", "other annotation", "metadata not a map"):
                assert not _clean(obj) and found, names
    assert seen > 50
