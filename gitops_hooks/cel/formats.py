"""The Kubernetes format library: `format.<name>()` and `format.named(name)` give a format whose
`validate(value)` is an optional list of errors (empty when the value is valid).

The engine's Python functions cannot return CEL optionals, so the engine rewrites `.validate(...)` and
`format.named(...)` to `.validate(...).?v` and `format.named(...).?v`: the functions return `{"v": x}` for
a value and `{}` for none, and `.?v` turns that into the optional Kubernetes gives. The checks and
messages are those of Kubernetes' apimachinery validation.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit

_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = rf"{_LABEL}(\.{_LABEL})*"
_DNS1035 = "[a-z]([-a-z0-9]*[a-z0-9])?"
_QNAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z", re.IGNORECASE)


def _regex_error(what: str, pattern: str, example: str) -> str:
    return f"{what} (e.g. {example}, regex used for validation is '{pattern}')"


def _name_check(value: str, limit: int, pattern: str, rule: str, example: str) -> list[str]:
    errs = []
    if len(value) > limit:
        errs.append(f"must be no more than {limit} characters")
    if not re.fullmatch(pattern, value):
        errs.append(_regex_error(rule, pattern, example))
    return errs


def dns1123_label(value: str) -> list[str]:
    return _name_check(value, 63, _LABEL, "a lowercase RFC 1123 label must consist of lower case alphanumeric "
                       "characters or '-', and must start and end with an alphanumeric character",
                       "'my-name',  or '123-abc'")


def dns1123_subdomain(value: str) -> list[str]:
    return _name_check(value, 253, _SUBDOMAIN, "a lowercase RFC 1123 subdomain must consist of lower case "
                       "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                       "'example.com'")


def dns1035_label(value: str) -> list[str]:
    return _name_check(value, 63, _DNS1035, "a DNS-1035 label must consist of lower case alphanumeric characters "
                       "or '-', start with an alphabetic character, and end with an alphanumeric character",
                       "'my-name',  or 'abc-123'")


def _prefix(check: Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    """The *Prefix formats (for generateName): a trailing '-' is allowed."""
    def validate(value: str) -> list[str]:
        return check(value[:-1] if value.endswith("-") else value)
    return validate


def qualified_name(value: str) -> list[str]:
    errs = []
    parts = value.split("/")
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + e for e in dns1123_subdomain(prefix))
    elif len(parts) > 2:
        return [_regex_error("a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must "
                             "start and end with an alphanumeric character", _QNAME,
                             "'MyName',  or 'my.name',  or '123-abc'") +
                " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    if name and not re.fullmatch(_QNAME, name):
        errs.append("name part " + _regex_error(
            "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
            "character", _QNAME, "'MyName',  or 'my.name',  or '123-abc'"))
    return errs


def label_value(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not re.fullmatch(_LABEL_VALUE, value):
        errs.append(_regex_error("a valid label must be an empty string or consist of alphanumeric characters, '-', "
                                 "'_' or '.', and must start and end with an alphanumeric character", _LABEL_VALUE,
                                 "'MyValue',  or 'my_value',  or '12345'"))
    return errs


def uri(value: str) -> list[str]:
    parts = urlsplit(value)
    if not value or (not parts.scheme and not value.startswith("/")) or any(c.isspace() for c in value):
        return ["invalid URI"]
    return []


def uuid(value: str) -> list[str]:
    return [] if _UUID.match(value) else ["does not match the UUID format"]


def byte(value: str) -> list[str]:
    try:
        base64.b64decode(value, validate=True)
    except ValueError:
        return ["invalid base64 value"]
    return []


def date_(value: str) -> list[str]:
    try:
        date.fromisoformat(value) if len(value) == 10 else _bad()
    except ValueError:
        return ["invalid date"]
    return []


def datetime_(value: str) -> list[str]:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", value):
        return ["invalid datetime"]
    try:
        datetime.fromisoformat(value.replace("z", "Z").replace("t", "T").replace("Z", "+00:00"))
    except ValueError:
        return ["invalid datetime"]
    return []


def _bad() -> None:
    raise ValueError("bad")


FORMATS: dict[str, Callable[[str], list[str]]] = {
    "dns1123Label": dns1123_label,
    "dns1123Subdomain": dns1123_subdomain,
    "dns1035Label": dns1035_label,
    "qualifiedName": qualified_name,
    "dns1123LabelPrefix": _prefix(dns1123_label),
    "dns1123SubdomainPrefix": _prefix(dns1123_subdomain),
    "dns1035LabelPrefix": _prefix(dns1035_label),
    "labelValue": label_value,
    "uri": uri,
    "uuid": uuid,
    "byte": byte,
    "date": date_,
    "datetime": datetime_,
}


def named(name: str) -> dict[str, Any]:
    return {"v": {"@format": name}} if name in FORMATS else {}


def validate(fmt: dict[str, Any], value: str) -> dict[str, Any]:
    if not isinstance(fmt, dict) or fmt.get("@format") not in FORMATS:
        raise TypeError("not a Format")
    errors = FORMATS[fmt["@format"]](value)
    return {"v": errors} if errors else {}


_CALLS = re.compile(r"\.validate\(|(?<![\w.])format\.named\(")


def rewrite(code: str) -> str:
    """`.validate(...)` and `format.named(...)` followed by `.?v`; `code` has no string literals (placeholders)."""
    ends = []
    for m in _CALLS.finditer(code):
        depth, i = 1, m.end()
        while i < len(code) and depth:
            depth += {"(": 1, ")": -1}.get(code[i], 0)
            i += 1
        if depth == 0:
            ends.append(i)
    for end in sorted(ends, reverse=True):
        code = code[:end] + ".?v" + code[end:]
    return code
