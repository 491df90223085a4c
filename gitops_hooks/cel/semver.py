"""Semantic versions as the Kubernetes semver CEL library reads them (semver 2.0; `normalize` accepts a
leading v, missing minor or patch, and leading zeros)."""

from __future__ import annotations

import re

_STRICT = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?\Z"
)
_LOOSE = re.compile(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?\Z")

Version = tuple[int, int, int, str]  # major, minor, patch, pre-release ("" for none); build metadata dropped


def parse(text: str, normalize: bool = False) -> Version:
    if normalize:
        m = _LOOSE.match(text)
        if m is not None:
            text = f"{int(m.group(1))}.{int(m.group(2) or 0)}.{int(m.group(3) or 0)}{m.group(4) or ''}{m.group(5) or ''}"
    m = _STRICT.match(text)
    if m is None:
        raise ValueError(f"could not parse {text!r} as semver")
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4) or ""


def text(v: Version) -> str:
    return f"{v[0]}.{v[1]}.{v[2]}" + (f"-{v[3]}" if v[3] else "")


def compare(a: Version, b: Version) -> int:
    if a[:3] != b[:3]:
        return -1 if a[:3] < b[:3] else 1
    return _compare_pre(a[3], b[3])


def _compare_pre(a: str, b: str) -> int:
    if a == b:
        return 0
    if not a or not b:
        return 1 if not a else -1  # a version without pre-release ranks higher
    for x, y in zip(a.split("."), b.split("."), strict=False):
        if x == y:
            continue
        if x.isdigit() and y.isdigit():
            return -1 if int(x) < int(y) else 1
        if x.isdigit() != y.isdigit():
            return -1 if x.isdigit() else 1
        return -1 if x < y else 1
    return -1 if len(a.split(".")) < len(b.split(".")) else 1
