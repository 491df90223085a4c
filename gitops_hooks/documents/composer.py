"""YAML read as kubectl reads it: go-yaml v2 decodes YAML 1.1 scalars (`yes`, `on`, `y` are booleans; `0755`
is octal) and PyYAML's C parser composes the nodes, resolved with our resolver (no constructor)."""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import ScalarNode, SequenceNode

try:
    from yaml._yaml import CParser as _CParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    raise ImportError("gitops-hooks needs PyYAML built with libyaml (yaml._yaml.CParser)") from None

Pointer = tuple[str | int, ...]

# YAML 1.1 booleans that go-yaml v2 (and so kubectl) reads as true/false.
YAML11_BOOLS = frozenset(
    "y Y yes Yes YES n N no No NO on On ON off Off OFF".split()
)

_TAG = "tag:yaml.org,2002:"


class _Resolver(yaml.resolver.Resolver):
    """PyYAML's YAML 1.1 resolver plus the single-letter booleans go-yaml v2 knows."""


# go-yaml v2 reads ints with Go's ParseInt (base prefixes 0b, 0o, 0x, a leading 0 for octal, `_` ignored)
# and floats only in this shape; YAML 1.1's sexagesimal numbers (`10:30`) stay strings, `1e5` is a float.
GO_INT = re.compile(r"^[-+]?(?:0b[01_]+|0o[0-7_]+|0x[0-9a-fA-F_]+|0[0-7_]*|[1-9][0-9_]*)$")
GO_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9_]+(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*(?:\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[eE][-+]?[0-9]+))"
    r"|[-+]?0[0-9_]*[89][0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_Resolver.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag not in (_TAG + "int", _TAG + "float")]
    for k, v in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
}
_Resolver.add_implicit_resolver(_TAG + "bool", re.compile(r"^(?:y|Y|n|N)$"), list("yYnN"))
_Resolver.add_implicit_resolver(_TAG + "int", GO_INT, list("-+0123456789"))
_Resolver.add_implicit_resolver(_TAG + "float", GO_FLOAT, list("-+0123456789."))


def go_int(text: str) -> int:
    t = text.replace("_", "")
    sign = -1 if t.startswith("-") else 1
    t = t.lstrip("+-")
    if t[:2] in ("0b", "0o", "0x"):
        return sign * int(t[2:], {"b": 2, "o": 8, "x": 16}[t[1]])
    if len(t) > 1 and t[0] == "0":
        return sign * int(t, 8)
    return sign * int(t)


def go_float(text: str) -> float:
    t = text.replace("_", "")
    low = t.lower()
    if low.endswith(".inf"):
        return float("-inf") if low.startswith("-") else float("inf")
    if low == ".nan":
        return float("nan")
    return float(t)


_STR, _MAP, _SEQ = _TAG + "str", _TAG + "map", _TAG + "seq"
_PLAIN_TAGS: dict[str, str] = {}  # plain scalar text -> resolved tag; the same words recur everywhere


class _Composer(_CParser, _Resolver):
    """C scanner and composer; resolution with our resolver; no constructor."""

    def __init__(self, stream: str | bytes) -> None:
        _CParser.__init__(self, stream)
        _Resolver.__init__(self)

    # No path resolvers are registered, so the composer's bookkeeping for them can be skipped.
    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        return None

    def ascend_resolver(self) -> None:
        return None

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is ScalarNode:
            if not implicit[0]:
                return _STR
            tag = _PLAIN_TAGS.get(value)
            if tag is None:
                tag = _Resolver.resolve(self, kind, value, implicit)
                if len(_PLAIN_TAGS) < 200_000 and len(value) < 200:
                    _PLAIN_TAGS[value] = tag
            return tag
        return _SEQ if kind is SequenceNode else _MAP
