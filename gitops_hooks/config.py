"""Server policy: load, check against schemas/config.schema.json, and layer.

Layers, loosest first: built-in defaults, the server's configuration file (inside the bare repository,
out of reach of any push), the server's per-ref overlay, and the pushed repository's own
`.gitops-hooks.yaml`, which may only tighten: a looser setting there is reported and ignored.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .findings import Finding, Severity, finding

CONFIG_DIR = "gitops-hooks"  # inside the bare repository
CONFIG_FILE = "config.yaml"
REPO_POLICY_FILE = ".gitops-hooks.yaml"

DEFAULTS: dict[str, Any] = {
    "version": 1,
    "kubernetes_version": "",  # empty: the newest bundled
    "engine": "builtin",
    "kubeconform": {"command": "kubeconform", "schema_locations": []},
    "strict": True,
    "schema_dirs": [],
    "admission_policy_dirs": [],  # folders of ValidatingAdmissionPolicy (and bindings) evaluated at push
    "cel_rules": [],  # administrator rules: CEL expressions with id, message, severity, match
    "manifests": {"include": ["**/*.yaml", "**/*.yml", "**/*.json"], "exclude": []},
    "paths": {"exclude": []},
    "refs": {"check": ["refs/heads/*"], "protect": []},
    "rules": {},
    "allow": [],
    "suppressible": [],
    "ref_policies": {},
    "limits": {
        "max_file_bytes": 20 * 1024 * 1024,
        "max_documents_per_file": 10_000,
        "max_alias_expansion": 2_000_000,
        "max_objects_per_push": 100_000,
        "timeout_seconds": 60,
    },
    "report": {"max_findings": 50},
    "cache": {"max_mb": 256},  # the result cache's rows; the least recently used go beyond it
    "kustomize": {"enabled": True, "kubectl": ""},  # empty: the suite's own kubectl, else PATH's
    # Helm charts of the tree, rendered at push; repository_urls: git URLs by which HelmReleases'
    # GitRepository and Argo CD Applications name this repository
    "helm": {"enabled": True, "repository_urls": []},
    "environments": {},
}


class ConfigError(Exception):
    """The configuration cannot be used; the message is for the administrator."""


@functools.lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    from importlib.resources import files

    text = files("gitops_hooks.schemas_data").joinpath("config.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


@functools.lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema_rs

    return jsonschema_rs.validator_for(_schema())


def warm_up() -> None:
    """Compile the configuration's schema now (the resident gate server does, once)."""
    _validator()


def schema_errors(data: Any, where: str) -> list[str]:
    """Problems of a configuration document, each naming the field."""
    validator = _validator()
    out = []
    for err in validator.iter_errors(data):
        pointer = "/".join(str(p) for p in err.instance_path) or "(top level)"
        out.append(f"{where}: {pointer}: {err.message}")
    return sorted(out)


def merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge of maps; lists and scalars in the overlay replace."""
    out = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None


def server_config_path(git_dir: Path) -> Path:
    return git_dir / CONFIG_DIR / CONFIG_FILE


def load_server_config(git_dir: Path) -> dict[str, Any]:
    """The server's configuration merged over the defaults. Raises ConfigError if it is not usable."""
    path = server_config_path(git_dir)
    try:
        data = read_yaml_file(path)
    except FileNotFoundError:
        data = {}
    return checked(data, str(path))


def _severity_words(rules: Any) -> Any:
    """YAML 1.1 reads an unquoted `off` as false; in a severity map it means the word."""
    if isinstance(rules, dict):
        return {k: ("off" if v is False else v) for k, v in rules.items()}
    return rules


