"""Schemas by group, version and kind: Kubernetes' own, CRDs from the tree, the administrator's, bundled.

Kubernetes schemas are the JSON schemas the `kubernetes-validate` package ships as data (one
`_definitions.json` per version, `-local-strict` for unknown fields refused). We read them as data and
compile each kind once with jsonschema-rs; `kubernetes_validate` itself is never imported.

CRD schemas (OpenAPI v3 with Kubernetes extensions) are turned into JSON Schema by `crd_to_jsonschema`,
the one conversion used for CRDs found in the tree, in the administrator's folders and bundled ones.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GVK = tuple[str, str, str]  # (group, version, kind)

# API groups served by Kubernetes itself; a kind in one of these with no schema is a mistake.
HISTORICAL_BUILTIN_GROUPS = frozenset({"", "extensions", "apps", "batch", "policy", "autoscaling"})


def schema_root() -> Path:
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the kubernetes-validate package (schemas as data) is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "kubernetes-json-schema"


def _vkey(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


@functools.lru_cache(maxsize=1)
def available_versions() -> tuple[str, ...]:
    """Kubernetes versions with bundled schemas, oldest first, as 'major.minor'."""
    names = {m.group(1) for p in schema_root().iterdir() if (m := re.match(r"v(\d+\.\d+)\.\d+-local$", p.name))}
    return tuple(sorted(names, key=_vkey))


def resolve_version(wanted: str) -> str:
    versions = available_versions()
    if not wanted:
        return versions[-1]
    mm = ".".join(wanted.lstrip("v").split(".")[:2])
    if mm not in versions:
        raise ValueError(
            f"Kubernetes {wanted} has no bundled schemas; choose one of {versions[0]} to {versions[-1]}"
        )
    return mm


def split_api_version(api_version: str) -> tuple[str, str]:
    if "/" in api_version:
        group, version = api_version.rsplit("/", 1)
        return group, version
    return "", api_version


def _json_load(path: Path) -> Any:
    try:
        import orjson

        return orjson.loads(path.read_bytes())
    except ImportError:
        return json.loads(path.read_text(encoding="utf-8"))


@dataclass
class Schema:
    gvk: GVK
    source: str  # where the schema comes from, for messages
    validator: Any  # a compiled jsonschema-rs validator
    scope: str = ""  # Namespaced / Cluster, when known


class KubernetesSchemas:
    """Compiled validators for the built-in kinds of one Kubernetes version."""

    def __init__(self, version: str, strict: bool) -> None:
        self.version = resolve_version(version)
        self.strict = strict
        self._compiled: dict[GVK, Schema | None] = {}

    @functools.cached_property
    def defs(self) -> dict[str, Any]:
        """Read on first use: a push whose results all come from the cache never needs them."""
        folder = f"v{self.version}.0-local" + ("-strict" if self.strict else "")
        return _json_load(schema_root() / folder / "_definitions.json")["$defs"]

    @functools.cached_property
    def index(self) -> dict[GVK, str]:
        index: dict[GVK, str] = {}
        for name, d in self.defs.items():
            for g in d.get("x-kubernetes-group-version-kind", ()):
                index.setdefault((g["group"], g["version"], g["kind"]), name)
        return index

    @functools.cached_property
    def groups(self) -> frozenset[str]:
        return frozenset(g for g, _, _ in self.index) | HISTORICAL_BUILTIN_GROUPS

    def get(self, gvk: GVK) -> Schema | None:
        if gvk not in self._compiled:
            name = self.index.get(gvk)
            self._compiled[gvk] = None if name is None else Schema(
                gvk, f"Kubernetes {self.version}", compile_schema({"$ref": f"#/$defs/{name}", "$defs": self.defs})
            )
        return self._compiled[gvk]

    def definition(self, name: str) -> dict[str, Any]:
        return self.defs[name]

    def is_builtin_group(self, group: str) -> bool:
        return group in self.groups or group.endswith(".k8s.io") and group in self.groups


def definition_closure(defs: dict[str, Any], name: str) -> dict[str, Any]:
    """A definition and every definition it refers to, as `{"$ref": ..., "$defs": ...}`."""
    needed: dict[str, Any] = {}
    todo = [name]
    while todo:
        current = todo.pop()
        if current in needed or current not in defs:
            continue
        needed[current] = defs[current]
        todo.extend(re.findall(r'"#/\$defs/([^"]+)"', json.dumps(defs[current])))
    return {"$ref": f"#/$defs/{name}", "$defs": needed}


def compile_schema(schema: dict[str, Any]) -> Any:
    import jsonschema_rs

    return jsonschema_rs.validator_for(schema, validate_formats=False)


# ---------------------------------------------------------------------------- CRDs

def crd_versions(crd: dict[str, Any]) -> Iterable[tuple[GVK, dict[str, Any], str]]:
    """(gvk, openAPIV3Schema, scope) for each served version of a CustomResourceDefinition object."""
    spec = crd.get("spec") if isinstance(crd.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    group = spec.get("group") or ""
    names = spec.get("names") or {}
    kind = names.get("kind") if isinstance(names, dict) else None
    scope = spec.get("scope") or "Namespaced"
    if not isinstance(group, str) or not isinstance(kind, str):
        return
    shared = (spec.get("validation") or {}).get("openAPIV3Schema") if isinstance(spec.get("validation"), dict) else None
    for v in spec.get("versions") or []:
        if not isinstance(v, dict) or not v.get("served", True) or not isinstance(v.get("name"), str):
            continue
        schema = (v.get("schema") or {}).get("openAPIV3Schema") if isinstance(v.get("schema"), dict) else None
        schema = schema or shared
        if isinstance(schema, dict):
            yield (group, v["name"], kind), schema, scope


def crd_to_jsonschema(schema: dict[str, Any], strict: bool, object_meta: dict[str, Any] | None) -> dict[str, Any]:
    """OpenAPI v3 (structural, with x-kubernetes-* extensions) to JSON Schema 2020-12."""
    out = _convert(schema, strict, top=True)
    props = out.setdefault("properties", {})
    props["apiVersion"] = {"type": "string"}
    props["kind"] = {"type": "string"}
    if object_meta is not None:
        props["metadata"] = {"$ref": object_meta["$ref"]}
        out["$defs"] = object_meta["$defs"]
    if strict and "additionalProperties" not in out and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


_PASS = ("enum", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength",
         "maxLength", "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties", "multipleOf",
         "required", "format")


def _convert(s: Any, strict: bool, top: bool = False) -> dict[str, Any]:
    if not isinstance(s, dict):
        return {}
    out: dict[str, Any] = {}
    for key in _PASS:
        if key in s:
            out[key] = s[key]
    if isinstance(s.get("exclusiveMinimum"), bool):  # OpenAPI 3.0 boolean form
        out.pop("exclusiveMinimum")
        if s["exclusiveMinimum"] and "minimum" in s:
            out["exclusiveMinimum"] = out.pop("minimum")
    if isinstance(s.get("exclusiveMaximum"), bool):
        out.pop("exclusiveMaximum")
        if s["exclusiveMaximum"] and "maximum" in s:
            out["exclusiveMaximum"] = out.pop("maximum")
    nullable = bool(s.get("nullable"))
    if s.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"] + (["null"] if nullable else [])
    elif "type" in s:
        t = s["type"]
        out["type"] = [t, "null"] if nullable and isinstance(t, str) else t
    if "enum" in out and nullable:
        out["enum"] = list(out["enum"]) + [None]
    if "properties" in s and isinstance(s["properties"], dict):
        out["properties"] = {k: _convert(v, strict) for k, v in s["properties"].items()}
    if "items" in s:
        out["items"] = _convert(s["items"], strict)
    ap = s.get("additionalProperties")
    if isinstance(ap, dict):
        out["additionalProperties"] = _convert(ap, strict)
    elif isinstance(ap, bool):
        out["additionalProperties"] = ap
    # Junctors only add constraints: structural schemas declare every field outside them too, and that
    # outer schema decides which fields are unknown. Closing objects inside a junctor would refuse valid
    # objects (Gateway API's `oneOf` over address types lists only some of the fields in each branch).
    for comb in ("allOf", "anyOf", "oneOf"):
        if isinstance(s.get(comb), list):
            out[comb] = [_convert(x, False) for x in s[comb]]
    if isinstance(s.get("not"), dict):
        out["not"] = _convert(s["not"], False)
    if s.get("x-kubernetes-list-type") == "set":  # the API server refuses duplicates ("Duplicate value")
        out["uniqueItems"] = True
    embedded = bool(s.get("x-kubernetes-embedded-resource"))
    if embedded:
        props = out.setdefault("properties", {})
        for k in ("apiVersion", "kind"):
            props.setdefault(k, {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if (
        strict
        and not top
        and "properties" in out
        and "additionalProperties" not in out
        and not s.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


class UnusableSchema(Exception):
    """A custom resource's schema cannot be compiled (a broken CRD); the message says which and where."""


