"""YAML and JSON files to documents, read the way kubectl reads them.

kubectl decodes YAML with go-yaml v2 (YAML 1.1 scalars: `yes`, `on`, `y` are booleans) and refuses
duplicate keys. PyYAML's C parser gives us nodes with positions; a small constructor of our own turns
them into plain JSON-like values, refuses duplicate keys and unknown tags, and bounds alias expansion.

Positions are not kept for every value (that would cost memory on large trees): a Document knows its
file and index, and `locate()` composes that file again only when a finding needs a line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .findings import Finding, finding

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


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 20 * 1024 * 1024
    max_documents: int = 10_000
    max_nodes: int = 2_000_000  # values after alias expansion, per file
    max_key_bytes: int = 64 * 1024


DEFAULT_LIMITS = Limits()


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


@dataclass(frozen=True)
class Document:
    """One YAML document that is a mapping."""

    path: str
    index: int  # position of the document in its file, from 0
    line: int  # 1-based line of the document's first node
    column: int
    obj: dict[str, Any]
    source: SourceFile | None = field(default=None, compare=False, repr=False)
    # Where the object sits inside its YAML document: () for the document itself, ("items", 3) for the
    # fourth item of a List (see `expand_lists`); pointers given to `locate` are relative to it.
    prefix: Pointer = ()
    # Read from obj once (the checks ask for them many times per object; nothing changes obj):
    api_version: str = field(init=False, compare=False, repr=False)  # "" unless a string
    kind: str = field(init=False, compare=False, repr=False)
    metadata: dict[str, Any] = field(init=False, compare=False, repr=False)  # {} unless a map
    name: str = field(init=False, compare=False, repr=False)
    namespace: str = field(init=False, compare=False, repr=False)
    is_object: bool = field(init=False, compare=False, repr=False)  # it says apiVersion or kind

    def __post_init__(self) -> None:
        obj, put = self.obj, object.__setattr__
        v = obj.get("apiVersion")
        put(self, "api_version", v if isinstance(v, str) else "")
        v = obj.get("kind")
        put(self, "kind", v if isinstance(v, str) else "")
        m = obj.get("metadata")
        m = m if isinstance(m, dict) else {}
        put(self, "metadata", m)
        v = m.get("name")
        put(self, "name", v if isinstance(v, str) else "")
        v = m.get("namespace")
        put(self, "namespace", v if isinstance(v, str) else "")
        put(self, "is_object", "apiVersion" in obj or "kind" in obj or bool(self.prefix))

    @property
    def group(self) -> str:
        av = self.api_version
        return av.rsplit("/", 1)[0] if "/" in av else ""

    def subject(self) -> tuple[str, str, str, str]:
        return (self.api_version, self.kind, self.namespace, self.name)

    def describe(self) -> str:
        kind = self.kind.lower() or "object"
        group = self.group
        ident = f"{kind}.{group}" if group else kind
        return f"{ident}/{self.name}" if self.name else ident

    def locate(self, pointer: Pointer, key: bool = False) -> tuple[int, int]:
        """Line and column (1-based) of the deepest existing node on the pointer's path.

        With key=True, a pointer that ends at a map entry gives the position of its key."""
        if self.source is None:
            return self.line, self.column
        full = self.prefix + pointer
        if key and pointer:
            parent, exact = self.source._walk(self.index, full[:-1])
            if exact and isinstance(parent, MappingNode):
                for k, _ in parent.value:
                    if isinstance(k, ScalarNode) and k.value == str(pointer[-1]):
                        return k.start_mark.line + 1, k.start_mark.column + 1
        return self.source.locate(self.index, full, (self.line, self.column))

    def raw_scalar(self, pointer: Pointer) -> str | None:
        """The scalar as written in the source, if the pointer names a scalar."""
        if self.source is None:
            return None
        return self.source.raw_scalar(self.index, self.prefix + pointer)


class SourceFile:
    """The text of one file, composed again on demand to find positions."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text
        self._roots: list[Node | None] | None = None

    def _nodes(self) -> list[Node | None]:
        if self._roots is None:
            roots: list[Node | None] = []
            try:
                loader = _Composer(self.text)
                try:
                    while loader.check_node():
                        roots.append(loader.get_node())
                finally:
                    loader.dispose()
            except yaml.YAMLError:
                pass
            self._roots = roots
        return self._roots

    def _walk(self, index: int, pointer: Pointer) -> tuple[Node | None, bool]:
        roots = self._nodes()
        if index >= len(roots) or roots[index] is None:
            return None, False
        node = roots[index]
        assert node is not None
        for part in pointer:
            child = _child(node, part)
            if child is None:
                return node, False
            node = child
        return node, True

    def locate(self, index: int, pointer: Pointer, default: tuple[int, int]) -> tuple[int, int]:
        node, _ = self._walk(index, pointer)
        if node is None:
            return default
        return node.start_mark.line + 1, node.start_mark.column + 1

    def raw_scalar(self, index: int, pointer: Pointer) -> str | None:
        node, exact = self._walk(index, pointer)
        if exact and isinstance(node, ScalarNode) and not node.style:
            return str(node.value)
        return None


