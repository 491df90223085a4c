"""The cold run spread over several processes gives exactly the findings of the one-process run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CORPUS, ROOT, need_corpus
from test_cache import CRD, WIDGET

from gitops_hooks import config, pipeline
from gitops_hooks.gitrepo import FolderTree


def _make_corpus(target: Path, objects: int) -> None:
    subprocess.run([sys.executable, str(ROOT / "bench" / "make_corpus.py"), str(target), "--objects", str(objects),
                    "--source", str(CORPUS)], check=True, capture_output=True)


def _lines(root: Path) -> list[str]:
    policy = config.Policy(config.checked({}, "test"))
    result = pipeline.check_snapshot(FolderTree(root), policy)
    return [f"{f.path}:{f.line}:{f.column}: {f.severity} [{f.rule}] {f.message}" for f in result.findings]


def test_parallel_equals_sequential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need_corpus()
    root = tmp_path / "tree"
    _make_corpus(root, 600)
    shutil.copytree(CORPUS / "kube-prometheus" / "manifests" / "setup", root / "setup")
    (root / "crd.yaml").write_text(CRD % "string")
    (root / "widgets").mkdir()
    (root / "widgets" / "w.yaml").write_text(WIDGET)  # invalid against the tree's own CRD
    gadgets = (CRD % "integer").replace("widget", "gadget").replace("Widget", "Gadget")
    gadget = WIDGET.replace("Widget", "Gadget").replace("size: 3", "size: big")
    (root / "gadgets.yaml").write_text(gadgets + "---\n" + gadget)  # a CRD and its invalid resource, one file
    broken = sorted(root.rglob("*.yaml"))[5]
    broken.write_text(broken.read_text().replace("metadata:", "metadata:\n  uid: abc", 1) + "---\nkind: x: y\n")
    monkeypatch.setattr(pipeline.pool, "PARALLEL_MIN", 10**9)
    sequential = _lines(root)
    monkeypatch.setattr(pipeline.pool, "PARALLEL_MIN", 8)
    parallel = _lines(root)
    assert parallel == sequential
    assert any("[schema-invalid] widget.example.io/w" in line for line in parallel)
    assert any(line.startswith("gadgets.yaml:") and "[schema-invalid] gadget.example.io/w" in line for line in parallel)
    assert any("[yaml-syntax]" in line for line in parallel)


def test_workers_die_of_sigterm_whatever_handler_the_parent_installed() -> None:
    """The gate server lets a push finish on SIGTERM; its forked workers must still die of the SIGTERM
    that stops them, or stopping them waits forever."""
    import signal
    import time

    from gitops_hooks import workers

    previous = signal.signal(signal.SIGTERM, lambda *_: None)  # what the server's handler amounts to
    ready_r, ready_w = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:  # the worker
            try:
                workers.child_init()
                os.write(ready_w, b"x")
                time.sleep(30)
            finally:
                os._exit(0)
        assert os.read(ready_r, 1) == b"x"
        os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
    finally:
        signal.signal(signal.SIGTERM, previous)
        os.close(ready_r)
        os.close(ready_w)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM


def _widget_tree(root: Path, size_type: str) -> None:
    """Sixty ConfigMaps (builtin kinds, unaffected by any CRD), Widgets in files of their own, and the
    Widget CRD in a file that sorts after them (parsed by whichever worker gets it)."""
    for i in range(60):
        (root / "plain").mkdir(parents=True, exist_ok=True)
        (root / "plain" / f"cm{i:02}.yaml").write_text(
            f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm{i}\n  namespace: default\ndata:\n  a: b\n")
    for i in range(12):
        (root / "widgets").mkdir(exist_ok=True)
        (root / "widgets" / f"w{i:02}.yaml").write_text(WIDGET.replace("name: w", f"name: w{i}"))
    (root / "widgets" / "big.yaml").write_text(WIDGET.replace("name: w", "name: big").replace("size: 3", "size: 500"))
    rule = "              x-kubernetes-validations:\n                - {rule: 'self.size < 100', message: too big}\n"
    props = "              properties:\n"
    (root / "zz-crd.yaml").write_text((CRD % size_type).replace(props, rule + props))


def _cached_lines(root: Path, cache_dir: Path) -> list[str]:
    from gitops_hooks.cache import ResultCache

    policy = config.Policy(config.checked({}, "test"))
    result = pipeline.check_snapshot(FolderTree(root), policy, cache=ResultCache(cache_dir))
    return [f"{f.path}:{f.line}:{f.column}: {f.severity} [{f.rule}] {f.message}" for f in result.findings]


def test_speculative_work_is_redone_when_the_push_brings_a_crd(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers check every blob with the CRDs known before the fork; a CRD found while parsing changes
    the keys of its custom resources only, and those are checked again with it. Then the CRD changes
    while the Widgets' summaries are cached: the Widgets are checked against the new schema."""
    root = tmp_path / "tree"
    _widget_tree(root, "string")  # size: 3 is not a string
    monkeypatch.setattr(pipeline.pool, "PARALLEL_MIN", 10**9)
    sequential = _lines(root)
    monkeypatch.setattr(pipeline.pool, "PARALLEL_MIN", 8)
    cache_dir = tmp_path / "cache"
    assert _cached_lines(root, cache_dir) == sequential
    assert sum("[schema-invalid] widget.example.io/" in line for line in sequential) == 13
    assert any("[crd-rule] widget.example.io/big" in line and "too big" in line for line in sequential)
    assert not any("schema-unknown-kind" in line for line in sequential)
    assert _cached_lines(root, cache_dir) == sequential  # the rows the workers encoded, read back

    (root / "zz-crd.yaml").write_text(CRD % "integer")  # now every Widget is valid
    monkeypatch.setattr(pipeline.pool, "PARALLEL_MIN", 10**9)
    sequential = _lines(root)
    monkeypatch.setattr(pipeline.pool, "PARALLEL_MIN", 8)
    assert _cached_lines(root, cache_dir) == sequential
    assert [line for line in sequential if "widget.example.io" in line] == [
        line for line in sequential if "[crd-rule] widget.example.io/big" in line]