def validation_rules(schema: Any) -> str:
    """The CEL rules (x-kubernetes-validations) an openAPIV3Schema carries: "" none; "rules" none that
    compare with oldSelf; "plain" some transition rules; "optional" some with optionalOldSelf, which run
    on create too. A rule compares with oldSelf when any text of its entry (rule, messageExpression, ...)
    names it; the schemas are walked once (a CRD's schema can be thousands of nodes)."""
    transition = optional = found = False
    for entry in _rule_entries(schema):
        found = True
        if not isinstance(entry, dict):
            transition = transition or "oldSelf" in str(entry)
            continue
        if any(isinstance(text, str) and "oldSelf" in text for text in entry.values()):
            transition = True
            optional = optional or entry.get("optionalOldSelf") is True
    if not found:
        return ""
    return "optional" if optional else "plain" if transition else "rules"


_NOT_SCHEMAS = frozenset(("default", "example", "enum"))  # values, not schemas: rules there are data


def _rule_entries(schema: Any) -> Iterator[Any]:
    """Every entry of every x-kubernetes-validations list in a schema and the schemas under it: the
    properties (whatever their names), items, additionalProperties and any other schema-valued key."""
    stack = [schema] if isinstance(schema, dict) else []
    while stack:
        node = stack.pop()
        rules = node.get("x-kubernetes-validations")
        if rules:
            yield from rules if isinstance(rules, list) else [rules]
        for key, child in node.items():
            if type(child) is not dict:
                continue
            if key in ("properties", "patternProperties"):
                stack.extend(c for c in child.values() if type(c) is dict)
            elif key not in _NOT_SCHEMAS:
                stack.append(child)


