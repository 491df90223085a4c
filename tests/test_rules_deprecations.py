"""Deprecated and removed APIs for the target Kubernetes version, reported once and naming the replacement."""

from __future__ import annotations

import pytest
from conftest import Clone, Push, Server

from gitops_hooks.checks.deprecations import TABLE
from gitops_hooks.schemas import KubernetesSchemas, available_versions

OLD_DEPLOYMENT = """\
apiVersion: extensions/v1beta1
kind: Deployment
metadata:
  name: web
  namespace: apps
spec:
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:1.27
"""

HPA = """\
apiVersion: autoscaling/v2beta2
kind: HorizontalPodAutoscaler
metadata:
  name: web
  namespace: apps
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 3
"""

PSP = """\
apiVersion: policy/v1beta1
kind: PodSecurityPolicy
metadata:
  name: restricted
spec:
  privileged: false
"""


def push_files(clone: Clone, files: dict[str, str]) -> Push:
    for path, text in files.items():
        clone.write(path, text)
    clone.commit("change")
    return clone.push()


def lines_with(push: Push, text: str) -> list[str]:
    return [line for line in push.remote_lines() if text in line]


def test_removed_api_is_refused_once_naming_the_replacement(server: Server, clone: Clone) -> None:
    push = push_files(clone, {"apps/web.yaml": OLD_DEPLOYMENT})
    assert not push.accepted
    newest = available_versions()[-1]
    assert lines_with(push, "apps/web.yaml:") == [
        f"apps/web.yaml:1:13: error [api-removed] Deployment extensions/v1beta1 was removed in Kubernetes 1.16 "
        f"(target {newest}): use apiVersion: apps/v1"]
    assert lines_with(push, "[schema-unknown-builtin]") == []  # not reported a second time


def test_pod_security_policy_names_what_to_use_instead(server: Server, clone: Clone) -> None:
    push = push_files(clone, {"cluster/psp.yaml": PSP})
    assert not push.accepted
    assert lines_with(push, "[api-removed]") == [
        f"cluster/psp.yaml:1:13: error [api-removed] PodSecurityPolicy policy/v1beta1 was removed in Kubernetes "
        f"1.25 (target {available_versions()[-1]}): nothing: PodSecurityPolicy is gone; use Pod Security "
        "Admission (namespace labels)"]


def test_deprecated_api_is_a_warning_before_its_removal(server: Server, clone: Clone) -> None:
    server.configure('kubernetes_version: "1.25"\n')
    push = push_files(clone, {"apps/hpa.yaml": HPA})
    assert push.accepted, push.output
    assert lines_with(push, "[api-deprecated]") == [
        "apps/hpa.yaml:1:13: warning [api-deprecated] HorizontalPodAutoscaler autoscaling/v2beta2 is deprecated "
        "since Kubernetes 1.23; removed in 1.26: use apiVersion: autoscaling/v2"]


def test_the_same_object_is_refused_when_the_target_moves_past_the_removal(server: Server, clone: Clone) -> None:
    server.configure('kubernetes_version: "1.26"\n')
    push = push_files(clone, {"apps/hpa.yaml": HPA})
    assert not push.accepted
    assert lines_with(push, "apps/hpa.yaml") == [
        "apps/hpa.yaml:1:13: error [api-removed] HorizontalPodAutoscaler autoscaling/v2beta2 was removed in "
        "Kubernetes 1.26 (target 1.26): use apiVersion: autoscaling/v2"]


def test_current_apis_are_accepted(server: Server, clone: Clone) -> None:
    current = HPA.replace("autoscaling/v2beta2", "autoscaling/v2")
    push = push_files(clone, {"apps/hpa.yaml": current})
    assert push.accepted, push.output
    assert lines_with(push, "[api-") == []


def test_removed_api_falls_back_to_schema_unknown_builtin_when_api_removed_is_off(
        server: Server, clone: Clone) -> None:
    server.configure("rules:\n  api-removed: 'off'\n")
    push = push_files(clone, {"apps/web.yaml": OLD_DEPLOYMENT})
    assert not push.accepted  # turning one rule off does not let an unserved kind through
    assert [x.split(" [")[1].split("]")[0] for x in lines_with(push, "apps/web.yaml:")] == ["schema-unknown-builtin"]


@pytest.mark.parametrize("version", available_versions())
def test_table_agrees_with_the_bundled_schemas(version: str) -> None:
    """A kind the table says is removed is absent from that version's schemas; a deprecated one is there."""
    kube = KubernetesSchemas(version, True)
    target = tuple(int(x) for x in version.split("."))
    for d in TABLE:
        group, _, ver = d.api_version.rpartition("/")
        for kind in d.kinds:
            served = (group, ver, kind) in kube.index
            if d.removed_in is not None and target >= d.removed_in:
                assert not served, f"{d.api_version} {kind} is in the {version} schemas but the table says removed"
            elif target >= d.deprecated_in:
                assert served, f"{d.api_version} {kind} is missing from the {version} schemas but not removed"