def test_a_kind_defined_twice_is_checked_against_the_first_definition_on_every_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two CRD files define Widget. The first one by path counts, on the sequential path, in the workers
    and from the cache. A Widget's cache key names the CRD blob whose schema checked it: when that CRD
    goes, the Widgets are checked again."""
    root = tmp_path / "tree"
    _widget_tree(root, "integer")  # its zz-crd.yaml is replaced below
    padding = "              description: " + "x" * 20_000 + "\n"
    string_crd = (CRD % "string").replace("              properties:\n", padding + "              properties:\n", 1)
    (root / "zz-crd.yaml").write_text(string_crd)  # the biggest file: taken from the queue first
    (root / "aa-crd.yaml").write_text(CRD % "integer")  # first by path: this one counts
    monkeypatch.setattr(pipeline.pool, "PARALLEL_MIN", 10**9)
    sequential = _lines(root)
    assert not any("[schema-invalid] widget.example.io/" in line for line in sequential)
    monkeypatch.setattr(pipeline.pool, "PARALLEL_MIN", 8)
    cache_dir = tmp_path / "cache"
    assert _cached_lines(root, cache_dir) == sequential
    assert _cached_lines(root, cache_dir) == sequential  # from the rows the workers encoded

    (root / "aa-crd.yaml").unlink()  # now the string schema counts: every Widget is invalid
    monkeypatch.setattr(pipeline.pool, "PARALLEL_MIN", 10**9)
    sequential = _lines(root)
    assert sum("[schema-invalid] widget.example.io/" in line for line in sequential) == 13
    monkeypatch.setattr(pipeline.pool, "PARALLEL_MIN", 8)
    assert _cached_lines(root, cache_dir) == sequential


def test_a_failing_worker_leaves_the_work_to_the_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "tree"
    _widget_tree(root, "string")
    monkeypatch.setattr(pipeline.pool, "PARALLEL_MIN", 10**9)
    sequential = _lines(root)
    monkeypatch.setattr(pipeline.pool, "PARALLEL_MIN", 8)
    parent = os.getpid()
    compute = pipeline._Run.compute_blob

    def failing_in_workers(self: pipeline._Run, e: object, direct: bool) -> list[object]:
        if os.getpid() != parent:
            raise MemoryError("a worker ran out of memory")
        return compute(self, e, direct)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline._Run, "compute_blob", failing_in_workers)
    assert _lines(root) == sequential


def test_the_queue_hands_each_index_to_exactly_one_process() -> None:
    from gitops_hooks.workers import Queue

    queue = Queue(3000)
    pipes, pids = [], []
    try:
        for _ in range(2):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # a worker: takes until none is left, then reports what it took
                try:
                    taken = []
                    while (i := queue.take()) is not None:
                        taken.append(i)
                    os.write(w, ",".join(map(str, taken)).encode() + b"\n")
                finally:
                    os._exit(0)
            os.close(w)
            pipes.append(r)
            pids.append(pid)
        mine = []
        while (i := queue.take()) is not None:
            mine.append(i)
        theirs = []
        for r in pipes:
            with os.fdopen(r, "rb") as fh:
                text = fh.read().decode().strip()
            theirs.extend(int(x) for x in text.split(",") if x)
    finally:
        for pid in pids:
            os.waitpid(pid, 0)
        queue.close()
    assert sorted(mine + theirs) == list(range(3000))