class CustomSchemas:
    """Schemas for custom resources, keyed by GVK, from CRD objects; compiled on first use."""

    def __init__(self, strict: bool, object_meta: dict[str, Any] | Callable[[], dict[str, Any]] | None,
                 source_name: str, meta_key: str = "") -> None:
        self.strict = strict
        self.object_meta = object_meta
        self.source_name = source_name
        self.meta_key = meta_key  # names object_meta (the Kubernetes version it comes from); "" if unnamed
        self._content: dict[GVK, str] = {}
        self._raw: dict[GVK, tuple[dict[str, Any], str, str]] = {}
        self._compiled: dict[GVK, Schema] = {}
        self._broken: dict[GVK, str] = {}
        self._lazy: dict[GVK, Callable[[GVK], tuple[dict[str, Any], str, str]]] = {}
        self._traits: dict[GVK, tuple[str, str]] = {}
        self._pinned: set[GVK] = set()  # kinds of the server's schemas (bundled, administrator's): see pin

    def add_crd(self, crd: dict[str, Any], where: str, pin: bool = False) -> list[GVK]:
        """Register (or replace) the kinds a CRD object defines. With `pin`, they are the server's (its
        administrator's folders): registrations without `pin`, of CRDs in a push, leave them as they are."""
        added = []
        for gvk, schema, scope in crd_versions(crd):
            if gvk in self._pinned and not pin:
                continue
            if pin:
                self._pinned.add(gvk)
            self._raw[gvk] = (schema, where, scope)
            self._compiled.pop(gvk, None)
            self._traits.pop(gvk, None)
            added.append(gvk)
        return added

    def copy(self) -> CustomSchemas:
        """An independent copy (loaders and compiled validators are shared; registrations are not)."""
        other = copy.copy(self)
        for name in ("_content", "_raw", "_compiled", "_broken", "_lazy", "_traits"):
            setattr(other, name, dict(getattr(self, name)))
        other._pinned = set(self._pinned)
        return other

    def meta(self) -> dict[str, Any] | None:
        """The ObjectMeta schema custom resources' metadata is checked against (built on first use)."""
        return self.object_meta() if callable(self.object_meta) else self.object_meta

    def add_loader(self, gvks: Iterable[GVK], loader: Callable[[GVK], tuple[dict[str, Any], str, str]],
                   content: str = "", traits: Mapping[GVK, tuple[str, str]] | None = None, pin: bool = False) -> None:
        """`content` names what the loader reads (a blob id and path): its compiled validators may be
        reused by later runs of this process (see _COMPILED). `traits` (see `traits`), when the caller
        knows them, spare loading a schema only to learn that it has no rules or what its scope is. `pin`
        (the bundled CRDs): the server's own kinds, which no CRD of a push replaces (see add_crd)."""
        for gvk in gvks:
            if pin:
                self._pinned.add(gvk)
            if gvk not in self._lazy and gvk not in self._raw:
                self._lazy[gvk] = loader
                if content:
                    self._content[gvk] = content
                if traits and gvk in traits:
                    self._traits[gvk] = traits[gvk]

    def __contains__(self, gvk: GVK) -> bool:
        return gvk in self._raw or gvk in self._lazy

    def kinds(self) -> set[GVK]:
        return set(self._raw) | set(self._lazy)

    def raw(self, gvk: GVK) -> tuple[dict[str, Any], str, str] | None:
        if gvk not in self._raw and gvk in self._lazy:
            self._raw[gvk] = self._lazy.pop(gvk)(gvk)
        return self._raw.get(gvk)

    def traits(self, gvk: GVK) -> tuple[str, str]:
        """(`validation_rules` of the kind's schema, its scope); ("", "") for a kind not known here."""
        if gvk not in self._traits:
            raw = self.raw(gvk)
            self._traits[gvk] = (validation_rules(raw[0]), raw[2]) if raw is not None else ("", "")
        return self._traits[gvk]

    def get(self, gvk: GVK) -> Schema | None:
        if gvk in self._compiled:
            return self._compiled[gvk]
        memo_key = (self._content[gvk], gvk, self.strict, self.meta_key) \
            if gvk in self._content and gvk not in self._raw and self.meta_key else None
        if memo_key is not None and memo_key in _COMPILED:
            self._compiled[gvk] = _COMPILED[memo_key]
            return self._compiled[gvk]
        raw = self.raw(gvk)
        if raw is None:
            return None
        schema, where, scope = raw
        if gvk in self._broken:
            raise UnusableSchema(self._broken[gvk])
        try:
            validator = compile_schema(crd_to_jsonschema(schema, self.strict, self.meta()))
        except ValueError as exc:  # jsonschema_rs.ValidationError is a ValueError
            first = (str(exc).strip().splitlines() or ["invalid schema"])[0]
            at = "/".join(str(p) for p in getattr(exc, "instance_path", ()) or ())
            self._broken[gvk] = (f"the openAPIV3Schema of {gvk[2]} {gvk[0]}/{gvk[1]} in {where} is not usable"
                                 f"{' at /' + at if at else ''}: {first}")
            raise UnusableSchema(self._broken[gvk]) from None
        compiled = Schema(gvk, where, validator, scope)
        self._compiled[gvk] = compiled
        if memo_key is not None:
            if len(_COMPILED) >= 256:  # a big CRD's validator can take megabytes
                _COMPILED.clear()
            _COMPILED[memo_key] = compiled
        return compiled


