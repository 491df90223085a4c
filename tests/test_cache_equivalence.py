"""Correctness first: what the gate reports on a busy server equals what a cold gate reports.

A real bare repository (the "warm" server) receives a series of real pushes: a corpus (generated objects
in three folders, kube-prometheus custom resources with one of their CRDs, a kustomize root) and then
random but seeded edits: fields broken and fixed again, files deleted, renamed and moved to another
folder, a file copied beside itself (the same blob at two paths), the CRD changed under unchanged custom
resources and changed back, the kustomization changed under unchanged resources, the server's
configuration changed (a rule's severity, an administrator's CEL rule, the Kubernetes version) and
changed back, and a push that
touches no manifest. Before each push, a "cold" twin is made: a bare clone of the warm server (same refs, same
objects, none of the warm server's own files such as a result cache), with the suite installed by
`gitops-hooks install` and the same configuration. The same commit is pushed to both; the test asserts
that the pusher sees the same findings (every `file:line:column: severity [rule] message` line and its
hint, in order), the same verdict and the same exit status.

The cold push runs with GITOPS_HOOKS_NO_CACHE=1 in its environment (git passes it on to the hook). The
result cache is expected to honour that variable by neither reading nor writing a cache; the twin has no
cache anyway, so the comparison holds even if the variable is ignored.

Before a cache exists the test still means something: the gate's findings depend only on the pushed
commit and the configuration, not on what the server saw before (no state leaks across pushes), and they
follow renames, copies, CRD and configuration changes.
"""

from __future__ import annotations

import random
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import CORPUS, ROOT, Clone, Push, Server, git, need_corpus

sys.path.insert(0, str(ROOT / "bench"))
import make_corpus  # noqa: E402

SEED = 20261126
FINDING = re.compile(r"^\S.*:\d+:\d+: (error|warning|info) \[[a-z0-9-]+\] ")
CONFIG = "version: 1\nreport:\n  max_findings: 100000\n"
STRICTER = CONFIG + """\
rules:
  schema-unknown-kind: error
cel_rules:
  - id: replicas-at-least-two
    expression: "!has(object.spec.replicas) || object.spec.replicas >= 2"
    message: Deployments run at least two replicas
    severity: warning
    match: {kinds: [apps/Deployment]}
"""
OLDER = CONFIG + 'kubernetes_version: "1.30"\n'
KUSTOMIZATION = "shop/kustomization.yaml"
CRD = "monitoring/0prometheusruleCustomResourceDefinition.yaml"
KUBE_PROMETHEUS_FILES = (
    "setup/0prometheusruleCustomResourceDefinition.yaml", "alertmanager-prometheusRule.yaml",
    "grafana-prometheusRule.yaml", "kubeStateMetrics-prometheusRule.yaml", "alertmanager-serviceMonitor.yaml",
    "grafana-serviceMonitor.yaml", "prometheusOperator-deployment.yaml", "prometheusOperator-service.yaml",
)

# Text edits that make a manifest wrong, each applicable when its needle occurs in the file.
BREAKS: tuple[tuple[str, str, str], ...] = (
    ("replicas", r"\n(\s+)replicas: \d+\n", r"\n\1replicas: many\n"),
    ("api-version", r"\napiVersion: apps/v1\n", "\napiVersion: apps/v1beta9\n"),
    ("unknown-field", r"\nmetadata:\n", "\nmetadata:\n  colour: blue\n"),
    ("port-type", r"(\n\s+- ?containerPort|\n\s+port): (\d+)\n", r'\1: "\2"\n'),
    ("yaml-syntax", r"\Z", "\nbroken: [unclosed\n"),
)


