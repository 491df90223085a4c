"""Kind order: what must exist before what. Applies go stage by stage; prunes go in reverse."""

from __future__ import annotations

STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("definitions", ("CustomResourceDefinition", "Namespace")),
    ("policies", ("ResourceQuota", "LimitRange", "PriorityClass", "StorageClass", "RuntimeClass", "IngressClass",
                  "GatewayClass", "ServiceAccount", "Secret", "ConfigMap", "PersistentVolume",
                  "PersistentVolumeClaim", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")),
    ("services", ("Service", "Endpoints", "EndpointSlice")),
    ("workloads", ("DaemonSet", "Deployment", "ReplicaSet", "StatefulSet", "Job", "CronJob", "Pod",
                   "ReplicationController")),
    ("others", ()),  # everything not named: Ingress, HPA, PDB, NetworkPolicy, custom resources
    ("webhooks", ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "APIService")),
)

_RANK = {kind: (i, j) for i, (_, kinds) in enumerate(STAGES) for j, kind in enumerate(kinds)}
OTHERS = next(i for i, (name, _) in enumerate(STAGES) if name == "others")


def stage_of(kind: str) -> int:
    return _RANK.get(kind, (OTHERS, 0))[0]


def sort_key(kind: str, namespace: str, name: str) -> tuple[int, int, str, str, str]:
    stage, pos = _RANK.get(kind, (OTHERS, 99))
    return (stage, pos, kind, namespace, name)
