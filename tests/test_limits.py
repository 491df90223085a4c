"""Each configured limit refuses a push with a clear message when reached, through real pushes."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from conftest import GIT_ENV, TEST_HOME, Clone, Server, git

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n"


def refused_with(clone: Clone, server: Server, line: str) -> list[str]:
    before = server.rev()
    push = clone.push()
    assert not push.accepted, push.output
    assert line in push.remote_lines(), push.output
    assert "Traceback" not in push.output and server.rev() == before
    return push.remote_lines()


def test_max_file_bytes(server: Server, clone: Clone) -> None:
    server.configure("limits:\n  max_file_bytes: 1000\n")
    clone.write("small.yaml", CM.format(name="small"))
    clone.write("big.yaml", CM.format(name="big") + "  pad: '" + "x" * 1000 + "'\n")
    clone.commit()
    size = (clone.path / "big.yaml").stat().st_size
    lines = refused_with(clone, server, f"big.yaml:1:1: error [file-too-large] {size} bytes is over the limit of 1000 bytes")
    assert not [x for x in lines if x.startswith("small.yaml")]


def test_max_documents_per_file(server: Server, clone: Clone) -> None:
    server.configure("limits:\n  max_documents_per_file: 3\n")
    clone.write("three.yaml", "---\n".join(CM.format(name=f"a{i}") for i in range(3)))
    clone.commit()
    assert clone.push().accepted
    clone.write("four.yaml", "---\n".join(CM.format(name=f"b{i}") for i in range(4)))
    clone.commit()
    refused_with(clone, server, "four.yaml:22:1: error [yaml-limits] more than 3 documents in one file")


def test_max_alias_expansion(server: Server, clone: Clone) -> None:
    server.configure("limits:\n  max_alias_expansion: 100\n")
    items = "[" + ", ".join(["x"] * 10) + "]"
    clone.write("ok.yaml", CM.format(name="ok").replace("data:\n  k: v\n", f"data:\n  k: v\nx: &a {items}\ny: *a\n"))
    clone.write("bomb.yaml", CM.format(name="bomb").replace(
        "data:\n  k: v\n", f"x: &a {items}\ny: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nz: [*b, *b]\n"))
    clone.commit()
    lines = refused_with(clone, server,
                         "bomb.yaml:1:1: error [yaml-alias] aliases expand this document beyond 100 values (an alias bomb?)")
    assert not [x for x in lines if x.startswith("ok.yaml") and "yaml-alias" in x]


def test_max_objects_per_push(server: Server, clone: Clone) -> None:
    server.configure("limits:\n  max_objects_per_push: 5\n")
    for i in range(5):
        clone.write(f"cm{i}.yaml", CM.format(name=f"cm{i}"))
    clone.commit()
    assert clone.push().accepted
    clone.write("cm5.yaml", CM.format(name="cm5"))
    clone.commit()
    refused_with(clone, server, ".:1:1: error [yaml-limits] 6 objects is over the limit of 5 per push")


def test_max_objects_per_push_counts_every_ref_of_the_push(server: Server, clone: Clone) -> None:
    server.configure("limits:\n  max_objects_per_push: 5\n")
    for i in range(3):
        clone.write(f"cm{i}.yaml", CM.format(name=f"cm{i}"))
    clone.commit()
    proc = git("push", "--porcelain", "origin", "HEAD:refs/heads/a", "HEAD:refs/heads/b", cwd=clone.path, check=False)
    output = proc.stderr + proc.stdout
    assert proc.returncode != 0, output
    assert "remote: .:1:1: error [yaml-limits] 6 objects in this push's refs together is over the limit of 5 per push" in output
    assert server.rev("refs/heads/a") is None and server.rev("refs/heads/b") is None


def test_timeout_seconds(server: Server, clone: Clone) -> None:
    server.configure("limits:\n  timeout_seconds: 0.05\n")
    for i in range(1000):  # about 0.15 s of work for a warm gate server on 2 cores (200 files: 0.03 s)
        clone.write(f"apps/cm{i}.yaml", CM.format(name=f"cm{i}"))
    clone.commit()
    started = time.monotonic()
    refused_with(clone, server, "gitops-hooks: push refused: checking took longer than limits.timeout_seconds (0.05 s)")
    assert time.monotonic() - started < 30
    # With time enough the same push is accepted: the refusal was the limit, not the content.
    server.configure("limits:\n  timeout_seconds: 60\n")
    assert clone.push().accepted


@pytest.mark.parametrize("seconds", ["0.02", "0.08", "0.15", "0.3"])
def test_timeout_at_any_moment_refuses_and_never_hangs(server: Server, clone: Clone, seconds: str) -> None:
    """The timer may fire while the cold run forks its workers, while they work or after: the push is
    refused with the timeout message (or finished in time and judged), the hook never hangs and no
    worker is left behind."""
    server.configure(f"limits:\n  timeout_seconds: {seconds}\n")
    for i in range(300):
        clone.write(f"apps/cm{i}.yaml", CM.format(name=f"cm{i}"))
    clone.commit()
    proc = subprocess.run(["git", "push", "--porcelain", "origin", "HEAD:refs/heads/main"], cwd=clone.path,
                          capture_output=True, text=True, timeout=120, env={**os.environ, **GIT_ENV, "HOME": TEST_HOME})
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and "Exception ignored" not in out, out
    if proc.returncode != 0:
        assert "checking took longer than limits.timeout_seconds" in out, out
        assert server.rev() is None
    else:
        assert "gitops-hooks: accepted" in out
