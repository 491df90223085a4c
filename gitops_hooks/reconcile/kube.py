"""The cluster connection: the official `kubernetes` client, raw paths, bounded retries with backoff.

Only this module builds requests. Every call is retried on connection errors, timeouts, 5xx and 429
(honouring Retry-After), a bounded number of times with exponential backoff; other errors come back at
once as KubeError with the API's own Status message. Credentials never leave the client: error texts are
built from Status bodies and exception class names, never from request headers.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .environments import Environment

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 10.0
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"


class KubeError(Exception):
    """A request failed; `message` is safe to show (the API's Status message or a connection problem)."""

    def __init__(self, status: int, reason: str, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.details = dict(details or {})

    @property
    def unreachable(self) -> bool:
        return self.status == 0 or self.status in RETRY_STATUSES


@dataclass(frozen=True)
class ResourceInfo:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str = "", name: str = "") -> str:
        base = f"/apis/{self.api_version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return base + (f"/{name}" if name else "")


def api_client(env: Environment) -> Any:
    from kubernetes import client, config

    cfg = client.Configuration()
    try:
        if env.cluster.get("in_cluster"):
            config.load_incluster_config(client_configuration=cfg)
        else:
            config.load_kube_config(config_file=str(env.cluster["kubeconfig"]), context=env.cluster.get("context"),
                                    client_configuration=cfg, persist_config=False)
    except (config.ConfigException, OSError, KeyError, ValueError) as exc:
        where = env.cluster.get("kubeconfig", "in-cluster configuration")
        raise KubeError(0, "ConfigError", f"cannot load the cluster credentials ({where}): "
                        f"{str(exc).splitlines()[0][:200]}") from None
    cfg.retries = False  # ours, below
    cfg.connection_pool_maxsize = max(env.concurrency + 2, 4)
    return client.ApiClient(cfg)


class Kube:
    def __init__(self, env: Environment, api: Any | None = None) -> None:
        self.env = env
        self.api = api if api is not None else api_client(env)
        self.requests = 0
        self._lock = threading.Lock()
        self._resources: dict[str, dict[str, ResourceInfo]] = {}  # group/version -> kind -> info

    def close(self) -> None:
        try:
            self.api.close()
        except Exception:  # noqa: BLE001 - closing a pool must not fail a run
            pass

    # -- requests
    def request(self, method: str, path: str, query: Mapping[str, str] | None = None, body: Any = None,
                content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
        attempt = 0
        while True:
            try:
                return self._once(method, path, query, body, content_type)
            except KubeError as exc:
                if not exc.unreachable or attempt >= self.env.retries:
                    raise
                delay = min(0.25 * 2 ** attempt, 4.0) * (0.75 + random.random() / 2)
                retry_after = exc.details.get("retry_after")
                if retry_after is not None:
                    delay = min(float(retry_after), MAX_RETRY_AFTER)
                time.sleep(delay)
                attempt += 1

    def _once(self, method: str, path: str, query: Mapping[str, str] | None, body: Any,
              content_type: str) -> tuple[int, dict[str, Any]]:
        import urllib3
        from kubernetes.client.exceptions import ApiException

        with self._lock:
            self.requests += 1
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            _, url, hdrs, data, _ = self.api.param_serialize(
                method, path, query_params=list((query or {}).items()), header_params=headers, body=body,
                auth_settings=["BearerToken"])
            resp = self.api.call_api(method, url, header_params=hdrs, body=data,
                                     _request_timeout=self.env.request_timeout)
            raw = resp.read()
        except ApiException as exc:
            raise KubeError(0, "Unreachable", f"cannot reach the API server: {exc.reason or 'connection failed'}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError(0, "Unreachable", f"cannot reach the API server: {_connection_text(exc)}") from None
        payload = _json(raw)
        if 200 <= resp.status < 300:
            return resp.status, payload
        raise _status_error(resp.status, payload, resp.headers)

    # -- discovery
    def resource(self, api_version: str, kind: str, refresh: bool = False) -> ResourceInfo:
        kinds = self._group_version(api_version, refresh)
        info = kinds.get(kind)
        if info is None and not refresh:
            return self.resource(api_version, kind, refresh=True)
        if info is None:
            raise KubeError(404, "NotFound", f"the cluster does not serve {kind} in {api_version} "
                            "(is its CustomResourceDefinition installed and established?)")
        return info

    def _group_version(self, api_version: str, refresh: bool) -> dict[str, ResourceInfo]:
        with self._lock:
            cached = self._resources.get(api_version)
        if cached is not None and not refresh:
            return cached
        group, _, version = api_version.rpartition("/")
        path = f"/apis/{api_version}" if group else f"/api/{version}"
        try:
            _, data = self.request("GET", path)
        except KubeError as exc:
            if exc.status != 404:
                raise
            data = {"resources": []}
        kinds = {}
        for r in data.get("resources", []):
            if "/" in r.get("name", ""):
                continue  # subresources
            kinds[r["kind"]] = ResourceInfo(group, version, r["kind"], r["name"], bool(r.get("namespaced")))
        with self._lock:
            self._resources[api_version] = kinds
        return kinds

    def forget(self, api_version: str) -> None:
        with self._lock:
            self._resources.pop(api_version, None)


def _json(raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {"message": raw[:200].decode("utf-8", "replace")}
    return data if isinstance(data, dict) else {}


def _status_error(status: int, payload: Mapping[str, Any], headers: Any) -> KubeError:
    message = str(payload.get("message") or f"HTTP {status}")
    details = dict(payload.get("details") or {})
    retry_after = headers.get("Retry-After") if headers is not None else None
    if retry_after is not None:
        try:
            details["retry_after"] = float(retry_after)
        except ValueError:
            pass
    return KubeError(status, str(payload.get("reason") or ""), message, details)


def _connection_text(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    inner = reason if isinstance(reason, BaseException) else exc
    name = type(inner).__name__
    text = str(inner)
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text.lower():
        return "timed out"
    if "RemoteDisconnected" in text or "Connection aborted" in text or name == "ProtocolError":
        return "the connection was dropped"
    return name


def preferred_version(kube: Kube, group: str) -> str:
    """The group/version the cluster prefers for a group ('' is the core group, v1)."""
    if not group:
        return "v1"
    _, data = kube.request("GET", f"/apis/{group}")
    pref = data.get("preferredVersion") or {}
    return str(pref.get("groupVersion") or f"{group}/v1")
