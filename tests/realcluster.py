"""The real API server of ../shared/tools/realk8s, looked at and written to as the tests look at the loopback
fake (tests/kubeapi.py): `object`, `put`, `write_kubeconfig`. Reads go through the official `kubernetes`
client, not through the suite's own client, so that what a test sees is the server's word."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config


class RealCluster:
    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        settings = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=settings)
        self.api = client.ApiClient(settings)

    def write_kubeconfig(self, path: Path, context: str = "test") -> Path:
        """A copy of the cluster's kubeconfig whose only context is named `context`."""
        data = yaml.safe_load(self.kubeconfig.read_text(encoding="utf-8"))
        data["contexts"] = [{**data["contexts"][0], "name": context}]
        data["current-context"] = context
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        path.chmod(0o600)
        return path

    @staticmethod
    def _path(api_version: str, kind: str, namespace: str, name: str = "") -> str:
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        where = f"/namespaces/{namespace}" if namespace else ""
        plural = kind.lower() + "s"  # true of every kind these tests write (no "-y" or "-s" endings)
        return f"{base}{where}/{plural}" + (f"/{name}" if name else "")

    def _call(self, method: str, path: str, query: list[tuple[str, str]] | None = None, body: Any = None,
              content_type: str = "application/json") -> dict[str, Any] | None:
        """The answer's object; None for 404 Not Found; any other failure raises, naming the answer."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        method, url, headers, data, _ = self.api.param_serialize(method, path, query_params=query or [],
                                                                 header_params=headers, body=body,
                                                                 auth_settings=["BearerToken"])
        response = self.api.call_api(method, url, headers, data, _request_timeout=30)
        response.read()
        if response.status == 404:
            return None
        if response.status >= 300:
            raise AssertionError(f"{method} {path}: {response.status} {response.data!r}")
        return json.loads(response.data)

    def object(self, api_version: str, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        return self._call("GET", self._path(api_version, kind, namespace, name))

    def put(self, obj: dict[str, Any], manager: str = "kubectl-edit") -> dict[str, Any]:
        """Write an object as another manager would (an `Update` by merge patch, creating it if needed)."""
        av, kind, meta = obj["apiVersion"], obj["kind"], obj["metadata"]
        ns = meta.get("namespace", "")
        query = [("fieldManager", manager)]
        done = self._call("PATCH", self._path(av, kind, ns, meta["name"]), query, obj, "application/merge-patch+json")
        if done is None:
            done = self._call("POST", self._path(av, kind, ns), query, obj)
        assert done is not None
        return done
