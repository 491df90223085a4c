"""The careful reader: nodes composed by PyYAML's C parser, built into plain values by our constructor,
which refuses duplicate keys and unknown tags and bounds alias expansion. Exact, with positions: every
error is reported from here."""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..findings import Finding, finding
from .composer import _MAP, _SEQ, _STR, _TAG, YAML11_BOOLS, _Composer, go_float, go_int
from .lists import expand_lists
from .model import DEFAULT_LIMITS, Document, Limits, ParsedFile
from .positions import SourceFile


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


_TEMPLATE_RE = re.compile(r"\{\{-?\s*[.$a-zA-Z(]|\{%-?\s")


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