def _child(node: Node, part: str | int) -> Node | None:
    if isinstance(node, MappingNode):
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.value == str(part):
                return value
        # Merged keys: look through `<<` sources.
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.tag == _TAG + "merge":
                sources = value.value if isinstance(value, SequenceNode) else [value]
                for src in sources:
                    found = _child(src, part)
                    if found is not None:
                        return found
        return None
    if isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return node.value[part]
    return None


class YAMLProblem(Exception):
    def __init__(self, rule: str, node: Node | None, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.rule = rule
        self.node = node
        self.message = message
        self.hint = hint


class _Builder:
    """Nodes to plain values: dict, list, str, int, float, bool, None.

    Hot path of the whole gate: plain str/map/seq tags are tested first, and the memo that keeps
    aliased nodes shared is used only when the file has anchors."""

    def __init__(self, limits: Limits, aliases: bool) -> None:
        self.limits = limits
        self.memo: dict[int, Any] | None = {} if aliases else None

    def build(self, node: Node) -> Any:
        memo = self.memo
        if memo is not None:
            key = id(node)
            if key in memo:
                return memo[key]
        tag = node.tag
        cls = node.__class__
        if cls is ScalarNode:
            value = node.value if tag == _STR else self.scalar(node)  # type: ignore[arg-type]
            if memo is not None:
                memo[id(node)] = value
            return value
        if cls is MappingNode:
            if tag != _MAP:
                self._check_tag(node, ("map", "set", "omap"))
            out: dict[str, Any] = {}
            if memo is not None:
                memo[id(node)] = out
            self.mapping(node, out)  # type: ignore[arg-type]
            return out
        if cls is SequenceNode:
            if tag != _SEQ:
                self._check_tag(node, ("seq", "set", "omap", "pairs"))
            items: list[Any] = []
            if memo is not None:
                memo[id(node)] = items
            build = self.build
            items.extend([build(child) for child in node.value])
            return items
        raise YAMLProblem("yaml-syntax", node, f"unexpected node {cls.__name__}")  # pragma: no cover

    def _check_tag(self, node: Node, allowed: tuple[str, ...]) -> None:
        tag = node.tag or ""
        if tag.startswith(_TAG) and tag[len(_TAG):] in allowed:
            return
        if tag.startswith(_TAG + "python/") or not tag.startswith(_TAG):
            raise YAMLProblem(
                "yaml-tag",
                node,
                f"the YAML tag {_short_tag(tag)} is not understood by kubectl",
                "remove the tag: Kubernetes manifests hold plain maps, lists and scalars",
            )
        raise YAMLProblem("yaml-tag", node, f"the YAML tag {_short_tag(tag)} does not fit this node")

    def scalar(self, node: ScalarNode) -> Any:
        tag = node.tag or ""
        text: str = node.value
        if tag == _STR:
            return text
        if not tag.startswith(_TAG) or tag.startswith(_TAG + "python/"):
            raise YAMLProblem(
                "yaml-tag",
                node,
                f"the YAML tag {_short_tag(tag)} is not understood by kubectl",
                "remove the tag: Kubernetes manifests hold plain maps, lists and scalars",
            )
        kind = tag[len(_TAG):]
        if kind in ("timestamp", "binary", "value", "merge"):
            # go-yaml keeps timestamps and `=` as the strings they were written as.
            return text
        try:  # an explicit tag (`!!int x`) can meet any text: go-yaml refuses what it cannot decode
            if kind == "null" and text in ("", "~", "null", "Null", "NULL"):
                return None
            if kind == "bool" and (text in YAML11_BOOLS or text.lower() in ("true", "false")):
                return text.lower() in ("y", "yes", "true", "on")
            if kind == "int":
                return go_int(text)
            if kind == "float":
                return go_float(text)
        except ValueError:
            pass
        if kind in ("null", "bool", "int", "float"):
            raise YAMLProblem("yaml-tag", node, f"cannot read {text[:40]!r} as {_short_tag(tag)}",
                              "remove the tag or write a value of that type")
        raise YAMLProblem("yaml-tag", node, f"the YAML tag {_short_tag(tag)} is not understood by kubectl")

    def mapping(self, node: MappingNode, out: dict[str, Any]) -> None:
        merged: dict[str, Any] | None = None
        build = self.build
        max_key = self.limits.max_key_bytes
        for key_node, value_node in node.value:
            if key_node.__class__ is ScalarNode and key_node.tag == _STR:
                key = key_node.value
            elif key_node.tag == _TAG + "merge":
                merged = {} if merged is None else merged
                for src in _merge_sources(value_node):
                    for k, v in build(src).items():
                        merged.setdefault(k, v)
                continue
            elif key_node.__class__ is not ScalarNode:
                raise YAMLProblem("yaml-syntax", key_node, "a mapping key must be a plain scalar, not a map or list")
            else:
                key = _key_text(self.scalar(key_node))
            if key in out:
                self._duplicate(node, key_node, key)
            if len(key) > max_key:
                raise YAMLProblem(
                    "yaml-limits", key_node, f"a key of {len(key)} characters is over the limit of {max_key}"
                )
            out[key] = build(value_node)
        if merged:
            for k, v in merged.items():
                out.setdefault(k, v)

    def _duplicate(self, node: MappingNode, key_node: Node, key: str) -> None:
        first = next(k for k, _ in node.value if k.__class__ is ScalarNode and
                     (k.value if k.tag == _STR else _key_text(self.scalar(k))) == key)
        shown = repr(key) if key_node.value == key else f"{key_node.value!r} (read as {key!r})"
        raise YAMLProblem(
            "yaml-duplicate-key",
            key_node,
            f"duplicate key {shown} (first defined on line {first.start_mark.line + 1})",
            "kubectl's strict decoding refuses duplicate keys; keep one",
        )


def _merge_sources(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [node]
    if isinstance(node, SequenceNode) and all(isinstance(n, MappingNode) for n in node.value):
        return list(node.value)
    raise YAMLProblem("yaml-syntax", node, "a merge key (<<) must refer to a map or a list of maps")


def _key_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG):] if tag.startswith(_TAG) else tag


