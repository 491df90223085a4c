"""A loopback Kubernetes API server for tests: the part of the API that gitops-hooks' reconciler uses.

It listens on 127.0.0.1 on a random port (plain HTTP, threaded, HTTP/1.1 keep-alive) and follows the
documented behaviour of the real API server for:

- discovery: `/api`, `/apis`, `/apis/<group>`, `/api/v1` and `/apis/<group>/<version>` resource lists; a
  CustomResourceDefinition adds its resource once it is Established (after `crd_delay` seconds);
- GET of one object, LIST (per namespace or across namespaces) with label selectors
  (`a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x,y)`);
- server-side apply: PATCH `application/apply-patch+yaml` with `fieldManager` (required) and `force`,
  `dryRun=All`; field ownership recorded per manager in `metadata.managedFields` (FieldsV1); a change to a
  field owned by another manager is refused with 409 Conflict and the API's message
  (`Apply failed with 1 conflict: conflict with "<manager>" using <apiVersion>: .spec.replicas`) and
  `FieldManagerConflict` causes, unless `force=true`, which transfers ownership; fields the applier no
  longer sends and nobody else owns are removed; a no-op apply keeps the resourceVersion; 201 on create;
- PATCH `application/merge-patch+json` (an `Update` operation that takes ownership of what it changes),
  also on the `/status` subresource, which tests use to play a controller, and on `/scale` (its
  `spec.replicas`; the managedFields entry carries `subresource: scale`, as `kubectl scale` or a
  HorizontalPodAutoscaler leave it);
- DELETE with `propagationPolicy` (query or DeleteOptions body); deleting a namespace removes its objects;
- namespaces: `default`, `kube-system`, `kube-public` and `kube-node-lease` exist from the start; a
  namespaced object in a missing namespace is refused with 404 `namespaces "x" not found`;
- `Status` bodies for 400, 401, 404, 409, 422, 429 and 500 errors.

Limits (where it is simpler than the real server): lists inside objects are atomic for field ownership
(the real server merges lists of maps by key, e.g. containers by name); strategic merge patch is treated
as JSON merge patch; there is no watch, no admission, no OpenAPI validation beyond names and a few
ConfigMap rules, no defaulting, no finalizers or graceful deletion (deletes are immediate, whatever the
propagation policy; dependents are not garbage-collected except a namespace's contents); `status` sent
with an apply is ignored for every kind; only one version per group is served for built-in kinds; no
authorization (a bearer token can be required, but there are no roles).

With `controllers=True` (the default) it plays the built-in controllers just enough for health checks:
a Deployment, StatefulSet or DaemonSet becomes fully rolled out and a Job complete as soon as it is
written. Faults can be injected on purpose: `down()`/`up()`, `slow(seconds)`, and `inject(kind, count)`
with kind `500`, `429` (with Retry-After), `drop` (close the connection without an answer) or `deny` (a 403
from an admission webhook that quotes the request body, as some do).
"""

from __future__ import annotations

import copy
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

Path_ = tuple[str, ...]
MISSING = object()


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def discovery(self) -> dict[str, Any]:
        verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
        return {"name": self.plural, "singularName": self.kind.lower(), "namespaced": self.namespaced,
                "kind": self.kind, "verbs": verbs}


