"""Variable substitution with the semantics of Flux's post-build substitution.

`${NAME}` is replaced by the variable's value; `${NAME:=default}` and `${NAME:-default}` use the default
when the variable is unset or empty, `${NAME=default}` and `${NAME-default}` only when unset. `$${NAME}`
escapes: it gives `${NAME}` literally. `$NAME` without braces is left alone, as Flux documents. A
variable that is neither set nor defaulted is an error (Flux's strict mode). An object annotated
`kustomize.toolkit.fluxcd.io/substitute: disabled` is not substituted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

DISABLE_ANNOTATION = "kustomize.toolkit.fluxcd.io/substitute"
NAME = r"[_a-zA-Z][_a-zA-Z0-9]*"
EXPR = re.compile(r"\$\$\{|\$\{(" + NAME + r")(?:(:=|:-|=|-)([^}]*))?\}|\$\{([^}]*)\}?")


@dataclass(frozen=True)
class Unresolved:
    name: str
    expression: str
    why: str


def substitute_text(text: str, variables: Mapping[str, str]) -> tuple[str, list[Unresolved]]:
    problems: list[Unresolved] = []

    def one(m: re.Match[str]) -> str:
        whole = m.group(0)
        if whole == "$${":
            return "${"
        name, op, default, bad = m.group(1), m.group(2), m.group(3), m.group(4)
        if name is None:
            problems.append(Unresolved(bad or "", whole, "is not a variable expression gitops-hooks understands "
                                       "(use ${NAME} or ${NAME:=default})"))
            return whole
        value = variables.get(name)
        if op in (":=", ":-") and not value:
            return str(default)
        if op in ("=", "-") and value is None:
            return str(default)
        if value is None:
            problems.append(Unresolved(name, whole, "is not set for this environment"))
            return whole
        return value

    return EXPR.sub(one, text), problems


_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _mentions(value: Any) -> bool:
    """Whether any key or string in the object holds `${` (most objects do not: no YAML round trip for them)."""
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, dict):
        return any(_mentions(k) or _mentions(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_mentions(v) for v in value)
    return False


def is_disabled(obj: Mapping[str, Any]) -> bool:
    meta = obj.get("metadata")
    ann = meta.get("annotations") if isinstance(meta, dict) else None
    return isinstance(ann, dict) and str(ann.get(DISABLE_ANNOTATION, "")).lower() == "disabled"


def substitute_object(obj: dict[str, Any], variables: Mapping[str, str]) -> tuple[dict[str, Any], list[Unresolved]]:
    """The object with its variables replaced, as Flux does: on the YAML text, parsed again."""
    if is_disabled(obj) or not _mentions(obj):
        return obj, []
    text = yaml.dump(obj, Dumper=_DUMPER, sort_keys=False, allow_unicode=True, width=1 << 30)
    out, problems = substitute_text(text, variables)
    if problems:
        return obj, problems
    try:
        new = yaml.load(out, Loader=_LOADER)
    except yaml.YAMLError as exc:
        return obj, [Unresolved("", "", f"substitution made invalid YAML: {str(exc).splitlines()[0]}")]
    if not isinstance(new, dict):
        return obj, [Unresolved("", "", "substitution did not leave an object")]
    return new, []