# Validators compiled from CRDs named by content (blob id and path, bundled file), kept for later runs of
# the same process: the resident gate server compiles a CRD's schema once, not on every push.
_COMPILED: dict[tuple[str, GVK, bool, str], Schema] = {}


def bundled_crd_dir() -> Path:
    from importlib.resources import files

    return Path(str(files("gitops_hooks.schemas_data").joinpath("crds")))


def load_bundled(into: CustomSchemas) -> None:
    """Register the bundled CRD schemas (schemas/crds/index.json) to be loaded when first asked for."""
    folder = bundled_crd_dir()
    index_path = folder / "index.json"
    if not index_path.is_file():
        return
    index = _json_load(index_path)
    by_gvk: dict[GVK, str] = {}
    for entry in index.get("kinds", []):
        by_gvk[(entry["group"], entry["version"], entry["kind"])] = entry["file"]

    def loader(gvk: GVK) -> tuple[dict[str, Any], str, str]:
        data = _json_load(folder / by_gvk[gvk])
        for v in data["versions"]:
            if v["name"] == gvk[1]:
                return v["openAPIV3Schema"], f"bundled CRD {data['name']} ({data['source']})", data["scope"]
        raise KeyError(gvk)

    for gvk, file in by_gvk.items():
        into.add_loader([gvk], loader, f"bundled:{file}", pin=True)