def _expanded_size(root: Node, limit: int) -> int:
    """Number of values the document has once aliases are expanded; stops past the limit.

    Raises YAMLProblem on a recursive alias (an anchor used inside itself)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise YAMLProblem("yaml-alias", node, "a YAML alias refers to the node that contains it (a loop)")
        if isinstance(node, ScalarNode):
            return 1
        active.add(key)
        total = 1
        children = node.value if isinstance(node, SequenceNode) else [c for kv in node.value for c in kv]
        for child in children:
            total += size(child)
            if total > limit:
                break
        active.discard(key)
        sizes[key] = total
        return total

    return size(root)


@dataclass
class ParsedFile:
    path: str
    documents: list[Document]
    findings: list[Finding]
    source: SourceFile | None = None


def is_list(obj: dict[str, Any]) -> bool:
    """A document kubectl applies item by item: `kind: List`, or any `...List` kind with `items`."""
    kind = obj.get("kind")
    return isinstance(kind, str) and kind.endswith("List") and ("items" in obj or kind == "List")


def expand_lists(parsed: ParsedFile) -> ParsedFile:
    """Each List document replaced by its items, each an object at its own line (nested Lists too); a
    List whose items are not a list of maps is a finding at the place that is not."""
    if not any(d.kind.endswith("List") for d in parsed.documents):
        return parsed
    out: list[Document] = []
    for doc in parsed.documents:
        _expand(doc, out, parsed.findings)
    parsed.documents[:] = out
    return parsed


def _expand(doc: Document, out: list[Document], findings: list[Finding]) -> None:
    if not is_list(doc.obj):
        out.append(doc)
        return
    items = doc.obj.get("items")
    if items is None:
        return  # an empty List
    if not isinstance(items, list):
        line, column = doc.locate(("items",))
        findings.append(finding("yaml-not-mapping", doc.path, line, column,
                                f"{doc.describe()}: items is {_what(items)}, not a list of objects", _LIST_HINT))
        return
    for i, item in enumerate(items):
        line, column = doc.locate(("items", i))
        if isinstance(item, dict):
            _expand(Document(doc.path, doc.index, line, column, item, doc.source, (*doc.prefix, "items", i)),
                    out, findings)
        else:
            findings.append(finding("yaml-not-mapping", doc.path, line, column,
                                    f"{doc.describe()}: item {i} is {_what(item)}, not an object", _LIST_HINT))


_LIST_HINT = "a List's items are objects, each with apiVersion, kind and metadata.name"


def _what(value: Any) -> str:
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, list):
        return "a list"
    return f"the scalar {str(value)[:40]!r}"


_TEMPLATE_RE = re.compile(r"\{\{-?\s*[.$a-zA-Z(]|\{%-?\s")


def decode(path: str, data: bytes) -> tuple[str | None, Finding | None]:
    """Bytes to text as kubectl would accept them: UTF-8, an optional BOM, no NUL bytes."""
    if b"\x00" in data:
        return None, finding(
            "file-binary", path, 1, 1, "binary content (NUL bytes) in a file named like a manifest",
            "manifests are text; move binary files out of the manifest paths or exclude them",
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, finding(
            "file-encoding", path, line, col, f"not valid UTF-8 (byte 0x{data[exc.start]:02x})",
            "save the file as UTF-8",
        )
    return text, None


def parse_json(path: str, text: str) -> ParsedFile:
    """JSON is YAML 1.2, but we read it as JSON so that its errors are JSON's."""
    import json

    def no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise ValueError(f"duplicate key {k!r}")
            out[k] = v
        return out

    try:
        obj = json.loads(text, object_pairs_hook=no_dupes)
    except json.JSONDecodeError as exc:
        return ParsedFile(path, [], [finding("yaml-syntax", path, exc.lineno, exc.colno, f"invalid JSON: {exc.msg}")])
    except ValueError as exc:
        return ParsedFile(path, [], [finding("yaml-duplicate-key", path, 1, 1, str(exc))])
    except RecursionError:
        return ParsedFile(path, [], [finding("yaml-limits", path, 1, 1, "JSON nested too deeply")])
    source = SourceFile(path, text)
    if isinstance(obj, dict):
        return expand_lists(ParsedFile(path, [Document(path, 0, 1, 1, obj, source)], [], source))
    if isinstance(obj, list) and all(isinstance(o, dict) for o in obj) and not text.lstrip().startswith("{"):
        # A JSON array is not a manifest kubectl would apply as a list of objects; treat like `kind: List`.
        return ParsedFile(path, [], [finding("yaml-not-mapping", path, 1, 1, "a JSON array is not a Kubernetes object")])
    return ParsedFile(path, [], [finding("yaml-not-mapping", path, 1, 1, "the document is not a map of fields")])