BUILTIN = [
    Resource("", "v1", "Namespace", "namespaces", False),
    Resource("", "v1", "ConfigMap", "configmaps", True),
    Resource("", "v1", "Secret", "secrets", True),
    Resource("", "v1", "Service", "services", True),
    Resource("", "v1", "ServiceAccount", "serviceaccounts", True),
    Resource("", "v1", "Pod", "pods", True),
    Resource("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True),
    Resource("apps", "v1", "Deployment", "deployments", True),
    Resource("apps", "v1", "StatefulSet", "statefulsets", True),
    Resource("apps", "v1", "DaemonSet", "daemonsets", True),
    Resource("batch", "v1", "Job", "jobs", True),
    Resource("batch", "v1", "CronJob", "cronjobs", True),
    Resource("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    Resource("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
    Resource("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    Resource("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    Resource("networking.k8s.io", "v1", "Ingress", "ingresses", True),
    Resource("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", True),
    Resource("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True),
    Resource("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", False),
    Resource("", "v1", "Endpoints", "endpoints", True),
    Resource("", "v1", "LimitRange", "limitranges", True),
    Resource("", "v1", "ResourceQuota", "resourcequotas", True),
    Resource("", "v1", "PersistentVolume", "persistentvolumes", False),
    Resource("apiregistration.k8s.io", "v1", "APIService", "apiservices", False),
    Resource("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations", False),
    Resource("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations",
             False),
    Resource("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True),
    Resource("networking.k8s.io", "v1", "IngressClass", "ingressclasses", False),
    Resource("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", False),
    Resource("storage.k8s.io", "v1", "StorageClass", "storageclasses", False),
]

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
NOT_OWNED = ("apiVersion", "kind", "status")
META_NOT_OWNED = ("name", "namespace", "managedFields", "resourceVersion", "uid", "generation",
                  "creationTimestamp", "deletionTimestamp", "selfLink")


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------- field ownership

def leaves(obj: Any, prefix: Path_ = ()) -> Iterator[Path_]:
    """Paths of the fields an applied configuration sets: scalars, lists (atomic) and empty maps."""
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            if not prefix and k in NOT_OWNED:
                continue
            if prefix == ("metadata",) and k in META_NOT_OWNED:
                continue
            yield from leaves(v, prefix + (k,))
    elif prefix:
        yield prefix


def get_path(obj: Any, path: Path_) -> Any:
    for k in path:
        if not isinstance(obj, dict) or k not in obj:
            return MISSING
        obj = obj[k]
    return obj


def set_path(obj: dict[str, Any], path: Path_, value: Any) -> None:
    for k in path[:-1]:
        nxt = obj.get(k)
        if not isinstance(nxt, dict):
            nxt = obj[k] = {}
        obj = nxt
    obj[path[-1]] = copy.deepcopy(value)


def del_path(obj: dict[str, Any], path: Path_) -> None:
    parents = []
    cur: Any = obj
    for k in path[:-1]:
        if not isinstance(cur, dict) or k not in cur:
            return
        parents.append((cur, k))
        cur = cur[k]
    if isinstance(cur, dict):
        cur.pop(path[-1], None)
    for parent, k in reversed(parents):  # drop maps left empty
        if parent[k] == {}:
            del parent[k]


def overlaps(a: Path_, b: Path_) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def fields_v1(paths: set[Path_]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in sorted(paths):
        node = out
        for k in p:
            node = node.setdefault(f"f:{k}", {})
    return out


def field_text(path: Path_) -> str:
    return "".join(f".{k}" for k in path)


@dataclass
class Ownership:
    managers: dict[str, tuple[str, str, str, set[Path_]]] = field(default_factory=dict)  # name -> (op, apiVersion, time, paths)

    def others(self, manager: str, path: Path_) -> list[str]:
        return sorted(m for m, (_, _, _, ps) in self.managers.items()
                      if m != manager and any(overlaps(p, path) for p in ps))

    def owned_by_other(self, manager: str, path: Path_) -> bool:
        return any(m != manager and path in ps for m, (_, _, _, ps) in self.managers.items())

    def release(self, manager: str, path: Path_) -> None:
        for m, (op, av, _, ps) in list(self.managers.items()):
            if m == manager:
                continue
            kept = {p for p in ps if not overlaps(p, path)}
            if kept != ps:
                self.managers[m] = (op, av, now(), kept)

    def render(self) -> list[dict[str, Any]]:
        out = []
        for m, (op, av, t, ps) in self.managers.items():
            if not ps:
                continue
            name, _, sub = m.partition("|")  # `kubectl|scale`: the manager kubectl, through the scale subresource
            entry = {"manager": name, "operation": op, "apiVersion": av, "time": t, "fieldsType": "FieldsV1",
                     "fieldsV1": fields_v1(ps)}
            if sub:
                entry["subresource"] = sub
            out.append(entry)
        return out


def merge(base: Any, patch: Any, null_deletes: bool = False) -> Any:
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(base)
    for k, v in patch.items():
        if v is None and null_deletes:
            out.pop(k, None)
        else:
            out[k] = merge(out.get(k), v, null_deletes)
    return out


# ---------------------------------------------------------------------------- label selectors

SELECTOR_TERM = re.compile(r"\s*(!?)([\w./-]+)\s*(?:(==|=|!=)\s*([\w./-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*")


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for term in _split_selector(selector):
        m = SELECTOR_TERM.fullmatch(term)
        if not m:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")
        neg, key, op, value, setop, values = m.groups()
        if neg:
            ok = key not in labels
        elif op in ("=", "=="):
            ok = labels.get(key) == value
        elif op == "!=":
            ok = labels.get(key) != value
        elif setop:
            options = {v.strip() for v in values.split(",")}
            ok = (labels.get(key) in options) if setop == "in" else (labels.get(key) not in options)
        else:
            ok = key in labels
        if not ok:
            return False
    return True


def _split_selector(selector: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for c in selector:
        if c == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        depth += c == "("
        depth -= c == ")"
        cur += c
    if cur.strip():
        out.append(cur)
    return out


# ---------------------------------------------------------------------------- the store

Key = tuple[str, str, str, str]  # group, plural, namespace, name


class Store:
    """Objects and their field ownership; every method runs under one lock."""

    def __init__(self, controllers: bool, crd_delay: float) -> None:
        self.lock = threading.RLock()
        self.objects: dict[Key, dict[str, Any]] = {}
        self.owners: dict[Key, Ownership] = {}
        self.resources: dict[tuple[str, str], Resource] = {(r.group, r.plural): r for r in BUILTIN}
        self.rv = 1000
        self.controllers = controllers
        self.crd_delay = crd_delay
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):  # what every cluster starts with
            self.apply(self.resources[("", "namespaces")], "", ns,
                       {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, "kube-apiserver", False, False)

    # -- discovery
    def resource(self, group: str, version: str, plural: str) -> Resource:
        r = self.resources.get((group, plural))
        if r is None or r.version != version:
            gv = f"{group}/{version}" if group else version
            raise ApiError(404, "NotFound", "the server could not find the requested resource",
                           {"group": group, "kind": plural, "causes": [{"reason": "UnexpectedServerResponse",
                                                                        "message": f"404 page not found: {gv}/{plural}"}]})
        return r

    def group_versions(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for r in self.resources.values():
            out.setdefault(r.group, set()).add(r.version)
        return out

    # -- reads
    def get(self, r: Resource, ns: str, name: str) -> dict[str, Any]:
        obj = self.objects.get((r.group, r.plural, ns, name))
        if obj is None:
            raise not_found(r, name)
        return self.rendered((r.group, r.plural, ns, name))

    def rendered(self, key: Key) -> dict[str, Any]:
        obj = copy.deepcopy(self.objects[key])
        obj["metadata"]["managedFields"] = self.owners[key].render()
        return obj

    def list_objects(self, r: Resource, ns: str | None, selector: str) -> dict[str, Any]:
        items = []
        for key in sorted(self.objects):
            g, plural, ons, _ = key
            if (g, plural) != (r.group, r.plural) or (ns is not None and ons != ns):
                continue
            obj = self.rendered(key)
            if selector and not selector_matches(selector, obj["metadata"].get("labels") or {}):
                continue
            items.append(obj)
        return {"kind": f"{r.kind}List", "apiVersion": r.api_version,
                "metadata": {"resourceVersion": str(self.rv)}, "items": items}

    # -- writes
    def check_namespace(self, r: Resource, ns: str) -> None:
        if r.namespaced and ("", "namespaces", "", ns) not in self.objects:
            raise ApiError(404, "NotFound", f'namespaces "{ns}" not found', {"name": ns, "kind": "namespaces"})

    def apply(self, r: Resource, ns: str, name: str, config: dict[str, Any], manager: str, force: bool,
              dry_run: bool) -> tuple[int, dict[str, Any]]:
        validate(r, ns, name, config)
        key = (r.group, r.plural, ns, name)
        self.check_namespace(r, ns)
        live = self.objects.get(key)
        own = copy.deepcopy(self.owners.get(key, Ownership()))
        paths = set(leaves(config))
        conflicts = self._conflicts(live, config, paths, manager, own)
        if conflicts and not force:
            raise conflict_error(conflicts, config.get("apiVersion", r.api_version))
        base = copy.deepcopy(live) if live else {"metadata": {}}
        old_paths = own.managers.get(manager, ("", "", "", set()))[3]
        for p in old_paths - paths:
            if not own.owned_by_other(manager, p):
                del_path(base, p)
        for p in paths:
            if force:
                own.release(manager, p)
            set_path(base, p, get_path(config, p))
        base["apiVersion"], base["kind"] = r.api_version, r.kind
        if paths != old_paths or manager not in own.managers:
            own.managers[manager] = ("Apply", str(config.get("apiVersion", r.api_version)), now(), paths)
        return self._store(r, key, live, base, own, dry_run)

    def _conflicts(self, live: dict[str, Any] | None, config: dict[str, Any], paths: set[Path_], manager: str,
                   own: Ownership) -> list[tuple[str, Path_]]:
        if live is None:
            return []
        out = []
        for p in sorted(paths):
            if get_path(live, p) == get_path(config, p):
                continue
            for other in own.others(manager, p):
                out.append((other, p))
        return out

    def update(self, r: Resource, ns: str, name: str, patch: dict[str, Any], manager: str, subresource: str,
               dry_run: bool) -> tuple[int, dict[str, Any]]:
        key = (r.group, r.plural, ns, name)
        live = self.objects.get(key)
        if live is None:
            raise not_found(r, name)
        if subresource == "status":
            patch = {"status": patch.get("status", {})}
        elif subresource == "scale":  # a Scale's spec.replicas is the object's; the entry names the subresource
            patch = {"spec": {"replicas": (patch.get("spec") or {}).get("replicas")}}
            manager = f"{manager}|scale"
        elif "status" in patch:
            patch = {k: v for k, v in patch.items() if k != "status"}
        new = merge(live, patch, null_deletes=True)
        own = copy.deepcopy(self.owners[key])
        changed = {p for p in leaves(new) if get_path(live, p) != get_path(new, p)}
        for p in changed:
            own.release(manager, p)
        if changed:
            op, av, _, ps = own.managers.get(manager, ("Update", r.api_version, "", set()))
            own.managers[manager] = ("Update", r.api_version, now(), ps | changed)
        return self._store(r, key, live, new, own, dry_run)

    def _store(self, r: Resource, key: Key, live: dict[str, Any] | None, new: dict[str, Any], own: Ownership,
               dry_run: bool) -> tuple[int, dict[str, Any]]:
        meta = new.setdefault("metadata", {})
        meta["name"] = key[3]
        if r.namespaced:
            meta["namespace"] = key[2]
        if live is None:
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        elif _spec(live) != _spec(new):
            meta["generation"] = int(live["metadata"].get("generation", 1)) + 1
        if live is not None and _comparable(live) == _comparable(new) and \
                own.render() == self.owners[key].render():
            return 200, self.rendered(key)
        if dry_run:
            out = copy.deepcopy(new)
            out["metadata"]["managedFields"] = own.render()
            return (201 if live is None else 200), out
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        if self.controllers:
            play_controller(r.kind, new)
        self.objects[key] = new
        self.owners[key] = own
        if r.kind == "CustomResourceDefinition":
            self._schedule_establish(key)
        return (201 if live is None else 200), self.rendered(key)

    def delete(self, r: Resource, ns: str, name: str, dry_run: bool) -> dict[str, Any]:
        key = (r.group, r.plural, ns, name)
        if key not in self.objects:
            raise not_found(r, name)
        obj = self.rendered(key)
        if dry_run:
            return obj
        del self.objects[key]
        del self.owners[key]
        if r.kind == "Namespace":
            for k in [k for k in self.objects if k[2] == name and self.resources[(k[0], k[1])].namespaced]:
                del self.objects[k], self.owners[k]
        if r.kind == "CustomResourceDefinition":
            spec = obj.get("spec", {})
            self.resources.pop((spec.get("group", ""), spec.get("names", {}).get("plural", "")), None)
        return obj

    # -- CRDs
    def _schedule_establish(self, key: Key) -> None:
        def establish() -> None:
            with self.lock:
                obj = self.objects.get(key)
                if obj is None:
                    return
                spec = obj.get("spec", {})
                names = spec.get("names", {})
                versions = [v["name"] for v in spec.get("versions", []) if v.get("served", True)]
                if not versions:
                    return
                res = Resource(spec.get("group", ""), versions[0], names.get("kind", ""), names.get("plural", ""),
                               spec.get("scope", "Namespaced") == "Namespaced")
                self.resources[(res.group, res.plural)] = res
                obj["status"] = {"conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "lastTransitionTime": now()},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                     "lastTransitionTime": now()}],
                    "acceptedNames": names, "storedVersions": versions[:1]}
                self.rv += 1
                obj["metadata"]["resourceVersion"] = str(self.rv)

        if self.crd_delay <= 0:
            establish()
        else:
            t = threading.Timer(self.crd_delay, establish)
            t.daemon = True
            t.start()


def _spec(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    for k in ("resourceVersion", "managedFields", "generation"):
        out.get("metadata", {}).pop(k, None)
    return out


def play_controller(kind: str, obj: dict[str, Any]) -> None:
    gen = obj["metadata"].get("generation", 1)
    spec = obj.get("spec") or {}
    n = spec.get("replicas", 1) if isinstance(spec.get("replicas", 1), int) else 1
    if kind == "Deployment":
        obj["status"] = {"observedGeneration": gen, "replicas": n, "updatedReplicas": n, "readyReplicas": n,
                         "availableReplicas": n, "conditions": [
                             {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                             {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}
    elif kind == "StatefulSet":
        obj["status"] = {"observedGeneration": gen, "replicas": n, "readyReplicas": n, "currentReplicas": n,
                         "updatedReplicas": n, "availableReplicas": n, "currentRevision": "r1", "updateRevision": "r1"}
    elif kind == "DaemonSet":
        obj["status"] = {"observedGeneration": gen, "desiredNumberScheduled": 1, "currentNumberScheduled": 1,
                         "updatedNumberScheduled": 1, "numberReady": 1, "numberAvailable": 1}
    elif kind == "Job":
        obj["status"] = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}


def not_found(r: Resource, name: str) -> ApiError:
    ident = f"{r.plural}.{r.group}" if r.group else r.plural
    return ApiError(404, "NotFound", f'{ident} "{name}" not found', {"name": name, "group": r.group, "kind": r.plural})


def conflict_error(conflicts: list[tuple[str, Path_]], api_version: str) -> ApiError:
    def who(m: str) -> str:
        name, _, sub = m.partition("|")
        return f'"{name}" with subresource "{sub}"' if sub else f'"{name}"'

    causes = [{"reason": "FieldManagerConflict", "message": f'conflict with {who(m)} using {api_version}',
               "field": field_text(p)} for m, p in conflicts]
    if len(conflicts) == 1:
        m, p = conflicts[0]
        message = f'Apply failed with 1 conflict: conflict with {who(m)} using {api_version}: {field_text(p)}'
    else:
        managers = sorted({m for m, _ in conflicts})
        names = ", ".join(who(m) for m in managers)
        lines = "\n".join(f"- {field_text(p)}" for _, p in conflicts)
        message = f"Apply failed with {len(conflicts)} conflicts: conflicts with {names} using {api_version}:\n{lines}"
    return ApiError(409, "Conflict", message, {"causes": causes})


def validate(r: Resource, ns: str, name: str, config: dict[str, Any]) -> None:
    if not isinstance(config, dict):
        raise ApiError(400, "BadRequest", "the body of the request was in an unknown format")
    if config.get("kind") != r.kind or config.get("apiVersion") != r.api_version:
        raise ApiError(400, "BadRequest",
                       f"the API version in the data ({config.get('apiVersion')}) does not match the expected API "
                       f"version ({r.api_version})" if config.get("kind") == r.kind else
                       f"the kind in the data ({config.get('kind')}) does not match the expected kind ({r.kind})")
    meta = config.get("metadata") or {}
    if meta.get("name") != name:
        raise ApiError(400, "BadRequest", "the name of the object "
                       f"({meta.get('name')}) does not match the name on the URL ({name})")
    causes = []
    if r.group == "rbac.authorization.k8s.io":  # RBAC names are path segments: `system:auth-delegator` is fine
        if name in (".", "..") or "/" in name or "%" in name:
            causes.append(("metadata.name", f'Invalid value: "{name}": may not be \'.\' or \'..\' and may not '
                           "contain '/' or '%'"))
    elif not (DNS_LABEL if r.kind == "Namespace" else DNS_SUBDOMAIN).match(name) or len(name) > 253:
        causes.append(("metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 name must consist of lower '
                       "case alphanumeric characters, '-' or '.'"))
    if r.kind == "ConfigMap":
        for k, v in (config.get("data") or {}).items():
            if not isinstance(v, str):
                causes.append((f"data[{k}]", "Invalid value: must be a string"))
    if causes:
        ident = f"{r.kind}.{r.group}" if r.group else r.kind
        text = ", ".join(f"{f}: {m}" for f, m in causes)
        raise ApiError(422, "Invalid", f'{ident} "{name}" is invalid: {text}',
                       {"name": name, "group": r.group, "kind": r.kind,
                        "causes": [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes]})


# ---------------------------------------------------------------------------- HTTP

@dataclass
class Fault:
    kind: str  # "500", "429", "drop", "deny"
    count: int
    methods: frozenset[str] = frozenset()
    retry_after: int = 1
    path: str = ""  # only requests whose path contains this


class KubeAPI:
    """Start with `KubeAPI().start()`; `url`, `write_kubeconfig()`, `stop()`; faults by `inject()`."""

    def __init__(self, token: str = "", controllers: bool = True, crd_delay: float = 0.2) -> None:
        self.store = Store(controllers, crd_delay)
        self.token = token
        self.port = 0
        self.delay = 0.0
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.connections: set[Any] = set()

    # -- lifecycle
    def start(self) -> KubeAPI:
        handler = type("Handler", (_Handler,), {"api": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection, as a dead API server would."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        with self._lock:
            conns, self.connections = list(self.connections), set()
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    down = stop

    def up(self) -> None:
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- faults and bookkeeping
    def slow(self, seconds: float) -> None:
        self.delay = seconds

    def inject(self, kind: str, count: int = 1, methods: tuple[str, ...] = (), retry_after: int = 1,
               path: str = "") -> None:
        with self._lock:
            self.faults.append(Fault(kind, count, frozenset(methods), retry_after, path))

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.count > 0 and (not f.methods or method in f.methods) and f.path in path:
                    f.count -= 1
                    return f
        return None

    def record(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    def reset_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- helpers for tests
    def write_kubeconfig(self, path: Path, context: str = "test", namespace: str = "") -> Path:
        user: dict[str, Any] = {"token": self.token} if self.token else {}
        ctx: dict[str, Any] = {"cluster": "loopback", "user": "tester"}
        if namespace:
            ctx["namespace"] = namespace
        doc = {"apiVersion": "v1", "kind": "Config", "current-context": context,
               "clusters": [{"name": "loopback", "cluster": {"server": self.url}}],
               "users": [{"name": "tester", "user": user}],
               "contexts": [{"name": context, "context": ctx}]}
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
        return path

    def object(self, api_version: str, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        with self.store.lock:
            for r in self.store.resources.values():
                if r.kind == kind and r.api_version == api_version:
                    key = (r.group, r.plural, namespace if r.namespaced else "", name)
                    return self.store.rendered(key) if key in self.store.objects else None
        return None

    def names(self, kind: str) -> list[str]:
        with self.store.lock:
            out = []
            for (g, plural, ns, name) in self.store.objects:
                if self.store.resources.get((g, plural), Resource("", "", "", "", False)).kind == kind:
                    out.append(f"{ns}/{name}" if ns else name)
            return sorted(out)

    def put(self, obj: dict[str, Any], manager: str = "kubectl-edit") -> dict[str, Any]:
        """Write an object as another manager would (an `Update` by merge patch, creating it if needed)."""
        av, kind, meta = obj["apiVersion"], obj["kind"], obj["metadata"]
        with self.store.lock:
            r = next(r for r in self.store.resources.values() if r.kind == kind and r.api_version == av)
            ns = meta.get("namespace", "") if r.namespaced else ""
            key = (r.group, r.plural, ns, meta["name"])
            if key not in self.store.objects:
                self.store.apply(r, ns, meta["name"], obj, manager, False, False)
                self.store.owners[key].managers[manager] = ("Update",) + self.store.owners[key].managers[manager][1:]
                return self.store.rendered(key)
            return self.store.update(r, ns, meta["name"], obj, manager, "", False)[1]


class _Handler(BaseHTTPRequestHandler):
    api: KubeAPI
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        # Go's net/http (and so the real API server) sets TCP_NODELAY; without it, the headers and the body
        # written separately meet the client's delayed ACK and every answer waits 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.api._lock:
            self.api.connections.add(self.connection)

    def finish(self) -> None:
        with self.api._lock:
            self.api.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        self.api.record(method, url.path)
        if self.api.delay:
            time.sleep(self.api.delay)
        fault = self.api.take_fault(method, url.path)
        if fault is not None and fault.kind == "drop":
            self.close_connection = True
            self.connection.close()
            return
        try:
            if fault is not None and fault.kind == "429":
                raise ApiError(429, "TooManyRequests", "the server has received too many requests and has asked us "
                               "to try again later", {"retryAfterSeconds": fault.retry_after},
                               {"Retry-After": str(fault.retry_after)})
            if fault is not None and fault.kind == "deny":  # an admission webhook that quotes what it refuses
                raise ApiError(403, "Forbidden", 'admission webhook "deny.example.com" denied the request: '
                               + body.decode("utf-8", "replace")[:2000])
            if fault is not None:
                raise ApiError(500, "InternalError", "Internal error occurred: injected fault")
            self._authorize()
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            code, out = self._route(method, [unquote(s) for s in url.path.split("/") if s], query, body)
            self._send(code, out)
        except ApiError as exc:
            self._send(exc.code, exc.status(), exc.headers)
        except OSError:  # the client went away (timed out, or the server is going down)
            self.close_connection = True
        except Exception as exc:  # a bug in the test server: answer like the API would
            self._send(500, ApiError(500, "InternalError", f"test server: {type(exc).__name__}: {exc}").status())

    def _authorize(self) -> None:
        if self.api.token and self.headers.get("Authorization") != f"Bearer {self.api.token}":
            raise ApiError(401, "Unauthorized", "Unauthorized")

    def _send(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        try:
            self._write(code, body, headers)
        except OSError:  # the client went away
            self.close_connection = True

    def _write(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str, parts: list[str], query: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        store = self.api.store
        with store.lock:
            if parts == ["api"]:
                return 200, {"kind": "APIVersions", "versions": ["v1"],
                             "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
            if parts == ["apis"]:
                groups = [{"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in sorted(vs)],
                           "preferredVersion": {"groupVersion": f"{g}/{sorted(vs)[0]}", "version": sorted(vs)[0]}}
                          for g, vs in sorted(store.group_versions().items()) if g]
                return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
            if parts[:1] == ["apis"] and len(parts) == 2:
                versions = sorted(store.group_versions().get(parts[1], set()))
                if not versions:
                    raise ApiError(404, "NotFound", "the server could not find the requested resource")
                gvs = [{"groupVersion": f"{parts[1]}/{v}", "version": v} for v in versions]
                return 200, {"kind": "APIGroup", "apiVersion": "v1", "name": parts[1], "versions": gvs,
                             "preferredVersion": gvs[0]}
            if parts[:1] == ["api"] and len(parts) >= 2:
                group, version, rest = "", parts[1], parts[2:]
            elif parts[:1] == ["apis"] and len(parts) >= 3:
                group, version, rest = parts[1], parts[2], parts[3:]
            else:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            if not rest:
                return 200, self._resource_list(group, version)
            return self._object_route(method, group, version, rest, query, body)

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        rs = [r for r in self.api.store.resources.values() if r.group == group and r.version == version]
        if not rs:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        gv = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                "resources": [r.discovery() for r in sorted(rs, key=lambda r: r.plural)]}

    def _object_route(self, method: str, group: str, version: str, rest: list[str], query: dict[str, str],
                      body: bytes) -> tuple[int, dict[str, Any]]:
        store = self.api.store
        ns: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] == "status"):
            ns, rest = rest[1], rest[2:]
        plural, name, sub = rest[0], (rest[1] if len(rest) > 1 else ""), (rest[2] if len(rest) > 2 else "")
        r = store.resource(group, version, plural)
        if r.namespaced and name and ns is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        nsv = ns or ""
        dry = query.get("dryRun") == "All"
        if method == "GET":
            return (200, store.get(r, nsv, name)) if name else (200, store.list_objects(r, ns, query.get("labelSelector", "")))
        if not name:
            raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on a collection here")
        if method == "PATCH":
            return self._patch(r, nsv, name, sub, query, body, dry)
        if method == "DELETE":
            options = _json(body)  # DeleteOptions: kubectl sends dryRun and propagationPolicy here
            dry = dry or "All" in (options.get("dryRun") or [])
            policy = query.get("propagationPolicy") or options.get("propagationPolicy") or "Background"
            if policy not in ("Orphan", "Background", "Foreground"):
                raise ApiError(400, "BadRequest", f"propagationPolicy {policy!r} is not one of Orphan, Background, Foreground")
            store.delete(r, nsv, name, dry)
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                         "details": {"name": name, "group": r.group, "kind": r.plural}}
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported by the test server")

    def _patch(self, r: Resource, ns: str, name: str, sub: str, query: dict[str, str], body: bytes,
               dry: bool) -> tuple[int, dict[str, Any]]:
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        manager = query.get("fieldManager", "")
        if ctype == "application/apply-patch+yaml":
            if not manager:
                raise ApiError(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required "
                               "value: is required for apply patch")
            try:
                config = _decode_apply(body)
            except (yaml.YAMLError, UnicodeDecodeError) as exc:
                raise ApiError(400, "BadRequest", f"error decoding YAML: {exc}") from None
            if sub:
                raise ApiError(405, "MethodNotAllowed", "apply to subresources is not supported by the test server")
            return self.api.store.apply(r, ns, name, config, manager, query.get("force") == "true", dry)
        if ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            return self.api.store.update(r, ns, name, _json(body), manager or "unknown", sub, dry)
        raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted media "
                       "types include: application/json-patch+json, application/merge-patch+json, "
                       f"application/apply-patch+yaml (got {ctype!r})")


def _decode_apply(body: bytes) -> Any:
    """An apply body is YAML; JSON is YAML too, and most clients send it, so try the fast parser first."""
    try:
        return json.loads(body)
    except ValueError:
        return yaml.load(body.decode("utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _json(body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"error decoding JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "BadRequest", "the body must be an object")
    return data
