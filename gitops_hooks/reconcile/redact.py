"""Keep Secret values out of every text we print, log or record."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any

MASK = "(redacted)"


class Redactor:
    def __init__(self) -> None:
        self.values: set[str] = set()

    def learn(self, objects: Iterable[dict[str, Any]]) -> None:
        for obj in objects:
            if obj.get("kind") != "Secret":
                continue
            for key in ("data", "stringData"):
                section = obj.get(key)
                if isinstance(section, dict):
                    for value in section.values():
                        self._add(str(value), decode=key == "data")

    def _add(self, value: str, decode: bool) -> None:
        if len(value) >= 4:
            self.values.add(value)
        if decode:
            try:
                plain = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return
            if len(plain) >= 4:
                self.values.add(plain)

    def __call__(self, text: str) -> str:
        for value in sorted(self.values, key=len, reverse=True):
            if value in text:
                text = text.replace(value, MASK)
        return text


def mask_secret(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """A copy of a Secret with every value replaced, for diffs: which keys changed is shown, not values."""
    if obj is None or obj.get("kind") != "Secret":
        return obj
    out = dict(obj)
    for key in ("data", "stringData"):
        if isinstance(obj.get(key), dict):
            out[key] = {k: f"(redacted, {len(str(v))} chars)" for k, v in obj[key].items()}
    return out