# ---------------------------------------------------------------------------- fast path
#
# yaml-rs (Rust) builds the same plain values ten times faster than composing nodes, but reads YAML 1.2.
# It is used only for text in which YAML 1.1 (as go-yaml v2 reads it) and YAML 1.2 cannot differ: no
# YAML 1.1 booleans, no leading-zero or underscored numbers, no merge keys, anchors, tags, directives,
# non-string keys or very long lines. Anything else, and every error, goes the careful way below, so
# findings and their positions come from one place. A test compares both ways on the real corpora.

_BOOL_WORDS = YAML11_BOOLS | {"<<"}
_INDICATOR_BEFORE = frozenset(" \t\n\r[{,-:")


def _token_starts(text: str, char: str, also_next: str = "") -> bool:
    """`char` at the start of a YAML token (a tag `!x`, an anchor `&x`), not inside a word, nor inside a
    quoted scalar that opens on the same line (CEL rules in CRDs are full of `'!has(...) || !x'`)."""
    i = text.find(char)
    while i >= 0:
        before = text[i - 1] if i else "\n"
        after = text[i + 1: i + 2]
        if before in _INDICATOR_BEFORE and after and not after.isspace() and after not in also_next:
            start = text.rfind("\n", 0, i) + 1
            if not _in_quotes(text, start, i):
                return True
        i = text.find(char, i + 1)
    return False