def normalise(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    if "rules" in out:
        out["rules"] = _severity_words(out["rules"])
    if isinstance(out.get("ref_policies"), dict):
        out["ref_policies"] = {
            k: ({**v, "rules": _severity_words(v.get("rules"))} if isinstance(v, dict) and "rules" in v else v)
            for k, v in out["ref_policies"].items()
        }
    return out


def checked(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the configuration must be a map of settings")
    data = normalise(data)
    problems = schema_errors(data, where)
    if problems:
        raise ConfigError("\n".join(problems))
    merged = merge(DEFAULTS, data)
    for rule_id, sev in merged["rules"].items():
        Severity.parse(sev)
        del rule_id
    for check in CONFIG_CHECKS:  # e.g. the administrator's CEL rules compile, and enter the catalogue
        check(merged)
    return merged


# Checks of a configuration that need a higher layer (the CEL engine for `cel_rules`): each such module
# adds its check here when imported; the entry points import them before they load a configuration.
CONFIG_CHECKS: list[Callable[[Mapping[str, Any]], object]] = []


def export_policy(config: Mapping[str, Any]) -> dict[str, Any]:
    """What a client needs to run the server's checks: the config less environments and their secrets."""
    out = {k: copy.deepcopy(v) for k, v in config.items() if k != "environments"}
    return out


# ---------------------------------------------------------------------------- globs

@functools.lru_cache(maxsize=1024)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """Git-style globs: `**` crosses folders, `*` and `?` do not; a pattern without `/` matches any folder."""
    pat = pattern.lstrip("/")
    if "/" not in pat:
        pat = "**/" + pat
    out = []
    i = 0
    while i < len(pat):
        c = pat[i]
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pat.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z")


def folder_stamp(folders: Iterable[str]) -> list[Any]:
    """Names, sizes and times of the files in the administrator's folders (schema_dirs,
    admission_policy_dirs): an edit there changes it, so what was read or found from them is not reused."""
    out: list[Any] = []
    for folder in sorted(folders):
        root = Path(folder)
        if root.is_dir():
            for path in sorted(root.rglob("*")):
                if path.is_file():
                    st = path.stat()
                    out.append([str(path), st.st_size, st.st_mtime_ns])
        else:
            out.append([folder, None])
    return out


def matches(path: str, patterns: Iterable[str]) -> bool:
    return matcher(patterns)(path) is not None


def matcher(patterns: Iterable[str]) -> Callable[[str], re.Match[str] | None]:
    """`match` of the one regex for a list of globs: for loops over every path of a tree. Each path's
    answer is kept (a long-lived process matches the same paths push after push)."""
    return _answers(tuple(patterns)).__getitem__


class _Answers(dict[str, "re.Match[str] | None"]):
    """path -> the match of one list of globs, computed on the first lookup."""

    LIMIT = 50_000

    def __init__(self, pattern: re.Pattern[str]) -> None:
        super().__init__()
        self.match = pattern.match

    def __missing__(self, path: str) -> re.Match[str] | None:
        if len(self) >= self.LIMIT:
            self.clear()
        found = self[path] = self.match(path)
        return found


@functools.lru_cache(maxsize=64)
def _answers(patterns: tuple[str, ...]) -> _Answers:
    return _Answers(_any_of(patterns))


@functools.lru_cache(maxsize=256)
def _any_of(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """One regex for a list of globs (a tree's paths are matched against the same lists thousands of
    times)."""
    if not patterns:
        return re.compile(r"(?!)")
    return re.compile("|".join(f"(?:{glob_regex(p).pattern})" for p in patterns))


# ---------------------------------------------------------------------------- policy

@dataclass(frozen=True)
class Allowance:
    rule: str
    path: str = "**"
    kind: str = ""
    namespace: str = ""
    name: str = ""

    def covers(self, f: Finding) -> bool:
        if f.rule != self.rule and self.rule != "*":
            return False
        if not matches(f.path, [self.path]):
            return False
        if self.kind or self.namespace or self.name:
            if f.subject is None:
                return False
            _, kind, ns, name = f.subject
            if self.kind and self.kind != kind:
                return False
            if self.namespace and self.namespace != ns:
                return False
            if self.name and self.name != name:
                return False
        return True


@dataclass(frozen=True)
class Policy:
    """The effective settings for checking one tree."""

    config: dict[str, Any]
    notes: tuple[Finding, ...] = field(default=())  # e.g. loosening attempts that were ignored

    @property
    def kubernetes_version(self) -> str:
        return str(self.config.get("kubernetes_version") or "")

    @property
    def strict(self) -> bool:
        return bool(self.config["strict"])

    @property
    def include(self) -> list[str]:
        return list(self.config["manifests"]["include"])

    @property
    def manifest_exclude(self) -> list[str]:
        return list(self.config["manifests"]["exclude"]) + list(self.config["paths"]["exclude"])

    @property
    def path_exclude(self) -> list[str]:
        return list(self.config["paths"]["exclude"])

    @property
    def limits(self) -> dict[str, int]:
        return dict(self.config["limits"])

    @property
    def allowances(self) -> tuple[Allowance, ...]:
        return tuple(Allowance(**a) for a in self.config["allow"])

    def severity(self, rule_id: str, default: Severity) -> Severity:
        sev = self.config["rules"].get(rule_id)
        return Severity.parse(sev) if sev else default

    def apply(self, findings: Iterable[Finding]) -> list[Finding]:
        """Set each finding's severity from policy; drop what is off, excluded or allowed."""
        out = []
        allow = self.allowances
        excluded = self.path_exclude
        for f in findings:
            sev = self.severity(f.rule, f.severity)
            if sev is Severity.OFF:
                continue
            if excluded and matches(f.path, excluded) and not f.rule.startswith(("internal", "config")):
                continue
            if any(a.covers(f) for a in allow):
                continue
            out.append(f if sev == f.severity else f.with_severity(sev))
        out.extend(self.notes)
        return out

    def fingerprint(self) -> str:
        import hashlib

        return hashlib.sha256(json.dumps(self.config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def for_ref(config: Mapping[str, Any], ref: str) -> dict[str, Any]:
    """Apply the server's per-ref overlays (`ref_policies`, keyed by ref glob) in file order."""
    out = dict(config)
    for pattern, overlay in config.get("ref_policies", {}).items():
        if glob_regex(pattern if "/" in pattern else f"refs/heads/{pattern}").match(ref):
            out = merge(out, overlay)
    return out


def tighten(base: Mapping[str, Any], repo: Mapping[str, Any], where: str) -> tuple[dict[str, Any], list[Finding]]:
    """Layer a repository's own policy over the server's: only what makes the gate stricter is taken."""
    out = copy.deepcopy(dict(base))
    notes: list[Finding] = []

    def ignored(key: str, why: str) -> None:
        notes.append(finding("policy-loosening-ignored", where, 1, 1, f"{key}: {why}; the server's setting stands"))

    from .findings import rule as rule_meta

    for key, value in normalise(dict(repo)).items():
        if key == "rules" and isinstance(value, Mapping):
            for rule_id, sev_text in value.items():
                try:
                    sev = Severity.parse(str(sev_text))
                except ValueError as exc:
                    ignored(f"rules.{rule_id}", str(exc))
                    continue
                try:
                    default = rule_meta(rule_id).severity
                except KeyError:
                    ignored(f"rules.{rule_id}", "no such rule")
                    continue
                current = Severity.parse(out["rules"].get(rule_id, str(default)))
                if sev >= current:
                    out["rules"][rule_id] = str(sev)
                else:
                    ignored(f"rules.{rule_id}", f"{sev} is looser than {current}")
        elif key == "strict":
            if value is True:
                out["strict"] = True
            elif value is not out["strict"]:
                ignored("strict", "turning strict validation off loosens the gate")
        elif key == "manifests" and isinstance(value, Mapping):
            extra = [p for p in value.get("include", []) if p not in out["manifests"]["include"]]
            out["manifests"]["include"] = out["manifests"]["include"] + extra
            if value.get("exclude"):
                ignored("manifests.exclude", "excluding files loosens the gate")
        elif key in ("version",):
            continue
        else:
            ignored(key, "this setting belongs to the server's configuration")
    return out, notes


def repo_policy_errors(data: Any) -> list[str]:
    if not isinstance(data, dict):
        return ["the file must be a map of settings"]
    return []
