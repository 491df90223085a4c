"""Concurrent pushes to one guarded repository: the small version of `bench/stress.py`, run for real.

8 clients push valid and broken changes for 10 s, to their own branches and racing for one shared branch.
Every push must get a definite answer, the accepted ones exactly the valid ones (checked again afterwards
with `gitops-hooks validate --rev`), the result cache must pass `PRAGMA integrity_check`, and hooks must
run side by side (no lock held across validation).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_stress():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("stress", ROOT / "bench" / "stress.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["stress"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_eight_clients_for_ten_seconds(tmp_path: Path) -> None:
    stress = load_stress()
    summary = stress.run(clients=8, seconds=10, work=tmp_path, seed=3, verify_max=1000)
    assert summary["wrong_answers"] == []
    outcomes = summary["outcomes"]
    assert outcomes.get("indefinite", 0) == 0
    assert outcomes.get("accepted", 0) > 0 and outcomes.get("hook-refused", 0) > 0, outcomes
    records = summary["records"]
    assert {r["valid"] for r in records if r["outcome"] == "accepted"} == {True}
    assert {r["valid"] for r in records if r["outcome"] == "hook-refused"} == {False}
    # Every valid push that did not lose a race for the shared branch was accepted.
    assert all(r["outcome"] in ("accepted", "race-lost") for r in records if r["valid"])
    assert summary["max_hooks_at_once"] >= 2, "hooks never ran side by side"
