"""The state of one run over one snapshot: its entries, the blobs read and parsed, and the parse
summaries, looked up in the cache by blob id before any file is read."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .. import __version__
from ..cache import NullCache, fingerprint
from ..checks import DOCUMENT_CHECKS, FILE_CHECKS, PARSED_CHECKS, CheckContext
from ..config import Policy, folder_stamp, matcher
from ..documents import Document, Limits, ParsedFile, Pointer, parse
from ..findings import finding
from ..gitrepo import Entry, Snapshot
from ..schemas import GVK
from .keys import _plugins, code_fingerprint
from .result import Stats
from .summaries import _summary


class RunState:
    """One pass of the pipeline over one snapshot: what every step reads and fills."""

    def __init__(self, snapshot: Snapshot, policy: Policy, ctx: CheckContext, cache: NullCache,
                 progress: Callable[[int, int], None] | None) -> None:
        self.snapshot = snapshot
        self.policy = policy
        self.ctx = ctx
        self.cache = cache
        self.progress = progress
        self.limits = Limits.of(policy.limits)
        excluded = matcher(policy.path_exclude)
        self.entries = [e for e in snapshot.entries() if excluded(e.path) is None]
        self.by_path = {e.path: e for e in self.entries}
        self.stats = Stats(files=len(self.entries))
        self.data: dict[str, bytes] = {}
        self.parsed: dict[str, ParsedFile] = {}
        self.summaries: dict[str, dict[str, Any]] = {}
        self.precomputed: dict[str, list[Any]] = {}
        self.crd_source: dict[GVK, str] = {}
        self.by_manifest: set[str] = set()
        self.parse_fp = fingerprint(code_fingerprint(), self.limits)
        self._simple_members: set[str] = set()  # files of kustomizations read directly (see kustomize_units)
        self._simple_units: dict[str, list[str]] = {}
        self.base = fingerprint(__version__, code_fingerprint(), policy.fingerprint(), ctx.kube.version, ctx.kube.strict,
                                [c.__module__ + "." + c.__qualname__ for c in [*DOCUMENT_CHECKS, *FILE_CHECKS, *PARSED_CHECKS]],
                                folder_stamp(policy.config.get("schema_dirs", [])), _plugins())

    def read(self, e: Entry) -> bytes:
        if e.path not in self.data:
            self.data[e.path] = self.snapshot.read(e)
        return self.data[e.path]

    def parse(self, path: str) -> ParsedFile:
        if path not in self.parsed:
            e = self.by_path[path]
            if e.size > self.limits.max_file_bytes:  # refused by its size from the tree, never read
                self.parsed[path] = parse(path, b"", self.limits)
                self.parsed[path].findings.append(finding("file-too-large", path, 1, 1, f"{e.size} bytes is over "
                                                          f"the limit of {self.limits.max_file_bytes} bytes"))
            else:
                self.parsed[path] = parse(path, self.read(e), self.limits)
        return self.parsed[path]

    def document(self, path: str, index: int, prefix: Pointer = ()) -> Document:
        return next(d for d in self.parse(path).documents if d.index == index and d.prefix == prefix)

    def _summary_key(self, e: Entry) -> str:
        return f"parse:{e.oid}:{self.parse_fp}"

    def _cached_summary(self, e: Entry) -> dict[str, Any] | None:
        if e.path not in self.summaries:
            s = self.cache.get(self._summary_key(e))
            if s is not None:
                self.summaries[e.path] = s
        return self.summaries.get(e.path)

    def summary(self, e: Entry) -> dict[str, Any]:
        if self._cached_summary(e) is None:
            s = _summary(self.parse(e.path))
            self.cache.put_later(self._summary_key(e), s)
            self.summaries[e.path] = s
        return self.summaries[e.path]

    def _rows(self, path: str) -> list[Any]:
        e = self.by_path[path]
        if e.is_link or e.is_submodule or e.size > self.limits.max_file_bytes:
            return []
        return list(self.summary(e)["docs"])


class _LazyParsed(Mapping[str, ParsedFile]):
    """`path -> ParsedFile` for tree checks, parsing a file only when it is looked at."""

    def __init__(self, run: RunState, paths: list[str]) -> None:
        self.run = run
        self.paths = paths

    def __getitem__(self, path: str) -> ParsedFile:
        if path not in self.paths:
            raise KeyError(path)
        return self.run.parse(path)

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)
