"""What the readers give: Document (one object with its file, line and column), ParsedFile, Limits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from yaml.nodes import MappingNode, ScalarNode

from ..findings import Finding
from .positions import Pointer, SourceFile


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 20 * 1024 * 1024
    max_documents: int = 10_000
    max_nodes: int = 2_000_000  # values after alias expansion, per file
    max_key_bytes: int = 64 * 1024

    @classmethod
    def of(cls, limits: Mapping[str, Any]) -> Limits:
        """From the configuration's `limits` section (config.Policy.limits)."""
        return cls(max_file_bytes=limits["max_file_bytes"], max_documents=limits["max_documents_per_file"],
                   max_nodes=limits["max_alias_expansion"])


DEFAULT_LIMITS = Limits()


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


@dataclass
class ParsedFile:
    path: str
    documents: list[Document]
    findings: list[Finding]
    source: SourceFile | None = None
