"""Environments: which ref goes to which cluster, namespace and folder, with which variables.

They live under `environments:` in the server configuration and are checked by the same schema whether
written by hand or by `gitops-hooks env add`.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import config as configmod

ENV_DEFAULTS: dict[str, Any] = {
    "path": "",
    "namespace": "default",
    "variables": {},
    "backend": "direct",
    "prune": True,
    "allow_empty_prune": False,
    "force_conflicts": True,  # the fields in git win: drift is taken back, as Flux and Argo CD do
    "health_timeout": 300,
    "wait": False,
    "concurrency": 8,
    "request_timeout": 30,
    "retries": 4,
    "helm": "off",
}


@dataclass(frozen=True)
class Environment:
    name: str
    ref: str
    path: str
    cluster: Mapping[str, Any]
    namespace: str = "default"
    variables: Mapping[str, str] = field(default_factory=dict)
    backend: str = "direct"
    prune: bool = True
    allow_empty_prune: bool = False
    force_conflicts: bool = True
    health_timeout: float = 300
    wait: bool = False
    concurrency: int = 8
    request_timeout: float = 30
    retries: int = 4
    inventory_namespace: str = ""
    substitute: bool | None = None  # None: substitute when variables are given, as Flux does with postBuild
    flux: Mapping[str, Any] = field(default_factory=dict)
    argocd: Mapping[str, Any] = field(default_factory=dict)
    helm: str = "off"  # "render": apply the objects of the folder's HelmReleases and Applications, not them

    @property
    def substitutes(self) -> bool:
        return bool(self.variables) if self.substitute is None else self.substitute

    @property
    def parent_namespace(self) -> str:
        return self.inventory_namespace or self.namespace

    @property
    def parent_name(self) -> str:
        return f"gitops-hooks-{self.name}"

    def folder_prefix(self) -> str:
        p = self.path.strip("/")
        return "" if p in ("", ".") else p + "/"


def normal_ref(ref: str) -> str:
    return ref if ref.startswith("refs/") else f"refs/heads/{ref}"


def from_config(name: str, data: Mapping[str, Any]) -> Environment:
    d = {**ENV_DEFAULTS, **data}
    inventory = d.get("inventory") or {}
    return Environment(
        name=name, ref=normal_ref(str(d["ref"])), path=str(d["path"]), cluster=dict(d.get("cluster") or {}),
        namespace=str(d["namespace"]), variables={str(k): str(v) for k, v in dict(d["variables"]).items()},
        backend=str(d["backend"]), prune=bool(d["prune"]), allow_empty_prune=bool(d["allow_empty_prune"]),
        force_conflicts=bool(d["force_conflicts"]), health_timeout=float(d["health_timeout"]), wait=bool(d["wait"]),
        concurrency=int(d["concurrency"]), request_timeout=float(d["request_timeout"]), retries=int(d["retries"]),
        inventory_namespace=str(inventory.get("namespace", "")), flux=dict(d.get("flux") or {}),
        substitute=None if d.get("substitute") is None else bool(d["substitute"]),
        argocd=dict(d.get("argocd") or {}), helm=str(d["helm"]),
    )


def all_environments(server: Mapping[str, Any]) -> list[Environment]:
    return [from_config(n, d) for n, d in sorted((server.get("environments") or {}).items())]


def for_ref(server: Mapping[str, Any], ref: str) -> list[Environment]:
    return [e for e in all_environments(server) if e.ref == ref]


def named(server: Mapping[str, Any], name: str) -> Environment:
    envs = server.get("environments") or {}
    if name not in envs:
        known = ", ".join(sorted(envs)) or "none configured"
        raise configmod.ConfigError(f"no environment {name!r} (known: {known})")
    return from_config(name, envs[name])


# ---------------------------------------------------------------------------- editing the config file

def read_raw(git_dir: Path) -> tuple[str, dict[str, Any]]:
    path = configmod.server_config_path(git_dir)
    if not git_dir.is_dir() or not (git_dir / "HEAD").exists():
        raise configmod.ConfigError(f"{git_dir} is not a git repository")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = "version: 1\n"
    data = configmod.read_yaml_file(path) if path.exists() else {}
    if not isinstance(data, dict):
        raise configmod.ConfigError(f"{path}: the configuration must be a map of settings")
    return text, data


def replace_environments(text: str, envs: Mapping[str, Any]) -> str:
    """The file's text with its top-level `environments:` block replaced; other lines and comments kept."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(r"environments\s*:", line)), None)
    block = yaml.safe_dump({"environments": dict(envs)}, sort_keys=True, default_flow_style=False) if envs else ""
    if start is None:
        body = "".join(lines)
        if body and not body.endswith("\n"):
            body += "\n"
        return body + block
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t#"):
        end += 1
    return "".join(lines[:start]) + block + "".join(lines[end:])


def write_config(git_dir: Path, data: dict[str, Any], text: str) -> None:
    path = configmod.server_config_path(git_dir)
    configmod.checked(data, str(path))  # the same check as the file gets: refuse before writing anything
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".yaml")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def add(git_dir: Path, name: str, settings: dict[str, Any], replace: bool = False) -> str:
    text, data = read_raw(git_dir)
    envs = dict(data.get("environments") or {})
    if name in envs and not replace:
        raise configmod.ConfigError(f"environment {name!r} exists; remove it first or pass --replace")
    envs[name] = settings
    data["environments"] = envs
    write_config(git_dir, data, replace_environments(text, envs))
    return f"environment {name}: {settings['ref']} {settings.get('path') or '.'} -> {describe_cluster(settings)}"


def remove(git_dir: Path, name: str) -> str:
    text, data = read_raw(git_dir)
    envs = dict(data.get("environments") or {})
    if name not in envs:
        raise configmod.ConfigError(f"no environment {name!r}")
    del envs[name]
    data["environments"] = envs
    write_config(git_dir, data, replace_environments(text, envs))
    return f"environment {name} removed (objects in the cluster are left as they are)"


def describe_cluster(settings: Mapping[str, Any]) -> str:
    cluster = settings.get("cluster") or {}
    if (settings.get("flux") or {}).get("receiver_url"):
        where = "a Flux Receiver"
    elif cluster.get("in_cluster"):
        where = "in-cluster service account"
    elif cluster.get("kubeconfig"):
        where = f"{cluster['kubeconfig']}" + (f" context {cluster['context']}" if cluster.get("context") else "")
    else:
        where = "no cluster"
    return f"{where}, namespace {settings.get('namespace', 'default')}, backend {settings.get('backend', 'direct')}"


def listing(git_dir: Path) -> list[str]:
    server = configmod.load_server_config(git_dir)
    out = []
    for name, settings in sorted((server.get("environments") or {}).items()):
        env = from_config(name, settings)
        out.append(f"{name}\t{env.ref}\t{env.path or '.'}\t{describe_cluster(settings)}")
    return out
