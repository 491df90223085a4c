"""Positions: a file's text composed again on demand, to give a JSON pointer its line and column."""

from __future__ import annotations

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .composer import _TAG, _Composer

Pointer = tuple[str | int, ...]


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
