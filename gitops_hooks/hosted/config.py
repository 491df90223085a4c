"""The webhook service's configuration: load, check against schemas/serve.schema.json, read secrets.

One file names where to listen, where to keep state, and the repositories served. Each repository's
policy is the suite's server configuration (the same keys, the same schema, `config.checked`), written
inline or named by `policy_file`. Secret, token and key files are read here, once, with surrounding
whitespace stripped; their contents never appear in a message.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import config as configmod
from .model import Credentials

PLATFORM_NAMES = ("github", "gitlab", "bitbucket-cloud", "bitbucket-datacenter", "gitea", "forgejo")
DEFAULT_API = {  # the public services; self-managed instances must say where their API is
    "github": "https://api.github.com",
    "gitlab": "https://gitlab.com/api/v4",
    "bitbucket-cloud": "https://api.bitbucket.org/2.0",
}
SERVICE_KEYS = frozenset({"platform", "repository", "clone_url", "api_url", "webhook_secret_file", "token_file",
                          "app_id", "private_key_file", "installation_id", "policy_file", "plans",
                          "reconcile_every"})
DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_STATE = "/var/lib/gitops-hooks"
DEFAULT_EVERY = "5m"  # reconcile_every: a round per repository with environments every five minutes


# Forgejo is a fork of Gitea with the same payloads and API, and many Forgejo releases send Gitea's
# X-Gitea-* headers: a repository configured under either name takes the deliveries of both.
FAMILIES = {"forgejo": "gitea"}


def family(platform: str) -> str:
    """The name a configured repository is matched by: `gitea` for Gitea and Forgejo alike."""
    return FAMILIES.get(platform, platform)


class ServeConfigError(Exception):
    """The service's configuration cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Repository:
    platform: str
    name: str  # owner/name, group/project, workspace/slug or PROJECT/slug
    clone_url: str
    secret: bytes = field(repr=False)
    credentials: Credentials = field(repr=False)
    policy: Mapping[str, Any] = field(default_factory=dict)  # the suite's server configuration, checked
    plan_forks: bool = False
    plans: bool = True
    reconcile_every: float = 300.0  # seconds between rounds; 0: no rounds

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.name.lower()}"


@dataclass(frozen=True)
class ServeConfig:
    path: Path
    host: str
    port: int
    state_dir: Path
    repositories: tuple[Repository, ...]
    workers: int = 1
    max_attempts: int = 20

    def find(self, platform: str, name: str) -> Repository | None:
        """The repository configured for a delivery of `platform` (Gitea and Forgejo are one family)."""
        return next((r for r in self.of_platform(platform) if r.name.lower() == name.lower()), None)

    def of_platform(self, platform: str) -> list[Repository]:
        return [r for r in self.repositories if family(r.platform) == family(platform)]


@functools.lru_cache(maxsize=1)
def _validator() -> Any:
    from importlib.resources import files

    import jsonschema_rs

    text = files("gitops_hooks.schemas_data").joinpath("serve.schema.json").read_text(encoding="utf-8")
    return jsonschema_rs.validator_for(json.loads(text))


# What a value that does not match its field's pattern should look like, in words.
SHAPES = {"listen": "HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080",
          "repository": "owner/name (GitHub, Gitea, Forgejo), group/project (GitLab), workspace/slug "
                        "(Bitbucket Cloud) or PROJECT/slug (Bitbucket Data Center)",
          "api_url": "an http:// or https:// URL"}


def _schema_problems(data: Any, where: Path) -> list[str]:
    out = []
    for err in _validator().iter_errors(data):
        pointer = "/".join(str(p) for p in err.instance_path) or "(top level)"
        out.append(f"{where}: {pointer}: {_schema_message(err)}")
    return sorted(out)


def _schema_message(err: Any) -> str:
    """The validator's message, with every allowed value of an enum and a pattern said in words."""
    kind, field_name = err.kind.name, str(err.instance_path[-1]) if err.instance_path else ""
    if kind == "enum":
        return f"{json.dumps(err.instance)} is not one of {', '.join(map(str, err.kind.options))}"
    if kind == "pattern" and field_name in SHAPES:
        return f"{json.dumps(err.instance)} is not {SHAPES[field_name]}"
    return str(err.message)


