"""Deprecated and removed Kubernetes APIs for the target version (the policy's kubernetes_version).

The table follows the Kubernetes "Deprecated API Migration Guide" (kubernetes.io/docs/reference/
using-api/deprecation-guide/); tests check it against the bundled schemas of every supported version.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..documents import Document
from ..findings import Finding, Rule, Severity, finding, register
from .base import CheckContext, document_check, only_for

register(
    Rule("api-removed", "deprecations", Severity.ERROR,
         "The apiVersion of this kind is no longer served by the target Kubernetes version.",
         "Kubernetes stops serving deprecated API versions after a notice period; applying such a "
         "manifest fails with 'no matches for kind'. Change apiVersion to the replacement named in "
         "the message and check the fields that changed (see the Kubernetes Deprecated API Migration "
         "Guide).", "apiVersion: apps/v1\nkind: Deployment\n"),
    Rule("api-deprecated", "deprecations", Severity.WARNING,
         "The apiVersion of this kind is deprecated in the target Kubernetes version.",
         "Deprecated API versions are still served but will be removed; move to the replacement before "
         "the cluster is upgraded past the removal version named in the message.",
         "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\n"),
)


@dataclass(frozen=True)
class Deprecation:
    api_version: str
    kinds: tuple[str, ...]
    deprecated_in: tuple[int, int]
    removed_in: tuple[int, int] | None  # None: deprecated, no removal scheduled
    replacement: str


def _d(api: str, kinds: str, dep: str, removed: str | None, replacement: str) -> Deprecation:
    def v(text: str) -> tuple[int, int]:
        major, minor = text.split(".")
        return int(major), int(minor)

    return Deprecation(api, tuple(kinds.split()), v(dep), v(removed) if removed else None, replacement)


WORKLOADS = "Deployment DaemonSet ReplicaSet StatefulSet"
TABLE: tuple[Deprecation, ...] = (
    # removed in 1.16
    _d("extensions/v1beta1", "Deployment DaemonSet ReplicaSet", "1.9", "1.16", "apps/v1"),
    _d("apps/v1beta1", "Deployment StatefulSet", "1.9", "1.16", "apps/v1"),
    _d("apps/v1beta2", WORKLOADS, "1.9", "1.16", "apps/v1"),
    _d("extensions/v1beta1", "NetworkPolicy", "1.9", "1.16", "networking.k8s.io/v1"),
    _d("extensions/v1beta1", "PodSecurityPolicy", "1.10", "1.16",
       "nothing (PodSecurityPolicy was removed in 1.25; use Pod Security Admission)"),
    # removed in 1.22
    _d("admissionregistration.k8s.io/v1beta1", "MutatingWebhookConfiguration ValidatingWebhookConfiguration",
       "1.16", "1.22", "admissionregistration.k8s.io/v1"),
    _d("apiextensions.k8s.io/v1beta1", "CustomResourceDefinition", "1.16", "1.22", "apiextensions.k8s.io/v1"),
    _d("apiregistration.k8s.io/v1beta1", "APIService", "1.19", "1.22", "apiregistration.k8s.io/v1"),
    _d("authentication.k8s.io/v1beta1", "TokenReview", "1.19", "1.22", "authentication.k8s.io/v1"),
    _d("authorization.k8s.io/v1beta1", "SubjectAccessReview LocalSubjectAccessReview SelfSubjectAccessReview",
       "1.19", "1.22", "authorization.k8s.io/v1"),
    _d("certificates.k8s.io/v1beta1", "CertificateSigningRequest", "1.19", "1.22", "certificates.k8s.io/v1"),
    _d("coordination.k8s.io/v1beta1", "Lease", "1.19", "1.22", "coordination.k8s.io/v1"),
    _d("extensions/v1beta1", "Ingress", "1.14", "1.22", "networking.k8s.io/v1"),
    _d("networking.k8s.io/v1beta1", "Ingress IngressClass", "1.19", "1.22", "networking.k8s.io/v1"),
    _d("rbac.authorization.k8s.io/v1beta1", "ClusterRole ClusterRoleBinding Role RoleBinding",
       "1.17", "1.22", "rbac.authorization.k8s.io/v1"),
    _d("rbac.authorization.k8s.io/v1alpha1", "ClusterRole ClusterRoleBinding Role RoleBinding",
       "1.17", "1.22", "rbac.authorization.k8s.io/v1"),
    _d("scheduling.k8s.io/v1beta1", "PriorityClass", "1.14", "1.22", "scheduling.k8s.io/v1"),
    _d("storage.k8s.io/v1beta1", "CSIDriver CSINode StorageClass VolumeAttachment", "1.19", "1.22",
       "storage.k8s.io/v1"),
    # removed in 1.25
    _d("batch/v1beta1", "CronJob", "1.21", "1.25", "batch/v1"),
    _d("discovery.k8s.io/v1beta1", "EndpointSlice", "1.21", "1.25", "discovery.k8s.io/v1"),
    _d("events.k8s.io/v1beta1", "Event", "1.21", "1.25", "events.k8s.io/v1"),
    _d("autoscaling/v2beta1", "HorizontalPodAutoscaler", "1.22", "1.25", "autoscaling/v2"),
    _d("policy/v1beta1", "PodDisruptionBudget", "1.21", "1.25", "policy/v1"),
    _d("policy/v1beta1", "PodSecurityPolicy", "1.21", "1.25",
       "nothing: PodSecurityPolicy is gone; use Pod Security Admission (namespace labels)"),
    _d("node.k8s.io/v1beta1", "RuntimeClass", "1.20", "1.25", "node.k8s.io/v1"),
    # removed in 1.26
    _d("flowcontrol.apiserver.k8s.io/v1beta1", "FlowSchema PriorityLevelConfiguration", "1.23", "1.26",
       "flowcontrol.apiserver.k8s.io/v1"),
    _d("autoscaling/v2beta2", "HorizontalPodAutoscaler", "1.23", "1.26", "autoscaling/v2"),
    # removed in 1.27
    _d("storage.k8s.io/v1beta1", "CSIStorageCapacity", "1.24", "1.27", "storage.k8s.io/v1"),
    # removed in 1.29
    _d("flowcontrol.apiserver.k8s.io/v1beta2", "FlowSchema PriorityLevelConfiguration", "1.26", "1.29",
       "flowcontrol.apiserver.k8s.io/v1"),
    # removed in 1.32
    _d("flowcontrol.apiserver.k8s.io/v1beta3", "FlowSchema PriorityLevelConfiguration", "1.29", "1.32",
       "flowcontrol.apiserver.k8s.io/v1"),
    # deprecated, still served
    _d("v1", "ComponentStatus", "1.19", None,
       "nothing (read component health from their /livez and /readyz)"),
    _d("v1", "Endpoints", "1.33", None, "discovery.k8s.io/v1 EndpointSlice"),
)

_INDEX: dict[tuple[str, str], Deprecation] = {(d.api_version, k): d for d in TABLE for k in d.kinds}


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def _show(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def lookup(api_version: str, kind: str) -> Deprecation | None:
    return _INDEX.get((api_version, kind))


def removed(api_version: str, kind: str, target: str) -> Deprecation | None:
    """The table entry if `kind` in `api_version` is no longer served by Kubernetes `target`."""
    d = lookup(api_version, kind)
    if d is None or d.removed_in is None or _version(target) < d.removed_in:
        return None
    return d


@document_check
@only_for(kinds={kind for _, kind in _INDEX})
def deprecated_apis(doc: Document, ctx: CheckContext) -> Iterator[Finding]:
    d = lookup(doc.api_version, doc.kind)
    if d is None:
        return
    target = _version(ctx.kube.version)
    if target < d.deprecated_in:
        return
    line, col = doc.locate(("apiVersion",))
    use = d.replacement if d.replacement.startswith("nothing") else f"use apiVersion: {d.replacement}"
    if d.removed_in is not None and target >= d.removed_in:
        yield finding("api-removed", doc.path, line, col,
                      f"{doc.kind} {doc.api_version} was removed in Kubernetes {_show(d.removed_in)} "
                      f"(target {ctx.kube.version}): {use}", use, subject=doc.subject())
        return
    until = f"; removed in {_show(d.removed_in)}" if d.removed_in else ""
    since = _show(d.deprecated_in)
    yield finding("api-deprecated", doc.path, line, col,
                  f"{doc.kind} {doc.api_version} is deprecated since Kubernetes {since}{until}: {use}", use,
                  subject=doc.subject())
