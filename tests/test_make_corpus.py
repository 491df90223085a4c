"""bench/make_corpus.py: deterministic, the promised shape, and a corpus the gate accepts."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml
from conftest import CORPUS, ROOT, Clone, Server, need_corpus

SCRIPT = ROOT / "bench" / "make_corpus.py"


def generate(target: Path, objects: int) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(SCRIPT), str(target), "--objects", str(objects), "--source", str(CORPUS)]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def documents(root: Path) -> list[tuple[str, dict]]:
    out = []
    for path, data in tree_bytes(root).items():
        out.extend((path, d) for d in yaml.load_all(data, Loader=yaml.CSafeLoader))
    return out


def test_same_number_gives_byte_identical_output(tmp_path: Path) -> None:
    need_corpus()
    first, second = generate(tmp_path / "a", 600), generate(tmp_path / "b", 600)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    a, b = tree_bytes(tmp_path / "a"), tree_bytes(tmp_path / "b")
    assert len(a) == 120
    assert a == b
    other = generate(tmp_path / "c", 605)
    assert other.returncode == 0
    assert len(tree_bytes(tmp_path / "c")) == 121  # a different N is a different corpus


def test_n_objects_in_n_over_5_files_unique_per_folder_and_only_plain_kinds(tmp_path: Path) -> None:
    need_corpus()
    proc = generate(tmp_path / "out", 1003)
    assert proc.returncode == 0, proc.stderr
    assert "1003 objects in 201 files" in proc.stdout
    docs = documents(tmp_path / "out")
    assert len(docs) == 1003
    per_file = Counter(path for path, _ in docs)
    assert len(per_file) == 201 and max(per_file.values()) == 5
    kinds = Counter(d["kind"] for _, d in docs)
    assert not {"CustomResourceDefinition", "Secret", "Kustomization", "Component"} & set(kinds)
    assert all(not k.endswith("List") for k in kinds)
    identities = Counter((path.split("/")[0], d["apiVersion"], d["kind"], d["metadata"].get("namespace", ""),
                          d["metadata"]["name"]) for path, d in docs)
    assert max(identities.values()) == 1
    assert len({path.split("/")[0] for path, _ in docs}) == 3  # 100 files per folder


def test_references_follow_renamed_objects(tmp_path: Path) -> None:
    need_corpus()
    assert generate(tmp_path / "out", 300).returncode == 0
    docs = [d for _, d in documents(tmp_path / "out")]
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    bindings = [d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert bindings
    originals = {(kind, name.rsplit("-c", 1)[0]) for kind, name in names}
    renamed = 0
    for b in bindings:
        copy = b["metadata"]["name"].rsplit("-c", 1)[1]
        ref = (b["roleRef"]["kind"], b["roleRef"]["name"])
        if ref in names:
            assert ref[1].endswith(f"-c{copy}"), b  # the role of the same copy
            renamed += 1
        else:
            assert ref not in originals, b  # a role outside the corpus, e.g. system:auth-delegator
    assert renamed >= len(bindings) // 2


def test_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    need_corpus()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine", encoding="utf-8")
    proc = generate(tmp_path / "out", 10)
    assert proc.returncode != 0
    assert "is not empty" in proc.stderr
    assert (tmp_path / "out" / "keep.txt").read_text(encoding="utf-8") == "mine"


def test_the_gate_accepts_the_generated_corpus(server: Server, clone: Clone, tmp_path: Path) -> None:
    """The benchmark times a real, clean push: every generated object must pass the checks."""
    need_corpus()
    objects = 250  # the source pool (113 objects) twice and more: every kind, renamed copies side by side
    assert generate(tmp_path / "gen", objects).returncode == 0
    clone.copy_tree(tmp_path / "gen")
    clone.commit("generated corpus")
    push = clone.push()
    assert push.accepted, push.output[-3000:]
    summary = f"{objects} objects: 0 errors, 0 warnings"
    assert any(summary in line for line in push.remote_lines()), push.output[-2000:]
