"""Kubernetes resource quantities ("500m", "1Gi", "1e3") as exact fractions."""

from __future__ import annotations

import re
from fractions import Fraction

_FORM = re.compile(r"([+-]?)([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?\Z")
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_INT64 = 2**63


def parse(text: str) -> Fraction:
    """The value of a quantity; ValueError for text Kubernetes would refuse."""
    m = _FORM.match(text)
    if m is None:
        raise ValueError(
            f"quantity {text!r} must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        )
    sign, digits, suffix = m.groups()
    value = Fraction(digits if not digits.startswith(".") else "0" + digits)
    if suffix in _BINARY:
        value *= 1024 ** _BINARY[suffix]
    elif suffix in _DECIMAL:
        value *= Fraction(10) ** _DECIMAL[suffix]
    elif suffix:
        value *= Fraction(10) ** int(suffix[1:])
    return -value if sign == "-" else value


def fits_int64(n: int) -> bool:
    return -_INT64 <= n < _INT64
