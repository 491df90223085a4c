"""The inventory: a kubectl ApplySet (KEP-3659) whose parent is a Secret named gitops-hooks-<env>.

The parent carries the label `applyset.kubernetes.io/id` (the id is `applyset-` + unpadded URL-safe
base64 of the SHA-256 of `<name>.<namespace>.<kind>.<group>` + `-v1`), the annotations
`applyset.kubernetes.io/tooling`, `applyset.kubernetes.io/contains-group-kinds` (sorted `Kind.group`,
comma-separated) and `applyset.kubernetes.io/additional-namespaces`. Every member carries the label
`applyset.kubernetes.io/part-of: <id>`, so `kubectl apply --prune --applyset=secret/gitops-hooks-<env>`
and `kubectl get -l applyset.kubernetes.io/part-of=<id>` understand what we applied.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .. import __version__
from .environments import Environment
from .kube import APPLY, Kube, KubeError, ResourceInfo

PART_OF = "applyset.kubernetes.io/part-of"
ID = "applyset.kubernetes.io/id"
TOOLING = "applyset.kubernetes.io/tooling"
GROUP_KINDS = "applyset.kubernetes.io/contains-group-kinds"
NAMESPACES = "applyset.kubernetes.io/additional-namespaces"
PRUNE_OPT_OUT = ("gitops-hooks.io/prune", "kustomize.toolkit.fluxcd.io/prune")
FIELD_MANAGER = "gitops-hooks"


def applyset_id(name: str, namespace: str, kind: str = "Secret", group: str = "") -> str:
    digest = hashlib.sha256(f"{name}.{namespace}.{kind}.{group}".encode()).digest()
    return "applyset-" + base64.urlsafe_b64encode(digest).decode().rstrip("=") + "-v1"


def group_kind(api_version: str, kind: str) -> str:
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    return f"{kind}.{group}" if group else kind


@dataclass(frozen=True)
class Inventory:
    id: str
    group_kinds: frozenset[str]
    namespaces: frozenset[str]  # every namespace members may be in, the parent's included
    exists: bool
    tooling: str = ""


def tooling() -> str:
    return f"gitops-hooks/v{__version__}"


def current(inv: Inventory, env: Environment, group_kinds: Iterable[str], namespaces: Iterable[str]) -> bool:
    """The parent already records exactly these kinds and namespaces (so writing it would change nothing)."""
    spaces = (set(namespaces) - {""}) | {env.parent_namespace}
    return inv.exists and inv.tooling == tooling() and inv.group_kinds == frozenset(group_kinds) and \
        inv.namespaces == frozenset(spaces)


def parent_path(env: Environment) -> str:
    return f"/api/v1/namespaces/{env.parent_namespace}/secrets/{env.parent_name}"


def read(kube: Kube, env: Environment) -> Inventory:
    ident = applyset_id(env.parent_name, env.parent_namespace)
    try:
        _, obj = kube.request("GET", parent_path(env))
    except KubeError as exc:
        if exc.status == 404:
            return Inventory(ident, frozenset(), frozenset({env.parent_namespace}), False)
        raise
    meta = obj.get("metadata") or {}
    labels, ann = meta.get("labels") or {}, meta.get("annotations") or {}
    if labels.get(ID) != ident:
        raise KubeError(409, "Conflict", f"secret {env.parent_namespace}/{env.parent_name} exists but is not "
                        "gitops-hooks' inventory for this environment (its applyset id differs); rename or remove it")
    tool = str(ann.get(TOOLING, ""))
    if tool and not tool.startswith("gitops-hooks/"):
        raise KubeError(409, "Conflict", f"the inventory secret {env.parent_name} is managed by {tool}, not gitops-hooks")
    kinds = frozenset(k for k in str(ann.get(GROUP_KINDS, "")).split(",") if k)
    spaces = frozenset(n for n in str(ann.get(NAMESPACES, "")).split(",") if n) | {env.parent_namespace}
    return Inventory(ident, kinds, spaces, True, tool)


def write(kube: Kube, env: Environment, group_kinds: Iterable[str], namespaces: Iterable[str], dry_run: bool = False) -> None:
    ident = applyset_id(env.parent_name, env.parent_namespace)
    extra = sorted(set(namespaces) - {env.parent_namespace, ""})
    body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": env.parent_name, "namespace": env.parent_namespace, "labels": {ID: ident},
                         "annotations": {TOOLING: tooling(),
                                         GROUP_KINDS: ",".join(sorted(set(group_kinds))),
                                         NAMESPACES: ",".join(extra)}}}
    query = {"fieldManager": FIELD_MANAGER, "force": "true"}
    if dry_run:
        query["dryRun"] = "All"
    kube.request("PATCH", parent_path(env), query, body, APPLY)


def members(kube: Kube, inv: Inventory, infos: Iterable[ResourceInfo], namespaces: Iterable[str]) -> list[dict[str, Any]]:
    """Live objects labelled as members: one LIST per kind (per namespace for namespaced kinds)."""
    out: list[dict[str, Any]] = []
    selector = {"labelSelector": f"{PART_OF}={inv.id}"}
    spaces = sorted(set(namespaces) - {""})
    for info in sorted(set(infos), key=lambda i: (i.group, i.kind)):
        for ns in (spaces if info.namespaced else [""]):
            try:
                _, data = kube.request("GET", info.path(ns), selector)
            except KubeError as exc:
                if exc.status == 404:
                    continue
                raise
            for item in data.get("items", []):
                item.setdefault("apiVersion", info.api_version)
                item.setdefault("kind", info.kind)
                out.append(item)
    return out


def opted_out(obj: dict[str, Any]) -> bool:
    ann = (obj.get("metadata") or {}).get("annotations") or {}
    return any(str(ann.get(k, "")).lower() == "disabled" for k in PRUNE_OPT_OUT)
