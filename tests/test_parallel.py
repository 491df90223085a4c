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
    monkeypatch.setattr(pipeline, "PARALLEL_MIN", 10**9)
    sequential = _lines(root)
    monkeypatch.setattr(pipeline, "PARALLEL_MIN", 8)
    parallel = _lines(root)
    assert parallel == sequential
    assert any("[schema-invalid] widget.example.io/w" in line for line in parallel)
    assert any(line.startswith("gadgets.yaml:") and "[schema-invalid] gadget.example.io/w" in line for line in parallel)
    assert any("[yaml-syntax]" in line for line in parallel)


def test_workers_die_of_sigterm_whatever_handler_the_parent_installed() -> None:
    """The gate server lets a push finish on SIGTERM; its forked workers must still die of the SIGTERM
    that Pool.terminate() sends them, or terminate() waits for them forever."""
    import signal
    import time

    from gitops_hooks import pipeline

    previous = signal.signal(signal.SIGTERM, lambda *_: None)  # what the server's handler amounts to
    ready_r, ready_w = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:  # the worker
            try:
                pipeline._child_init()
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
