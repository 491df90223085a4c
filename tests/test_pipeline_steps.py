"""The pipeline's steps one by one (gitops_hooks/pipeline/): each is a method or function of its own module
that can be called alone on a run over a folder."""

from __future__ import annotations

from pathlib import Path

from gitops_hooks import config
from gitops_hooks.cache import NullCache
from gitops_hooks.findings import Finding
from gitops_hooks.gitrepo import FolderTree
from gitops_hooks.pipeline import make_context
from gitops_hooks.pipeline.run import Run

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n"
LIST = ("apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: ConfigMap\n    metadata:\n"
        "      name: a\n    data: [not, a, map]\n")


def run_over(root: Path) -> Run:
    policy = config.Policy(config.checked({}, "test"))
    return Run(FolderTree(root), policy, make_context(policy), NullCache(), None)


def tree(root: Path, files: dict[str, str]) -> Path:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def test_choosing_manifests_lists_charts_and_reads_the_rest(tmp_path: Path) -> None:
    run = run_over(tree(tmp_path, {"apps/a.yaml": CM.format(name="a"), "chart/Chart.yaml": "name: c\n",
                                   "chart/templates/x.yaml": "{{ .Values.x }}\n", "README.md": "hello\n"}))
    out: list[Finding] = []
    charts = run.charts(out)
    chosen = [e.path for e in run.manifests(charts, out)]
    assert charts == ["chart"] and chosen == ["apps/a.yaml"]
    assert out == []  # the chart's templates are not manifests; the Helm step renders the chart and reports it


def test_the_cache_lookup_then_parsing_fills_the_summaries(tmp_path: Path) -> None:
    run = run_over(tree(tmp_path, {"apps/list.yaml": LIST, "apps/b.yaml": CM.format(name="b")}))
    manifests = run.manifests(run.charts([]), [])
    unknown = run.cached_summaries(manifests)
    assert [e.path for e in unknown] == ["apps/b.yaml", "apps/list.yaml"]  # an empty cache answers nothing
    run.parse_unknown(unknown)
    summaries = [run.summary(e) for e in manifests]
    assert [[row[1], row[6], row[7]] for row in summaries[1]["docs"]] == [[4, "a", ["items", 0]]]
    assert run.parse_findings(manifests, summaries) == []
    objects = run.objects(manifests, summaries, {e.path for e in manifests}, set(), units := {}, [])
    assert [o.name for o in objects] == ["b", "a"] and list(units) == ["folder apps"]
    found = run.object_findings(manifests, {e.path for e in manifests}, [], objects)
    assert [(f.rule, f.path, f.line) for f in found] == [("schema-invalid", "apps/list.yaml", 8)]


def test_the_whole_run_is_its_steps_in_order(tmp_path: Path) -> None:
    run = run_over(tree(tmp_path, {"apps/list.yaml": LIST, "apps/dup.yaml": CM.format(name="a")}))
    found = run.findings()
    assert sorted((f.rule, f.path, f.line) for f in found) == [
        ("object-duplicate", "apps/list.yaml", 4), ("schema-invalid", "apps/list.yaml", 8)]
    assert run.stats.objects == 2 and run.stats.manifests == 2
