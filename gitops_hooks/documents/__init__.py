"""YAML and JSON files to documents, read the way kubectl reads them.

kubectl decodes YAML with go-yaml v2 (YAML 1.1 scalars: `yes`, `on`, `y` are booleans) and refuses
duplicate keys. PyYAML's C parser gives us nodes with positions; a small constructor of our own turns
them into plain JSON-like values, refuses duplicate keys and unknown tags, and bounds alias expansion.

Positions are not kept for every value (that would cost memory on large trees): a Document knows its
file and index, and `locate()` composes that file again only when a finding needs a line.

Here: `parse` (the front door: bytes to a ParsedFile), `decode`, `parse_yaml`, `parse_json`. The parts:
`composer` (YAML 1.1 scalars as go-yaml v2 resolves them; the C composer), `positions` (SourceFile: a
pointer to its line), `model` (Document, ParsedFile, Limits), `careful` (the exact reader and its
constructor, where every error comes from), `fast` (yaml-rs where YAML 1.1 and 1.2 cannot differ) and
`lists` (the items of a `kind: List`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..findings import Finding, finding
from .careful import YAMLProblem, parse_yaml_careful
from .composer import GO_FLOAT, GO_INT, YAML11_BOOLS, go_float, go_int
from .fast import _fast
from .lists import expand_lists, is_list
from .model import DEFAULT_LIMITS, Document, Limits, ParsedFile
from .positions import Pointer, SourceFile

__all__ = [
    "DEFAULT_LIMITS", "GO_FLOAT", "GO_INT", "YAML11_BOOLS", "Document", "Limits", "ParsedFile", "Pointer",
    "SourceFile", "YAMLProblem", "decode", "expand_lists", "go_float", "go_int", "is_list", "iter_objects",
    "parse", "parse_json", "parse_yaml", "parse_yaml_careful",
]


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


def parse_yaml(path: str, text: str, limits: Limits = DEFAULT_LIMITS) -> ParsedFile:
    source = SourceFile(path, text)
    fast = _fast(path, text, limits, source)
    if fast is not None:
        return fast
    return parse_yaml_careful(path, text, limits, source)


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
