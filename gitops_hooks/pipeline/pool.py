"""The worker pool: forked workers, and the parent as one more, sharing one run's per-blob checks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..cache import row_name
from ..documents import Document
from ..gitrepo import Entry
from ..schemas import GVK, CustomSchemas, split_api_version
from ..workers import Channel, Queue, WorkerError, Workers

if TYPE_CHECKING:
    from .blobs import BlobChecks


PARALLEL_MIN = 64  # blobs to work on before forking pays off
MAX_WORKERS = 4


class Pool:
    """Forked workers, and the parent as one more, sharing one run's `blob_work` in two phases.

    Phase 1: each process (the parent included: it would only wait) takes the next blob from a shared
    queue, biggest first, until none is left, and checks it with the CRDs known before the fork; the
    workers answer with the summaries, the findings rows under the keys they used, and the cache rows
    they recorded (encoded, or in the gate server the values themselves: the parent encodes them after
    its answer, see cache.defer_writes). Phase 2, only when phase 1 found CRDs: each registers all of
    them as the parent did and checks again the blobs whose key changed (the parse of files with custom
    kinds is kept, so those go back to whoever parsed them). A failed worker's blobs are left to the
    parent's sequential path; nothing a failed worker sent is kept."""

    def __init__(self, run: BlobChecks, workers: Workers, queue: Queue, order: list[tuple[str, bool]]) -> None:
        self.run = run
        self.workers = workers  # worker i is process i + 1; the parent is process 0
        self.queue = queue
        self.order = order
        self.recorded: dict[str, Any] = {}
        self.owner: dict[str, int] = {}
        self.failed = False

    @classmethod
    def start(cls, run: BlobChecks, count: int, todo: list[tuple[str, bool]], base: CustomSchemas,
              manifests: list[Entry], rendered: list[Document]) -> Pool | None:
        order = sorted(todo, key=lambda item: -run.by_path[item[0]].size)
        try:
            queue = Queue(len(order))
        except OSError:
            return None
        try:
            workers = Workers(count - 1, lambda channel: _worker(run, queue, order, base, manifests, rendered, channel))
        except OSError:
            queue.close()
            return None  # could not fork: the sequential path does the work
        return cls(run, workers, queue, order)

    def phase_one(self) -> dict[str, tuple[str, list[Any]]]:
        """path -> (key, rows) for the blobs of the queue; the summaries are adopted by the run. If a
        worker failed, the workers are stopped and only what the parent did is kept."""
        run = self.run
        saved = run.cache
        run.cache = saved.for_child()  # rows are recorded, and stored once their keys are confirmed
        try:
            found, kept, summaries, recorded = _phase_one(run, self.queue, self.order)
        finally:
            run.cache = saved
        run.summaries.update(summaries)
        self.recorded = dict(recorded)
        self.owner.update((path, 0) for path in kept)
        theirs: list[Any] = []
        try:
            theirs = [self.workers.receive(index) for index in range(len(self.workers.pids))]
        except WorkerError:
            self.close()
            self.failed = True
            return found
        for index, (got, kept, news, recorded) in enumerate(theirs, 1):
            found.update(got)
            run.summaries.update(news)
            self.recorded.update(recorded)
            self.owner.update((path, index) for path in kept)
        return found

    def adopt(self, rejected: set[str]) -> None:
        """Store what phase 1 recorded, but for rows under keys that turned out stale."""
        names = {row_name(key) for key in rejected}
        self.run.cache.adopt({k: v for k, v in self.recorded.items() if k not in names})
        self.recorded = {}

    def phase_two(self, again: list[tuple[str, bool, str]]) -> None:
        run = self.run
        loads = [0] * (len(self.workers.pids) + 1)
        items: list[list[tuple[str, bool, str]]] = [[] for _ in loads]
        # The blobs are grouped by the CRD that defines their first custom kind: one process loads and
        # compiles that schema, for the whole group. Groups go biggest first to the process where they
        # cost least, counting the CRD's size once to compile it, and once more where its parse was not
        # kept (it is read and parsed again there).
        crd_of: dict[GVK, str] = {}
        for path, summary in run.summaries.items():
            for g, v, k, *_ in summary["defines"]:
                crd_of.setdefault((g, v, k), path)
        groups: dict[str, list[tuple[str, bool, str]]] = {}
        for item in again:
            rows = run.summaries[item[0]]["docs"] if item[0] in run.summaries else []
            crd = next((crd_of[gvk] for row in rows if (gvk := (*split_api_version(row[3]), row[4])) in crd_of), "")
            groups.setdefault(crd, []).append(item)
        def weight(group: list[tuple[str, bool, str]]) -> int:
            return sum(run.by_path[path].size + 1 for path, _, _ in group)
        for crd, group in sorted(groups.items(), key=lambda g: -weight(g[1]) - (run.by_path[g[0]].size if g[0] else 0)):
            crd_size = run.by_path[crd].size if crd else 0
            costs = [loads[i] + weight(group) + crd_size * (1 if self.owner.get(crd) == i else 2)
                     for i in range(len(loads))]
            index = costs.index(min(costs))
            loads[index] = costs[index]
            items[index].extend(group)
        defining = {p: s for p, s in run.summaries.items() if s["defines"]}
        try:
            for index, share in enumerate(items[1:], 1):  # with the summaries of the blobs it did not parse
                summaries = defining | {p: run.summaries[p] for p, _, _ in share if p in run.summaries}
                self.workers.send(index - 1, (summaries, share))
        except WorkerError:
            self.failed = True
        for path, direct, key in items[0]:  # the parent's own (its CRDs are registered by blob_work)
            rows = run.compute_blob(run.by_path[path], direct)
            run.cache.put_later(key, rows)
            run.precomputed[path] = rows
        if self.failed:
            return
        try:
            answers = [self.workers.receive(index - 1) for index in range(1, len(items))]
        except WorkerError:
            return
        for rows_of, recorded in answers:
            run.precomputed.update(rows_of)
            run.cache.adopt(recorded)

    def close(self) -> None:
        self.workers.close()
        self.queue.close()