def read_secret(path_text: str, base: Path, what: str) -> str:
    """The stripped contents of a secret file (relative paths from the configuration's folder)."""
    path = Path(path_text) if Path(path_text).is_absolute() else base / path_text
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ServeConfigError(f"{what}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not text:
        raise ServeConfigError(f"{what}: {path} is empty")
    return text


def split_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    number = int(port)
    if not 0 < number < 65536:
        raise ServeConfigError(f"listen: port {number} is out of range (1-65535)")
    return host.strip("[]"), number


def every_seconds(value: Any, where: str) -> float:
    """`reconcile_every` in seconds: 30s, 5m, 1h, a number of seconds; 0 or off for no rounds."""
    from ..reconcile.commands import duration

    text = str(value).strip().lower()
    if text in ("0", "off", "false"):
        return 0.0
    try:
        return duration(text)
    except ValueError as exc:
        raise ServeConfigError(f"{where}: reconcile_every: {exc} (or 0/off for no rounds)") from None


def _policy(entry: Mapping[str, Any], base: Path, where: str) -> dict[str, Any]:
    inline = {k: v for k, v in entry.items() if k not in SERVICE_KEYS}
    if "policy_file" in entry:
        if inline:
            raise ServeConfigError(f"{where}: give the policy inline or by policy_file, not both "
                                   f"(inline keys: {', '.join(sorted(inline))})")
        path = Path(entry["policy_file"])
        path = path if path.is_absolute() else base / path
        try:
            data = configmod.read_yaml_file(path)
        except FileNotFoundError:
            raise ServeConfigError(f"{where}: policy_file: {path} does not exist") from None
        except configmod.ConfigError as exc:
            raise ServeConfigError(f"{where}: policy_file: {exc}") from None
        inline, where = data, f"{where}: policy_file {path}"
    try:
        configmod.checked(inline, where)
    except (configmod.ConfigError, ValueError) as exc:
        raise ServeConfigError(str(exc)) from None
    return dict(inline)


def _repository(entry: Mapping[str, Any], base: Path, index: int, where: Path, every: Any) -> Repository:
    platform = str(entry["platform"])
    label = f"{where}: repositories/{index} ({entry['repository']})"
    api_url = str(entry.get("api_url") or DEFAULT_API.get(platform, ""))
    if not api_url:
        raise ServeConfigError(f"{label}: api_url is required for {platform} (the instance's REST API base)")
    secret = read_secret(str(entry["webhook_secret_file"]), base, f"{label}: webhook_secret_file")
    token = read_secret(str(entry["token_file"]), base, f"{label}: token_file") if "token_file" in entry else ""
    key = read_secret(str(entry["private_key_file"]), base, f"{label}: private_key_file") \
        if "private_key_file" in entry else ""
    if key and platform != "github":
        raise ServeConfigError(f"{label}: app_id/private_key_file/installation_id are for GitHub Apps only")
    creds = Credentials(api_url.rstrip("/"), token, str(entry.get("app_id", "")), key,
                        str(entry.get("installation_id", "")))
    plans = entry.get("plans") or {}
    return Repository(platform, str(entry["repository"]), str(entry["clone_url"]), secret.encode("utf-8"), creds,
                      _policy(entry, base, label), bool(plans.get("forks", False)), bool(plans.get("enabled", True)),
                      every_seconds(entry.get("reconcile_every", every), label))


def load(path: Path) -> ServeConfig:
    """The checked configuration, with every secret file read. Raises ServeConfigError."""
    try:
        data = configmod.read_yaml_file(path)
    except FileNotFoundError:
        raise ServeConfigError(f"{path}: no such file") from None
    except configmod.ConfigError as exc:
        raise ServeConfigError(str(exc)) from None
    if not isinstance(data, dict):
        raise ServeConfigError(f"{path}: the configuration must be a map of settings")
    problems = _schema_problems(data, path)
    if problems:
        raise ServeConfigError("\n".join(problems))
    base = path.resolve().parent
    every = data.get("reconcile_every", DEFAULT_EVERY)
    every_seconds(every, str(path))  # a bad top-level value is named even when every repository overrides it
    repos = tuple(_repository(e, base, i, path, every) for i, e in enumerate(data["repositories"]))
    seen: set[str] = set()
    for r in repos:
        same = f"{family(r.platform)}:{r.name.lower()}"
        if same in seen:
            raise ServeConfigError(f"{path}: repositories: {r.platform} {r.name} is configured twice"
                                   + (" (gitea and forgejo are one platform here)" if r.platform in ("gitea", "forgejo") else ""))
        seen.add(same)
    host, port = split_listen(str(data.get("listen", DEFAULT_LISTEN)))
    state = Path(str(data.get("state_dir", DEFAULT_STATE)))
    state = state if state.is_absolute() else base / state
    return ServeConfig(path.resolve(), host, port, state, repos, int(data.get("workers", 1)),
                       int(data.get("max_attempts", 20)))
