"""Per-blob checks: parse summaries and the findings of each blob (document, parsed-file and file
checks), from the cache or computed, on every core when there are many (see pool.py)."""

from __future__ import annotations

import os
from typing import Any

from ..cache import MEMO
from ..checks import FILE_CHECKS, PARSED_CHECKS, document_checks
from ..documents import Document
from ..findings import Finding
from ..gitrepo import Entry
from . import memo, pool
from .crds import CrdDiscovery
from .keys import blob_key
from .summaries import _findings_from, _findings_json


class BlobChecks(CrdDiscovery):

    def blob_work(self, manifests: list[Entry], direct_paths: set[str], rendered: list[Document]) -> None:
        """Parse summaries and per-blob findings that the cache does not have, on every core when there are many.

        Kinds defined by CRDs of the tree are part of the cache keys and of validation, and a CRD is known
        only once its file is parsed. So the work is speculative: every blob is checked with the CRDs
        known beforehand (from cached summaries); when the parse finds new ones, the keys are computed
        again, and only the blobs whose key changed (objects of the new kinds) are checked again."""
        self.known_summaries(manifests)
        unknown = self.cached_summaries(manifests)
        base = self.ctx.custom.copy()  # without the tree's CRDs: to start over when phase 1 finds more
        self.register_all_crds(manifests, rendered)
        reused = self.known_rows(direct_paths)
        # path -> key with the CRDs known so far (a blob not parsed yet has none: its objects' kinds
        # are part of its key)
        unparsed = {e.path for e in unknown}
        pending = [e for e in self.entries if e.path not in self.precomputed]
        guessed = self._keys(direct_paths, [e for e in pending if e.path not in unparsed])
        found = self.cached_findings(guessed)
        todo = [(e.path, e.path in direct_paths) for e in self.entries
                if e.path not in found and e.path not in self.precomputed]
        count = min(os.cpu_count() or 1, pool.MAX_WORKERS)
        workers = pool.Pool.start(self, count, todo, base, manifests, rendered) \
            if len(todo) >= pool.PARALLEL_MIN and count >= 2 else None
        try:
            if workers is not None:
                found.update(workers.phase_one())
            self.parse_unknown(unknown)
            if any(self.summaries[e.path]["defines"] for e in unknown):  # new kinds: start over with them
                self.register_all_crds(manifests, rendered, base)
                for path in reused:  # (rows kept for the CRDs known before: looked up again)
                    del self.precomputed[path]
                final = self._keys(direct_paths, [e for e in self.entries if e.path not in self.precomputed])
            else:
                final = guessed | self._keys(direct_paths, unknown)
            rejected = self.keep_confirmed(found, final)
            if workers is not None:
                workers.adopt(rejected)
            again = self.still_missing(final, direct_paths, asked=set(guessed.values()))
            if workers is not None and not workers.failed and again:
                workers.phase_two(again)  # what it cannot do, blob_findings does here
        finally:
            if workers is not None:
                workers.close()

    def known_summaries(self, manifests: list[Entry]) -> None:
        """In the gate server: the summaries of the manifests whose blob a run has seen at the same path."""
        if not MEMO.enabled:
            return
        known = memo.known_summaries(self.parse_fp)
        if known:
            for e in manifests:
                kept = known.get(e.path)
                if kept is not None and kept[0] == e.oid:
                    self.summaries[e.path] = kept[1]

    def _rows_key(self) -> tuple[Any, ...] | None:
        """Where the gate server keeps this run's findings rows (memo.known_rows); None elsewhere."""
        if not MEMO.enabled or getattr(self.cache, "db", None) is None:
            return None
        return memo.rows_key(str(getattr(self.cache, "path", "")), self.base, self.crd_source)

    def known_rows(self, direct_paths: set[str]) -> list[str]:
        """In the gate server: the findings rows of the files whose blob, mode and role a run has seen at
        the same path with the same CRDs; the paths taken."""
        key = self._rows_key()
        known = memo.known_rows(key) if key is not None else None
        taken = []
        if known:
            for e in self.entries:
                kept = known.get(e.path)
                if kept is not None and kept[0] == e.oid and kept[1] == e.mode \
                        and kept[2] == (e.path in direct_paths) and kept[3] == (e.path in self.by_manifest):
                    self.precomputed[e.path] = kept[4]
                    taken.append(e.path)
        return taken

    def keep_rows(self, direct_paths: set[str]) -> None:
        """In the gate server, once every file's findings are known: what later runs may take (known_*)."""
        key = self._rows_key()
        if key is None:
            return
        rows = {e.path: (e.oid, e.mode, e.path in direct_paths, e.path in self.by_manifest, self.precomputed[e.path])
                for e in self.entries if e.path in self.precomputed}
        summaries = {path: (self.by_path[path].oid, s) for path, s in self.summaries.items() if path in self.by_manifest}
        memo.keep(self.parse_fp, key, summaries, rows)

    def cached_summaries(self, manifests: list[Entry]) -> list[Entry]:
        """The cache lookup of the manifests' parse summaries; the manifests it does not answer."""
        keys = {self._summary_key(e): e.path for e in manifests if e.path not in self.summaries}
        for key, summary in self.cache.get_many(list(keys)).items():
            self.summaries[keys[key]] = summary
        return [e for e in manifests if e.path not in self.summaries]

    def cached_findings(self, keys: dict[str, str]) -> dict[str, tuple[str, list[Any]]]:
        """path -> (key, rows) of the blobs whose findings the cache has under these keys (path -> key)."""
        path_of = {key: path for path, key in keys.items()}
        return {path_of[key]: (key, rows) for key, rows in self.cache.get_many(list(path_of)).items()}

    def parse_unknown(self, unknown: list[Entry]) -> None:
        """Phase one without workers: parse what the cache did not answer (a no-op for what they parsed)."""
        for n, e in enumerate(unknown):
            if self.progress is not None and e.path not in self.summaries:
                self.progress(n, len(unknown))
            self.summary(e)

    def keep_confirmed(self, found: dict[str, tuple[str, list[Any]]], final: dict[str, str]) -> set[str]:
        """Keep the rows found under the key each blob finally has; the keys that turned out stale."""
        rejected = set()
        for path, (key, rows) in found.items():
            if final[path] == key:
                self.precomputed[path] = rows
            else:
                rejected.add(key)
        return rejected

    def still_missing(self, final: dict[str, str], direct_paths: set[str], asked: set[str]) -> list[tuple[str, bool, str]]:
        """The cache asked again for the final keys (but those the first lookup already missed); the
        blobs left to check: (path, direct, key)."""
        rest = {final[path]: path for path in final if path not in self.precomputed}
        for key, rows in self.cache.get_many([key for key in rest if key not in asked]).items():
            self.precomputed[rest[key]] = rows
        return [(path, path in direct_paths, key) for key, path in rest.items() if path not in self.precomputed]

    def _keys(self, direct_paths: set[str], entries: list[Entry]) -> dict[str, str]:
        """path -> the key of each entry's findings, with the CRDs registered now."""
        return {e.path: self._blob_key(e, e.path in direct_paths) for e in entries}

    def _blob_key(self, e: Entry, direct: bool) -> str:
        rows = self.summaries[e.path]["docs"] if e.path in self.summaries else None
        return blob_key(self.base, e, direct, rows, self.crd_source)

    def _cached_blob(self, e: Entry, direct: bool) -> list[Any] | None:
        if e.path in self.precomputed:
            return self.precomputed[e.path]
        if e.path in self.by_manifest and e.path not in self.summaries:
            return None
        rows = self.cache.get(self._blob_key(e, direct))
        if rows is not None:
            self.precomputed[e.path] = rows
        return rows

    def blob_findings(self, e: Entry, direct: bool) -> list[Finding]:
        """Document checks of a blob's objects (when they stand for themselves) and file checks."""
        cached = self._cached_blob(e, direct)
        if cached is not None:
            return _findings_from(cached)
        key = self._blob_key(e, direct)
        rows = self.precomputed[e.path] = self.compute_blob(e, direct)
        self.cache.put_later(key, rows)
        return _findings_from(rows)

    def compute_blob(self, e: Entry, direct: bool) -> list[Any]:
        readable = not (e.is_link or e.is_submodule) and e.size <= self.limits.max_file_bytes
        out: list[Finding] = []
        if e.path in self.summaries:
            pf = self.parse(e.path)
            for pcheck in PARSED_CHECKS:
                out.extend(pcheck(pf, self.ctx))
            if direct:
                for doc in pf.documents:
                    if doc.is_object:
                        for check in document_checks(doc.kind, self.ctx):
                            out.extend(check(doc, self.ctx))
        data = self.read(e) if readable else None
        for fcheck in FILE_CHECKS:
            out.extend(fcheck(e, data, self.ctx))
        return _findings_json(out)
