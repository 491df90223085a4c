"""The Kubernetes CEL libraries, on top of the engine's standard, strings and optional libraries.

Implemented from the Kubernetes documentation ("CEL in Kubernetes": libraries lists, sets, regex,
quantity, URLs, IP and CIDR, semver, format). Values of the Kubernetes types (Quantity, Semver, URL, IP, CIDR) are maps with one
marker key holding a canonical form, so that `==` compares them as Kubernetes does (quantity('1Gi') ==
quantity('1024Mi')). What is not here (authorizer, `string()` of an IP or CIDR,
list `indexOf`/`lastIndexOf`, whose names the strings library owns in this engine) is reported by the
engine as not evaluated, naming the function.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from fractions import Fraction
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from . import formats
from . import quantity as q
from . import semver as sv

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


# ---------------------------------------------------------------------------- lists, sets, regex

def _is_sorted(items: list[Any]) -> bool:
    return all(a <= b for a, b in zip(items, items[1:], strict=False))


def _sum(items: list[Any]) -> Any:
    total: Any = 0
    for x in items:
        total = total + x
    return total


def _least(items: list[Any]) -> Any:
    if not items:
        raise ValueError("min called on an empty list")
    return min(items)


def _greatest(items: list[Any]) -> Any:
    if not items:
        raise ValueError("max called on an empty list")
    return max(items)


def _sets_contains(a: list[Any], b: list[Any]) -> bool:
    return all(x in a for x in b)


def _sets_equivalent(a: list[Any], b: list[Any]) -> bool:
    return _sets_contains(a, b) and _sets_contains(b, a)


def _sets_intersects(a: list[Any], b: list[Any]) -> bool:
    return any(x in a for x in b)


@functools.lru_cache(maxsize=512)
def _regex(pattern: str) -> Any:
    import re2

    try:
        return re2.compile(pattern)
    except Exception as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None


def _find(s: str, pattern: str) -> str:
    m = _regex(pattern).search(s)
    return m.group(0) if m else ""


def _find_all(s: str, pattern: str, limit: int = -1) -> list[str]:
    out: list[str] = []
    if limit == 0:
        return out
    for m in _regex(pattern).finditer(s):
        out.append(m.group(0))
        if 0 < limit <= len(out):
            break
    return out


# ---------------------------------------------------------------------------- quantity

def _qv(m: dict[str, Any]) -> Fraction:
    if not isinstance(m, dict) or "@quantity" not in m:
        raise TypeError("not a Quantity")
    return Fraction(m["@quantity"])


def _qm(value: Fraction) -> dict[str, Any]:
    return {"@quantity": str(value)}


def _quantity(s: str) -> dict[str, Any]:
    return _qm(q.parse(s))


def _is_quantity(s: str) -> bool:
    try:
        q.parse(s)
    except ValueError:
        return False
    return True


def _q_other(x: Any) -> Fraction:
    return Fraction(x) if isinstance(x, int) else _qv(x)


def _compare(a: Fraction, b: Fraction) -> int:
    return (a > b) - (a < b)


def _as_integer(m: dict[str, Any]) -> int:
    v = _qv(m)
    if v.denominator != 1 or not q.fits_int64(v.numerator):
        raise ValueError("cannot convert value to integer")
    return v.numerator


def _is_integer(m: dict[str, Any]) -> bool:
    v = _qv(m)
    return v.denominator == 1 and q.fits_int64(v.numerator)


# ---------------------------------------------------------------------------- semver

def _semver(s: str, normalize: bool = False) -> dict[str, Any]:
    return {"@semver": sv.text(sv.parse(s, normalize))}


def _is_semver(s: str, normalize: bool = False) -> bool:
    try:
        sv.parse(s, normalize)
    except ValueError:
        return False
    return True


def _sv(m: Any) -> sv.Version:
    if not isinstance(m, dict) or "@semver" not in m:
        raise TypeError("not a Semver")
    return sv.parse(m["@semver"])


def _order(a: dict[str, Any], b: Any) -> int:
    """compareTo for the two ordered Kubernetes types that share the method names: Quantity and Semver."""
    if isinstance(a, dict) and "@semver" in a:
        return sv.compare(_sv(a), _sv(b))
    return _compare(_qv(a), _q_other(b))


# ---------------------------------------------------------------------------- URL

def _parse_url(s: str) -> Any:
    if not s or any(c.isspace() or ord(c) < 0x20 for c in s):
        raise ValueError(f"URL {s!r} is not a valid absolute URI or absolute path")
    parts = urlsplit(s)
    if not parts.scheme and not s.startswith("/"):
        raise ValueError(f"URL {s!r} is not a valid absolute URI or absolute path")
    try:
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        raise ValueError(f"URL {s!r}: {exc}") from None
    return parts


def _url(s: str) -> dict[str, Any]:
    _parse_url(s)
    return {"@url": s}


def _is_url(s: str) -> bool:
    try:
        _parse_url(s)
    except ValueError:
        return False
    return True


def _u(m: dict[str, Any]) -> Any:
    if not isinstance(m, dict) or "@url" not in m:
        raise TypeError("not a URL")
    return _parse_url(m["@url"])


def _host(m: dict[str, Any]) -> str:
    return str(_u(m).netloc.rpartition("@")[2])


def _hostname(m: dict[str, Any]) -> str:
    host = _host(m)
    if host.startswith("["):
        return host[1:host.index("]")]
    return host.rsplit(":", 1)[0] if ":" in host else host


def _port(m: dict[str, Any]) -> str:
    host = _host(m)
    tail = host.rsplit("]", 1)[-1] if host.startswith("[") else host
    return tail.rsplit(":", 1)[1] if ":" in tail else ""


def _escaped_path(m: dict[str, Any]) -> str:
    return quote(unquote(_u(m).path), safe="/:@!$&'()*+,;=-._~")


def _query(m: dict[str, Any]) -> dict[str, list[str]]:
    return {k: list(v) for k, v in parse_qs(_u(m).query, keep_blank_values=True).items()}


# ---------------------------------------------------------------------------- IP and CIDR

def _parse_ip(s: str) -> IPAddr:
    if "%" in s:
        raise ValueError(f"IP address {s!r} with zone value is not allowed")
    try:
        addr = ipaddress.ip_address(s)
    except ValueError:
        raise ValueError(f"IP Address {s!r} parse error during conversion from string") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        raise ValueError(f"IPv4-mapped IPv6 address {s!r} is not allowed")
    return addr


def _ip(s: str) -> dict[str, Any]:
    return {"@ip": str(_parse_ip(s))}


def _is_ip(s: str) -> bool:
    try:
        _parse_ip(s)
    except ValueError:
        return False
    return True


def _ipv(m: Any) -> IPAddr:
    if isinstance(m, str):
        return _parse_ip(m)
    if not isinstance(m, dict) or "@ip" not in m:
        raise TypeError("not an IP")
    return ipaddress.ip_address(m["@ip"])


def _is_canonical(s: str) -> bool:
    return str(_parse_ip(s)) == s


def _link_local_multicast(a: IPAddr) -> bool:
    if a.version == 4:
        return a in ipaddress.ip_network("224.0.0.0/24")
    return a.packed[0] == 0xFF and a.packed[1] & 0x0F == 0x02


def _global_unicast(a: IPAddr) -> bool:
    if a.version == 4 and a == ipaddress.IPv4Address("255.255.255.255"):
        return False
    return not (a.is_unspecified or a.is_loopback or a.is_multicast or a.is_link_local)


def _parse_cidr(s: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    if "%" in s or "/" not in s:
        raise ValueError(f"network address {s!r} parse error during conversion from string")
    addr, _, bits = s.partition("/")
    _parse_ip(addr)
    if not bits.isdigit() or (len(bits) > 1 and bits.startswith("0")):
        raise ValueError(f"network address {s!r} parse error during conversion from string")
    try:
        return ipaddress.ip_interface(s)
    except ValueError:
        raise ValueError(f"network address {s!r} parse error during conversion from string") from None


def _cidr(s: str) -> dict[str, Any]:
    iface = _parse_cidr(s)
    return {"@cidr": f"{iface.ip}/{iface.network.prefixlen}"}


def _is_cidr(s: str) -> bool:
    try:
        _parse_cidr(s)
    except ValueError:
        return False
    return True


def _cv(m: Any) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    if isinstance(m, str):
        return _parse_cidr(m)
    if not isinstance(m, dict) or "@cidr" not in m:
        raise TypeError("not a CIDR")
    return ipaddress.ip_interface(m["@cidr"])


def _contains_ip(c: dict[str, Any], other: Any) -> bool:
    net = _cv(c).network
    addr = _ipv(other)
    return addr.version == net.version and addr in net


def _contains_cidr(c: dict[str, Any], other: Any) -> bool:
    net = _cv(c).network
    sub = _cv(other).network
    return sub.version == net.version and sub.prefixlen >= net.prefixlen and sub.network_address in net


def _format(name: str) -> dict[str, Any]:
    return {"@format": name}


# ---------------------------------------------------------------------------- declarations

def declarations() -> list[Any]:
    from cel_expr_python import cel

    t = cel.Type
    dyn, string, boolean, integer = t.DYN, t.STRING, t.BOOL, t.INT
    lst, obj = t.List(dyn), t.Map(t.STRING, dyn)
    strs = t.List(t.STRING)

    def fn(name: str, *overloads: tuple[str, Any, list[Any], bool, Callable[..., Any]]) -> Any:
        return cel.FunctionDecl(name, [cel.Overload(oid, ret, params, is_member=member, impl=impl)
                                       for oid, ret, params, member, impl in overloads])

    return [
        fn("isSorted", ("k8s_list_isSorted", boolean, [lst], True, _is_sorted)),
        fn("sum", ("k8s_list_sum", dyn, [lst], True, _sum)),
        fn("min", ("k8s_list_min", dyn, [lst], True, _least)),
        fn("max", ("k8s_list_max", dyn, [lst], True, _greatest)),
        fn("sets.contains", ("k8s_sets_contains", boolean, [lst, lst], False, _sets_contains)),
        fn("sets.equivalent", ("k8s_sets_equivalent", boolean, [lst, lst], False, _sets_equivalent)),
        fn("sets.intersects", ("k8s_sets_intersects", boolean, [lst, lst], False, _sets_intersects)),
        fn("find", ("k8s_string_find", string, [string, string], True, _find)),
        fn("findAll", ("k8s_string_findAll", strs, [string, string], True, _find_all),
           ("k8s_string_findAll_limit", strs, [string, string, integer], True, _find_all)),
        fn("quantity", ("k8s_quantity", obj, [string], False, _quantity)),
        fn("isQuantity", ("k8s_isQuantity", boolean, [string], False, _is_quantity)),
        fn("isInteger", ("k8s_quantity_isInteger", boolean, [obj], True, _is_integer)),
        fn("asInteger", ("k8s_quantity_asInteger", integer, [obj], True, _as_integer)),
        fn("asApproximateFloat", ("k8s_quantity_asApproximateFloat", t.DOUBLE, [obj], True,
                                  lambda m: float(_qv(m)))),
        fn("sign", ("k8s_quantity_sign", integer, [obj], True, lambda m: _compare(_qv(m), Fraction(0)))),
        fn("add", ("k8s_quantity_add", obj, [obj, obj], True, lambda a, b: _qm(_qv(a) + _qv(b))),
           ("k8s_quantity_add_int", obj, [obj, integer], True, lambda a, b: _qm(_qv(a) + b))),
        fn("sub", ("k8s_quantity_sub", obj, [obj, obj], True, lambda a, b: _qm(_qv(a) - _qv(b))),
           ("k8s_quantity_sub_int", obj, [obj, integer], True, lambda a, b: _qm(_qv(a) - b))),
        fn("isLessThan", ("k8s_ordered_isLessThan", boolean, [obj, obj], True, lambda a, b: _order(a, b) < 0)),
        fn("isGreaterThan", ("k8s_ordered_isGreaterThan", boolean, [obj, obj], True, lambda a, b: _order(a, b) > 0)),
        fn("compareTo", ("k8s_ordered_compareTo", integer, [obj, obj], True, _order)),
        fn("semver", ("k8s_semver", obj, [string], False, _semver),
           ("k8s_semver_normalize", obj, [string, boolean], False, _semver)),
        fn("isSemver", ("k8s_isSemver", boolean, [string], False, _is_semver),
           ("k8s_isSemver_normalize", boolean, [string, boolean], False, _is_semver)),
        fn("major", ("k8s_semver_major", integer, [obj], True, lambda m: _sv(m)[0])),
        fn("minor", ("k8s_semver_minor", integer, [obj], True, lambda m: _sv(m)[1])),
        fn("patch", ("k8s_semver_patch", integer, [obj], True, lambda m: _sv(m)[2])),
        *(fn(f"format.{name}", (f"k8s_format_{name}", obj, [], False, functools.partial(_format, name)))
          for name in formats.FORMATS),
        fn("format.named", ("k8s_format_named", obj, [string], False, formats.named)),
        fn("validate", ("k8s_format_validate", obj, [obj, string], True, formats.validate)),
        fn("url", ("k8s_url", obj, [string], False, _url)),
        fn("isURL", ("k8s_isURL", boolean, [string], False, _is_url)),
        fn("getScheme", ("k8s_url_getScheme", string, [obj], True, lambda m: _u(m).scheme)),
        fn("getHost", ("k8s_url_getHost", string, [obj], True, _host)),
        fn("getHostname", ("k8s_url_getHostname", string, [obj], True, _hostname)),
        fn("getPort", ("k8s_url_getPort", string, [obj], True, _port)),
        fn("getEscapedPath", ("k8s_url_getEscapedPath", string, [obj], True, _escaped_path)),
        fn("getQuery", ("k8s_url_getQuery", t.Map(t.STRING, strs), [obj], True, _query)),
        fn("ip", ("k8s_ip", obj, [string], False, _ip),
           ("k8s_cidr_ip", obj, [obj], True, lambda c: {"@ip": str(_cv(c).ip)})),
        fn("isIP", ("k8s_isIP", boolean, [string], False, _is_ip)),
        fn("ip.isCanonical", ("k8s_ip_isCanonical", boolean, [string], False, _is_canonical)),
        fn("family", ("k8s_ip_family", integer, [obj], True, lambda m: _ipv(m).version)),
        fn("isUnspecified", ("k8s_ip_isUnspecified", boolean, [obj], True, lambda m: _ipv(m).is_unspecified)),
        fn("isLoopback", ("k8s_ip_isLoopback", boolean, [obj], True, lambda m: _ipv(m).is_loopback)),
        fn("isLinkLocalMulticast", ("k8s_ip_isLinkLocalMulticast", boolean, [obj], True,
                                    lambda m: _link_local_multicast(_ipv(m)))),
        fn("isLinkLocalUnicast", ("k8s_ip_isLinkLocalUnicast", boolean, [obj], True,
                                  lambda m: _ipv(m).is_link_local)),
        fn("isGlobalUnicast", ("k8s_ip_isGlobalUnicast", boolean, [obj], True, lambda m: _global_unicast(_ipv(m)))),
        fn("cidr", ("k8s_cidr", obj, [string], False, _cidr)),
        fn("isCIDR", ("k8s_isCIDR", boolean, [string], False, _is_cidr)),
        fn("containsIP", ("k8s_cidr_containsIP_ip", boolean, [obj, obj], True, _contains_ip),
           ("k8s_cidr_containsIP_string", boolean, [obj, string], True, _contains_ip)),
        fn("containsCIDR", ("k8s_cidr_containsCIDR_cidr", boolean, [obj, obj], True, _contains_cidr),
           ("k8s_cidr_containsCIDR_string", boolean, [obj, string], True, _contains_cidr)),
        fn("masked", ("k8s_cidr_masked", obj, [obj], True, lambda c: {"@cidr": str(_cv(c).network)})),
        fn("prefixLength", ("k8s_cidr_prefixLength", integer, [obj], True, lambda c: _cv(c).network.prefixlen)),
    ]