@dataclass
class Corpus:
    """The clone's files and what the test did to them."""

    clone: Clone
    rng: random.Random
    broken: dict[str, str] = field(default_factory=dict)  # path → text before it was broken
    copies: list[str] = field(default_factory=list)

    def files(self) -> list[str]:
        out = git("ls-files", cwd=self.clone.path).stdout.split()
        return sorted(p for p in out if p.endswith(".yaml") and p != CRD)

    def text(self, rel: str) -> str:
        return (self.clone.path / rel).read_text(encoding="utf-8")

    def break_one(self) -> None:
        candidates = [p for p in self.files() if p not in self.broken]
        for rel in self.rng.sample(candidates, len(candidates)):
            text = self.text(rel)
            usable = [b for b in BREAKS if re.search(b[1], text)]
            if usable:
                _, pattern, replacement = self.rng.choice(usable)
                self.broken[rel] = text
                self.clone.write(rel, re.sub(pattern, replacement, text, count=1))
                return
        raise AssertionError("no file left to break")

    def fix_one(self) -> None:
        if self.broken:
            rel = self.rng.choice(sorted(self.broken))
            self.clone.write(rel, self.broken.pop(rel))

    def fix_all(self) -> None:
        while self.broken:
            self.fix_one()

    def movable(self) -> list[str]:
        """Files that may be renamed or deleted: not the kustomize root's, so that it keeps rendering."""
        return [p for p in self.files() if not p.startswith("shop/") and p not in self.copies]

    def rename(self, other_folder: bool) -> None:
        """Rename a broken file if there is one (its findings must follow it), else any file."""
        rel = self.rng.choice(sorted(set(self.broken) & set(self.movable())) or self.movable())
        folder, name = rel.rsplit("/", 1)
        folders = sorted({p.rsplit("/", 1)[0] for p in self.files()} - {folder})
        new = f"{self.rng.choice(folders)}/{name}" if other_folder else f"{folder}/renamed-{name}"
        git("mv", rel, new, cwd=self.clone.path)
        if rel in self.broken:
            self.broken[new] = self.broken.pop(rel)

    def delete(self) -> None:
        rel = self.rng.choice(self.movable())
        self.clone.remove(rel)
        self.broken.pop(rel, None)

    def copy_beside(self) -> None:
        rel = self.rng.choice([p for p in self.files() if p.startswith("team-")])
        folder, name = rel.rsplit("/", 1)
        self.clone.write(f"{folder}/copy-of-{name}", self.text(rel))
        self.copies.append(f"{folder}/copy-of-{name}")

    def remove_copies(self) -> None:
        for rel in self.copies:
            self.clone.remove(rel)
        self.copies.clear()

    def crd_kind(self, old: str, new: str) -> None:
        text = self.text(CRD)
        assert f"\n    kind: {old}\n" in text
        self.clone.write(CRD, text.replace(f"\n    kind: {old}\n", f"\n    kind: {new}\n", 1))

    def name_prefix(self, prefix: str) -> None:
        """Change the kustomization (if it is still there): every object it renders changes."""
        if (self.clone.path / KUSTOMIZATION).exists():
            self.clone.write(KUSTOMIZATION, self.text(KUSTOMIZATION) + f"namePrefix: {prefix}\n")

    def drop_prefixes(self) -> None:
        """The kustomization as it came: resources only, read directly again (no kubectl render)."""
        if (self.clone.path / KUSTOMIZATION).exists():
            text = self.text(KUSTOMIZATION)
            self.clone.write(KUSTOMIZATION, "".join(line for line in text.splitlines(keepends=True)
                                                    if not line.startswith("namePrefix:")))

    def readme(self, words: str) -> None:
        self.clone.write("README.md", words + "\n")


def write_corpus(clone: Clone) -> None:
    pool = make_corpus.load_pool(CORPUS)
    for rel, data in make_corpus.build(pool, 300, files_per_folder=20).items():
        clone.write(rel, data)
    source = CORPUS / "kube-prometheus" / "manifests"
    for rel in KUBE_PROMETHEUS_FILES:
        clone.write(f"monitoring/{Path(rel).name}", (source / rel).read_bytes())
    clone.copy_tree(CORPUS / "microservices-demo" / "kustomize" / "base", "shop")  # a kustomize root


@dataclass(frozen=True)
class Step:
    name: str
    edit: Callable[[Corpus], None]
    config: str = CONFIG


def _three_broken(c: Corpus) -> None:
    for _ in range(3):
        c.break_one()


def _break_fix_rename(c: Corpus) -> None:
    c.break_one()
    c.fix_one()
    c.rename(other_folder=False)


def _crd_copy_delete_prefix(c: Corpus) -> None:
    c.crd_kind("PrometheusRule", "PrometheusRuleV2")
    c.copy_beside()
    c.delete()
    c.name_prefix("v2-")


def _renames_fix_break(c: Corpus) -> None:
    c.rename(other_folder=True)
    c.rename(other_folder=False)
    c.fix_one()
    c.break_one()


