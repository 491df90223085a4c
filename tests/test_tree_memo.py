"""The gate server's memo of the manifests' findings (pipeline.memo.TREE_MEMO).

A push that changes no manifest finds what the last push on the same manifests found, without building
the objects and running the tree checks again. These tests push real commits through the real gate
server and check that the memo is never used where something it depends on differs: the tree before
the push (transition rules), the administrator's admission folder, a new manifest. The first test shows
in-process that the memo is what serves a push that changes no manifest.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Clone, Server, git
from test_admission import POLICY_EVERYWHERE, deployment, refused_until_limits_are_set
from test_cel_crd import GATEWAYCLASS, GATEWAYCLASS_CRD, _with_crd
from test_gate_server import served_pushes, wait_for_server

from gitops_hooks import cache, config, pipeline
from gitops_hooks.cache import ResultCache
from gitops_hooks.findings import finding
from gitops_hooks.gitrepo import FolderTree

BROKEN = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\ndata:\n  replicas: 1\n"  # not a string


def _run(root: Path, cache_dir: Path) -> list[str]:
    policy = config.Policy(config.checked({}, "test"))
    result = pipeline.check_snapshot(FolderTree(root), policy, cache=ResultCache(cache_dir))
    return [f"{f.path}:{f.line}:{f.column}: {f.severity} [{f.rule}] {f.message}" for f in result.findings]


def test_a_run_on_the_same_manifests_is_served_by_the_memo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "tree"
    (root / "apps").mkdir(parents=True)
    (root / "apps" / "flags.yaml").write_text(BROKEN)
    (root / "apps" / "same.yaml").write_text(BROKEN.replace("flags", "other") + "---\n" + BROKEN)  # a duplicate
    (root / "README.md").write_text("first\n")
    monkeypatch.setattr(cache.MEMO, "enabled", True)  # as in the gate server
    monkeypatch.setattr(pipeline.memo, "TREE_MEMO", {})
    worked: list[int] = []
    blob_work = pipeline._Run.blob_work

    def counted(run: pipeline._Run, *args: object) -> None:
        worked.append(1)
        blob_work(run, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline._Run, "blob_work", counted)
    first = _run(root, tmp_path / "cache")
    assert any("[schema-invalid]" in line for line in first)
    assert any("[object-duplicate]" in line for line in first)  # a tree check's finding
    (root / "README.md").write_text("second\ntoken: ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R\n")  # a finding
    second = _run(root, tmp_path / "cache")
    assert len(worked) == 1  # the second run built nothing for the manifests
    assert second == _run(root, tmp_path / "other-cache")  # what a run without the memo's entry finds
    assert any("README.md" in line for line in second) and len(second) > len(first)
    (root / "apps" / "new.yaml").write_text(BROKEN.replace("flags", "new"))  # a manifest more: no reuse
    third = _run(root, tmp_path / "cache")
    assert len(worked) == 3
    assert len(third) == len(second) + 1


def test_the_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline.memo, "TREE_MEMO", {})
    many = tuple(finding("schema-invalid", "a.yaml", n, 1, "x")
                 for n in range(pipeline.memo.TREE_MEMO_FINDINGS + 1))
    pipeline.memo.remember("many", (many, {}, 1))
    assert pipeline.memo.TREE_MEMO == {}  # too many findings to keep
    for n in range(pipeline.memo.TREE_MEMO_SIZE + 2):
        pipeline.memo.remember(f"run {n}", ((), {}, n))
    latest = [f"run {n}" for n in range(2, pipeline.memo.TREE_MEMO_SIZE + 2)]
    assert list(pipeline.memo.TREE_MEMO) == latest


def test_the_tree_before_the_push_is_part_of_what_is_reused(server: Server, clone: Clone) -> None:
    wait_for_server(server)  # the memo lives in the gate server: every push here goes through it
    before = served_pushes(server)
    _with_crd(clone, GATEWAYCLASS_CRD)
    clone.write("infra/gatewayclass.yaml", GATEWAYCLASS)
    clone.commit("gateway class")
    assert clone.push().accepted
    clone.write("infra/gatewayclass.yaml", GATEWAYCLASS.replace("example.net/gateway-controller", "example.net/other"))
    clone.commit("change the controller")
    refused = clone.push()
    assert not refused.accepted  # the controller is immutable: a transition rule
    assert any("[crd-rule-transition]" in line for line in refused.remote_lines())
    # The same manifests as a new branch: nothing before it, no transition, accepted.
    assert clone.push(ref="HEAD:refs/heads/other").accepted
    for words in ("docs", "more docs"):  # no manifest changed: the second is served by the memo
        clone.write("README.md", words + "\n")
        clone.commit(words)
        assert clone.push(ref="HEAD:refs/heads/other").accepted
    # The same manifests again, onto main, where the old controller stands: refused again.
    again = clone.push()
    assert not again.accepted
    assert [line for line in again.remote_lines() if "[crd-rule-transition]" in line] == \
        [line for line in refused.remote_lines() if "[crd-rule-transition]" in line]
    assert served_pushes(server) == before + 6


def test_an_edit_in_the_admission_folder_is_seen_by_a_push_that_changes_no_manifest(
        server: Server, clone: Clone, tmp_path: Path) -> None:
    folder = tmp_path / "admission"
    folder.mkdir()
    server.configure(f"admission_policy_dirs: [{folder}]\n")
    wait_for_server(server)
    before = served_pushes(server)
    clone.write("lab/web.yaml", deployment(ns="lab"))  # no resource limits
    clone.commit("web")
    assert clone.push().accepted
    for words in ("docs", "more docs"):
        clone.write("README.md", words + "\n")
        clone.commit(words)
        assert clone.push().accepted
    (folder / "limits.yaml").write_text(POLICY_EVERYWHERE, encoding="utf-8")  # the configuration is unchanged
    clone.write("README.md", "still docs\n")
    clone.commit("docs again")
    refused_until_limits_are_set(clone)
    assert git("--git-dir", str(server.path), "log", "--format=%s", "-1").stdout.strip() == "limits"
    assert served_pushes(server) == before + 5


def test_a_run_that_changes_one_file_looks_up_that_file_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the gate server, the files a run has seen at the same path with the same blob take their parse
    summary and findings from what that run left (pipeline.memo): the cache is asked about the changed
    file alone, and the findings are those of a run on a cache of its own."""
    root = tmp_path / "tree"
    (root / "apps").mkdir(parents=True)
    (root / "apps" / "flags.yaml").write_text(BROKEN)
    (root / "apps" / "same.yaml").write_text(BROKEN.replace("flags", "other") + "---\n" + BROKEN)  # a duplicate
    for n in range(5):
        (root / "apps" / f"ok-{n}.yaml").write_text(BROKEN.replace("flags", f"ok-{n}").replace(": 1", ': "1"'))
    (root / "README.md").write_text("first\n")
    monkeypatch.setattr(cache.MEMO, "enabled", True)  # as in the gate server
    for name in ("_SUMMARIES", "_ROWS", "_DOCREFS", "TREE_MEMO"):
        monkeypatch.setattr(pipeline.memo, name, {})
    asked: list[str] = []
    get_many = ResultCache.get_many

    def counted(self: ResultCache, keys: list[str]) -> dict[str, object]:
        asked.extend(keys)
        return get_many(self, keys)

    monkeypatch.setattr(ResultCache, "get_many", counted)
    first = _run(root, tmp_path / "cache")
    (root / "apps" / "ok-3.yaml").write_text(BROKEN.replace("flags", "ok-3"))  # now broken
    asked.clear()
    second = _run(root, tmp_path / "cache")
    assert 1 <= len(asked) <= 2 and len({key.split(":")[1] for key in asked}) == 1, asked  # ok-3's blob
    assert len(second) == len(first) + 1 and any("apps/ok-3.yaml" in line for line in second)
    assert second == _run(root, tmp_path / "other-cache")  # what a run on a cache of its own finds
    monkeypatch.setattr(cache.MEMO, "enabled", False)  # a process of its own: every file is looked up
    asked.clear()
    assert _run(root, tmp_path / "cache") == second
    assert len(asked) >= 2 * 7, asked