def _phase_one(run: BlobChecks, queue: Queue, order: list[tuple[str, bool]]) -> tuple[
        dict[str, tuple[str, list[Any]]], list[str], dict[str, dict[str, Any]], dict[str, Any]]:
    """Summaries and findings rows of the blobs this process takes from the queue, with the CRDs
    registered so far; what run.cache (a recorder) recorded. Parses are kept only where a CRD found in
    this phase could matter."""
    builtin = run.ctx.kube.index
    found, kept, news = {}, [], {}
    tick = run.progress
    while (taken := queue.take()) is not None:
        if tick is not None:
            tick(taken, len(order))  # files taken so far by every process: the shared counter
        path, direct = order[taken]
        e = run.by_path[path]
        if path in run.by_manifest and path not in run.summaries:
            news[path] = run.summary(e)
        key = run._blob_key(e, direct)
        found[path] = (key, run.compute_blob(e, direct))
        run.cache.put_later(key, found[path][1])
        if path in run.summaries and (run.summaries[path]["defines"] or any(
                (*split_api_version(row[3]), row[4]) not in builtin for row in run.summaries[path]["docs"])):
            kept.append(path)  # a CRD (phase 2 may load it), or objects whose kinds a CRD found now may define
        else:  # nothing found later changes its key; the memory is reused for the next file
            run.parsed.pop(path, None)
            run.data.pop(path, None)
    return found, kept, news, dict(run.cache.recorded())


def _worker(run: BlobChecks, queue: Queue, order: list[tuple[str, bool]], base: CustomSchemas,
            manifests: list[Entry], rendered: list[Document], channel: Channel) -> None:
    """A forked worker's two phases (see `Pool`). It reads blobs through its own repository handle and
    records cache rows for the parent to store: the parent's SQLite handle is never used here."""
    run.snapshot = run.snapshot.for_child()
    run.cache = run.cache.for_child()
    run.progress = None  # the parent alone reports, from the counter all processes share
    channel.send(_phase_one(run, queue, order))
    run.cache.recorded().clear()
    summaries, items = channel.receive()
    run.summaries.update(summaries)  # every CRD of the tree, registered as the parent did
    run.register_all_crds(manifests, rendered, base)
    rows_of = {}
    for path, direct, key in items:
        rows = run.compute_blob(run.by_path[path], direct)
        run.cache.put_later(key, rows)
        rows_of[path] = rows
    channel.send((rows_of, run.cache.recorded()))