# What may stand before a quote on its line for the quote to open a scalar, beyond doubt: indentation,
# sequence dashes, and a plain or quoted key of simple characters with its `: `.
_QUOTE_OPENS_AFTER = re.compile(r"""[ \t]*(?:- +)*(?:(?:[A-Za-z0-9_.\-/]+|"[^"\\]*"|'[^']*') *: +)?""")


def _in_quotes(text: str, start: int, at: int) -> bool:
    """Is offset `at` inside a quoted scalar that opens on its line (which starts at `start`)?

    Errs towards "no" (the careful path then reads the file): a quote counts as opening a scalar only
    where nothing but indentation, dashes and a simple key stand before it on the line."""
    i = start
    while True:
        q = min((p for p in (text.find("'", i, at), text.find('"', i, at)) if p >= 0), default=-1)
        if q < 0 or not _QUOTE_OPENS_AFTER.fullmatch(text, start, q):
            return False
        end = _quote_end(text, q, at)
        if end < 0:
            return True  # still open at `at`
        i = end + 1


def _quote_end(text: str, opening: int, limit: int) -> int:
    """Offset of the quote closing the scalar opened at `opening`, or -1 if it is not closed before limit."""
    q = text[opening]
    i = opening + 1
    while i < limit:
        c = text[i]
        if q == "'" and c == "'":
            if text[i + 1: i + 2] == "'":
                i += 2  # '' is a quote inside a single-quoted scalar
                continue
            return i
        if q == '"':
            if c == "\\":
                i += 2
                continue
            if c == '"':
                return i
        i += 1
    return -1


_ZERO_LED = re.compile(r"0[0-9bB_]")
_BEFORE_ZERO_2 = frozenset({": ", ":\t", "- ", ", "})
_BEFORE_ZERO_1 = frozenset(",\n")


def _leading_zero_number(text: str) -> bool:
    """A plain number like 0755 or 0b101: go-yaml v2 reads octal and binary, YAML 1.2 does not.

    One pass for `0` followed by a digit, b or _, then a look at what stands before it: `: `, `:\t`,
    `- `, `, `, `,`, a line break, or a `[` or `{` where a flow collection can open (not in `^([01])`)."""
    for m in _ZERO_LED.finditer(text):
        j = m.start()
        if j == 0:
            continue
        before = text[j - 1]
        if before in _BEFORE_ZERO_1 or text[j - 2: j] in _BEFORE_ZERO_2 and j >= 2:
            return True
        if before in "[{" and (j == 1 or text[j - 2] in _INDICATOR_BEFORE):
            return True
    return False


_MAX_DEPTH = 500  # deeper documents go the careful way (libyaml refuses past 1000 levels)