def _restore_all(c: Corpus) -> None:
    c.crd_kind("PrometheusRuleV2", "PrometheusRule")
    c.fix_all()
    c.remove_copies()
    c.delete()


STEPS = (
    Step("the corpus", lambda c: None),
    Step("three fields broken", _three_broken),
    Step("break, fix, rename; a stricter server", _break_fix_rename, STRICTER),
    Step("CRD kind changed, a file copied beside itself, a file deleted, a kustomize namePrefix",
         _crd_copy_delete_prefix, STRICTER),
    Step("two renames (one to another folder), fix one, break one; an older Kubernetes", _renames_fix_break,
         OLDER),
    Step("CRD restored, everything fixed, the copy removed, a delete; the server as before", _restore_all),
    Step("no manifest changed", lambda c: c.readme("only words")),
    # Without a kubectl render the gate server may serve a push that changes no manifest from its memo
    # of the last run on the same manifests (and the same tree before, and the same configuration).
    Step("the kustomization read directly again, a field broken", lambda c: (c.drop_prefixes(), c.break_one())),
    Step("no manifest changed, after a push that changed some", lambda c: c.readme("more words")),
    Step("no manifest changed, twice", lambda c: c.readme("still more words")),
    Step("no manifest changed; a stricter server", lambda c: c.readme("stricter"), STRICTER),
    Step("no manifest changed; a stricter server, twice", lambda c: c.readme("stricter still"), STRICTER),
)


def cold_twin(server: Server, path: Path) -> Server:
    """A bare copy of the server's refs and objects, none of its other files, the suite freshly installed."""
    git("clone", "--bare", "--quiet", str(server.path), str(path))
    shutil.rmtree(path / "hooks")
    twin = Server(path)
    twin.configure(server.config_path.read_text(encoding="utf-8"))
    return twin


def push_to(clone: Clone, target: Server) -> Push:
    proc = git("push", "--porcelain", str(target.path), "HEAD:refs/heads/main", cwd=clone.path, check=False)
    return Push(proc.returncode, proc.stderr + proc.stdout)


def seen(push: Push) -> list[str]:
    """Findings with their hints, in the order the pusher sees them, and the verdict."""
    lines = push.remote_lines()
    out = []
    for i, line in enumerate(lines):
        if FINDING.match(line):
            out.append(line)
            out.extend(h for h in lines[i + 1:i + 2] if h.startswith("    hint: "))
        elif line.startswith(("gitops-hooks: accepted", "gitops-hooks: push refused")):
            out.append(line)
    return out


def test_gate_on_a_busy_server_reports_what_a_cold_gate_reports(
    server: Server, clone: Clone, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    need_corpus()
    corpus = Corpus(clone, random.Random(SEED))
    write_corpus(clone)
    verdicts: list[bool] = []
    rules: set[str] = set()
    histories: list[list[str]] = []
    for number, step in enumerate(STEPS):
        step.edit(corpus)
        sha = clone.commit(step.name)
        server.configure(step.config)
        twin = cold_twin(server, tmp_path / f"cold-{number}.git")
        warm = push_to(clone, server)
        with monkeypatch.context() as env:
            env.setenv("GITOPS_HOOKS_NO_CACHE", "1")
            cold = push_to(clone, twin)
        where = f"push {number} ({step.name}):\nwarm:\n{warm.output[-4000:]}\ncold:\n{cold.output[-4000:]}"
        assert "internal error" not in warm.output + cold.output, where
        assert any(" objects: " in line for line in warm.remote_lines()), where
        assert seen(warm) == seen(cold), where
        assert warm.accepted == cold.accepted, where
        assert server.rev() == twin.rev(), where
        assert (server.rev() == sha) == warm.accepted, where
        verdicts.append(warm.accepted)
        rules.update(m.group(0).rsplit("[", 1)[1].rstrip("] ") for m in map(FINDING.match, seen(warm)) if m)
        histories.append(seen(warm))
    # The series exercised the gate: some pushes refused, some accepted, findings of several rules.
    assert True in verdicts and False in verdicts, verdicts
    assert {"schema-invalid", "schema-unknown-kind", "object-duplicate", "replicas-at-least-two"} <= rules, rules
    assert len({tuple(h) for h in histories}) >= 5
