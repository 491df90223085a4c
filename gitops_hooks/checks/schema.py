"""Schema validation of each object against the schema of its kind for the target Kubernetes version."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..documents import YAML11_BOOLS, Document
from ..findings import Finding, Rule, Severity, finding, register
from ..schemas import UnusableSchema, split_api_version
from .base import CheckContext, document_check

MAX_ERRORS_PER_OBJECT = 10

register(
    Rule("schema-invalid", "schema", Severity.ERROR, "The object does not match the schema of its kind.",
         "Objects are validated against the OpenAPI schema of the target Kubernetes version (strict: "
         "unknown fields are errors, as with `kubectl apply --validate=strict`), or against the CRD that "
         "defines a custom kind.", "spec:\n  replicas: 3\n"),
    Rule("schema-unknown-builtin", "schema", Severity.ERROR,
         "A kind in a built-in Kubernetes API group that the target version does not serve.",
         "Usually a mistyped kind or apiVersion, or an API version removed in the target Kubernetes version.",
         "apiVersion: apps/v1\nkind: Deployment\n"),
    Rule("schema-unknown-kind", "schema", Severity.WARNING, "A custom kind with no schema to validate it against.",
         "Add the CRD to the repository, or ask the administrator to put its CRD in a folder listed in "
         "schema_dirs. Make this an error with `rules: {schema-unknown-kind: error}`.", ""),
)


@document_check
def validate_schema(doc: Document, ctx: CheckContext) -> Iterator[Finding]:
    api_version, kind = doc.api_version, doc.kind
    if not api_version or not kind or ctx.policy.config.get("engine") == "kubeconform":
        return  # reported by object-required; or delegated to the kubeconform engine (pipeline)
    group, version = split_api_version(api_version)
    gvk = (group, version, kind)
    try:
        schema = ctx.custom.get(gvk) if gvk in ctx.custom else None
    except UnusableSchema as exc:
        yield finding("schema-invalid", doc.path, doc.line, doc.column,
                      f"{doc.describe()}: not validated: {exc}",
                      "fix the CustomResourceDefinition (the API server would refuse it too)",
                      subject=doc.subject())
        return
    if schema is None:
        schema = ctx.kube.get(gvk)
    if schema is None:
        if not _reported_as_removed(doc, ctx):
            yield _unknown(doc, ctx, group)
        return
    validator = schema.validator
    body = _without_sops(doc.obj)
    if validator.is_valid(body):
        return
    for count, err in enumerate(validator.iter_errors(body)):
        if count == MAX_ERRORS_PER_OBJECT:
            yield finding("schema-invalid", doc.path, doc.line, doc.column,
                          f"{doc.describe()}: more schema errors not shown", subject=doc.subject())
            return
        yield _schema_finding(doc, err, schema.source)


def _without_sops(obj: dict[str, Any]) -> dict[str, Any]:
    """A SOPS-encrypted file keeps its `sops:` block in git; it is removed on decryption, before apply."""
    if isinstance(obj.get("sops"), dict):
        return {k: v for k, v in obj.items() if k != "sops"}
    return obj


def _reported_as_removed(doc: Document, ctx: CheckContext) -> bool:
    """A removed API version is reported once, by api-removed (which names the replacement)."""
    from .deprecations import removed

    if removed(doc.api_version, doc.kind, ctx.kube.version) is None:
        return False
    return ctx.policy.severity("api-removed", Severity.ERROR) is not Severity.OFF


def _unknown(doc: Document, ctx: CheckContext, group: str) -> Finding:
    version = ctx.kube.version
    if ctx.kube.is_builtin_group(group):
        served = sorted({f"{g}/{v}".lstrip("/") for g, v, k in ctx.kube.index if k == doc.kind})
        hint = f"Kubernetes {version} serves {doc.kind} as {', '.join(served)}" if served else \
            f"Kubernetes {version} has no kind {doc.kind} in this group"
        return finding("schema-unknown-builtin", doc.path, doc.line, doc.column,
                       f"{doc.kind} {doc.api_version} is not served by Kubernetes {version}", hint,
                       subject=doc.subject())
    return finding(
        "schema-unknown-kind", doc.path, doc.line, doc.column,
        f"no schema for {doc.kind} {doc.api_version}: not validated",
        "commit its CustomResourceDefinition, or ask the administrator to add it to schema_dirs",
        subject=doc.subject(),
    )


def _dotted(path: list[Any]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (("." if out else "") + str(p))
    return out or "(object)"


def _schema_finding(doc: Document, err: Any, source: str) -> Finding:
    path = list(err.instance_path)
    kind_name = type(err.kind).__name__
    message = err.message
    hint = ""
    locate_path = path
    if kind_name == "AdditionalProperties":
        unexpected = list(getattr(err.kind, "unexpected", []) or [])
        if unexpected:
            locate_path = path + [unexpected[0]]
            names = ", ".join(repr(u) for u in unexpected)
            message = f"unknown field{'s' if len(unexpected) > 1 else ''} {names}"
            hint = "strict validation refuses fields the schema does not define (check spelling and indentation)"
    elif kind_name == "Required":
        message = f"missing required field {getattr(err.kind, 'property', '')!r}".replace("'\"", "'").replace("\"'", "'")
    elif kind_name == "Type":
        raw = doc.raw_scalar(tuple(path))
        types = [t for t in _types(err.kind) if t != "null"]
        value = err.instance
        message = f"{_show(value)} is not of type {' or '.join(types) or 'null'}"
        if raw is not None and raw in YAML11_BOOLS and "string" in types:
            hint = (f"YAML reads the unquoted {raw} as a boolean (kubectl does too); "
                    f"quote it: \"{raw}\"")
        elif isinstance(value, str) and ("integer" in types or "number" in types) and value.strip().isdigit():
            hint = "remove the quotes to write a number"
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and "string" in types:
            hint = "quote the value to write a string"
    elif kind_name == "OneOfNotValid" and _is_int_or_string(err):
        message = f"{_show(err.instance)} must be an integer or a string"
    line, col = doc.locate(tuple(locate_path), key=locate_path is not path)
    where = _dotted(locate_path)
    return finding(
        "schema-invalid", doc.path, line, col, f"{doc.describe()}: {where}: {message}", hint, subject=doc.subject()
    )


def _types(kind: Any) -> list[str]:
    types = getattr(kind, "types", None)
    if types is None:
        return []
    return [str(t) for t in types]


def _is_int_or_string(err: Any) -> bool:
    return "oneOf" in err.message


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value[:60])
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, list):
        return "a list"
    return str(value)