def _same_in_yaml11(value: Any) -> bool:
    """No value that YAML 1.1 could have read differently (bool words, `<<`, non-string keys), and
    no nesting deeper than _MAX_DEPTH. Iterative: a hostile document cannot exhaust the stack."""
    bools = _BOOL_WORDS
    stack = [(value, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        if depth > _MAX_DEPTH:
            return False
        if type(item) is dict:
            for k in item:
                if type(k) is not str or k in bools:
                    return False
            children = item.values()
        else:
            children = item
        for v in children:
            t = type(v)
            if t is str:
                if v in bools:
                    return False
            elif t is dict or t is list:
                push((v, depth + 1))
    return True


_DOC_START = re.compile(r"^---[ \t]*(?:#[^\n]*)?$", re.M)
_DOC_START_AFTER_BREAK = re.compile(r"\n(---[ \t]*(?:#[^\n]*)?)(?=\n|$)")  # a literal first: searched fast


def _doc_marks(text: str) -> list[tuple[int, int]]:
    """(start, end) of each `---` line: what _DOC_START finds, found by a pattern that begins with a
    literal line break (a `^` in multiline mode makes the regex engine try every offset)."""
    out = [(m.start(1), m.end(1)) for m in _DOC_START_AFTER_BREAK.finditer(text)]
    first = _DOC_START.match(text)
    if first is not None:
        out.insert(0, (first.start(), first.end()))
    return out
_CONTENT_LINE = re.compile(r"^([ \t]*)[^\s#]", re.M)

_yaml_rs: Any
try:
    import yaml_rs as _yaml_rs
except ImportError:  # pragma: no cover - the careful path serves alone
    _yaml_rs = None


_OTHER_BREAKS = ("\u2028", "\u2029", "\x85")
_MERGE_KEY = re.compile(r"<<\s*:")  # `<<` as a key; elsewhere (templates like `(<<.GroupBy>>)`) it is text


def _fast(path: str, text: str, limits: Limits, source: SourceFile) -> ParsedFile | None:
    if _yaml_rs is None or "<<" in text and _MERGE_KEY.search(text) or text.startswith(("%", "\ufeff")) \
            or "\n%" in text or not text.endswith("\n"):
        return None  # (yaml-rs keeps a last line break that a file without one does not have)
    if _token_starts(text, "!", "=") or _token_starts(text, "&", "&") or _leading_zero_number(text):
        return None
    if any(c in text for c in _OTHER_BREAKS) or ("\r" in text and "\r" in text.replace("\r\n", "")):
        return None  # line breaks other than \n and \r\n: the careful path counts lines as YAML does
    if len(text) > 10_000 and max(map(len, text.split("\n"))) > limits.max_key_bytes:
        return None  # a key could be over the limit: the careful path measures it
    marks = _doc_marks(text)
    starts = [0] + [end for _, end in marks]
    bounds = [start for start, _ in marks] + [len(text)]
    result = ParsedFile(path, [], [], source)
    index = 0
    counted_lines, counted_to = 0, 0
    for n, (start, end) in enumerate(zip(starts, bounds, strict=True)):
        chunk = text[start:end]
        first = _CONTENT_LINE.search(chunk)
        if first is None:
            index += 1 if n else 0  # an empty document after `---` still counts
            continue
        if index >= limits.max_documents:
            return None
        try:
            obj = _yaml_rs.loads(chunk, parse_datetime=False)
        except Exception:  # noqa: BLE001 - every problem is reported by the careful path
            return None
        if obj is None:
            index += 1
            continue
        if not isinstance(obj, dict) or not _same_in_yaml11(obj):
            return None  # (nesting past libyaml's limit is reported by the careful path)
        at = start + first.start()
        counted_lines += text.count("\n", counted_to, at)  # counted on from the last document, not from 0
        counted_to = at
        line = counted_lines + 1
        result.documents.append(Document(path, index, line, len(first.group(1)) + 1, obj, source))
        index += 1
    return expand_lists(result)


def parse_yaml(path: str, text: str, limits: Limits = DEFAULT_LIMITS) -> ParsedFile:
    source = SourceFile(path, text)
    fast = _fast(path, text, limits, source)
    if fast is not None:
        return fast
    return parse_yaml_careful(path, text, limits, source)


def parse_yaml_careful(path: str, text: str, limits: Limits = DEFAULT_LIMITS, source: SourceFile | None = None) -> ParsedFile:
    """Compose nodes with PyYAML's C parser and build values ourselves: exact, with positions."""
    source = source or SourceFile(path, text)
    result = ParsedFile(path, [], [], source)
    has_anchors = "&" in text
    try:
        loader = _Composer(text)
    except yaml.YAMLError as exc:  # pragma: no cover - reader errors surface later
        result.findings.append(_syntax_finding(path, text, exc))
        return result
    index = 0
    try:
        while loader.check_node():
            node: Any = loader.get_node()
            if index >= limits.max_documents:
                result.findings.append(
                    finding("yaml-limits", path, node.start_mark.line + 1, 1,
                            f"more than {limits.max_documents} documents in one file")
                )
                break
            try:
                doc = _document(path, index, node, source, limits, has_anchors)
            except YAMLProblem as problem:
                mark = problem.node.start_mark if problem.node is not None else node.start_mark
                result.findings.append(
                    _template_finding(path, text, mark.line + 1, mark.column + 1)
                    or finding(problem.rule, path, mark.line + 1, mark.column + 1, problem.message, problem.hint)
                )
                doc = None
            if doc is not None:
                result.documents.append(doc)
            index += 1
    except yaml.YAMLError as exc:
        result.findings.append(_syntax_finding(path, text, exc))
    except RecursionError:
        result.findings.append(finding("yaml-limits", path, 1, 1, "the document is nested too deeply"))
    finally:
        loader.dispose()
    return expand_lists(result)


def _document(path: str, index: int, node: Node, source: SourceFile, limits: Limits, has_anchors: bool) -> Document | None:
    if isinstance(node, ScalarNode) and node.tag == _TAG + "null" and node.value in ("", "~", "null"):
        return None  # empty or comment-only document
    if not isinstance(node, MappingNode):
        what = "a list" if isinstance(node, SequenceNode) else f"the scalar {str(node.value)[:40]!r}"
        raise YAMLProblem(
            "yaml-not-mapping", node, f"document {index + 1} is {what}, not a map of fields",
            "every YAML document in a manifest must be one object (a map with apiVersion, kind and metadata)",
        )
    if has_anchors and _expanded_size(node, limits.max_nodes) > limits.max_nodes:
        raise YAMLProblem(
            "yaml-alias", node,
            f"aliases expand this document beyond {limits.max_nodes} values (an alias bomb?)",
            "write the values out or use fewer nested aliases",
        )
    obj = _Builder(limits, has_anchors).build(node)
    mark = node.start_mark
    return Document(path, index, mark.line + 1, mark.column + 1, obj, source)


def _template_finding(path: str, text: str, line: int, col: int) -> Finding | None:
    """A parse error on a line with template syntax is an unrendered template, not broken YAML."""
    lines = text.splitlines()
    nearby = lines[max(0, line - 2): line + 1]
    if not any(_TEMPLATE_RE.search(x) for x in nearby):
        return None
    return finding(
        "template-unrendered", path, line, col,
        "the file holds template syntax ({{ … }} or {% … %}), so it is not YAML yet",
        "commit the rendered manifests, or mark the folder as a Helm chart (Chart.yaml)",
    )


def _syntax_finding(path: str, text: str, exc: yaml.YAMLError) -> Finding:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else 1
    col = mark.column + 1 if mark is not None else 1
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    message = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    hint = ""
    template = _template_finding(path, text, line, col)
    if template is not None:
        return template
    lines = text.splitlines()
    if problem == "could not find expected ':'" and 0 < line <= len(lines) and len(lines[line - 1]) > 1024:
        hint = "a plain key may be at most 1024 characters long in YAML (kubectl refuses it too)"
    if 0 < line <= len(lines) and lines[line - 1][: len(lines[line - 1]) - len(lines[line - 1].lstrip())].count("\t"):
        hint = "YAML does not allow tabs for indentation"
    return finding("yaml-syntax", path, line, col, message, hint)


def parse(path: str, data: bytes, limits: Limits = DEFAULT_LIMITS) -> ParsedFile:
    """Read one file's bytes into documents and findings. Never raises for bad input."""
    if len(data) > limits.max_file_bytes:
        return ParsedFile(path, [], [
            finding("file-too-large", path, 1, 1,
                    f"{len(data)} bytes is over the limit of {limits.max_file_bytes} bytes for one manifest file")
        ])
    text, problem = decode(path, data)
    if text is None:
        assert problem is not None
        return ParsedFile(path, [], [problem])
    if path.endswith(".json"):
        return parse_json(path, text)
    return parse_yaml(path, text, limits)


def iter_objects(parsed: ParsedFile) -> Iterator[Document]:
    return (d for d in parsed.documents if d.is_object)
