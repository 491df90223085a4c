"""The rule catalogue: every rule is complete, `rules` and `explain` show it, docs/rules.md's table is generated."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT, run_suite

from gitops_hooks.findings import Severity
from gitops_hooks.rulebook import register_all as catalogue

FAMILIES_WITH_EXAMPLES = {"imperative", "live-state", "secrets", "deprecations", "policy"}


def test_every_rule_is_complete() -> None:
    rules = catalogue()
    assert len(rules) >= 30
    for r in rules.values():
        assert r.id and r.id == r.id.lower() and " " not in r.id, r.id
        assert r.family and isinstance(r.severity, Severity)
        assert r.summary.endswith((".", ")")) and "\n" not in r.summary, r.id
        assert len(r.explanation) > 40, r.id
    for r in rules.values():
        if r.family in FAMILIES_WITH_EXAMPLES and r.id != "policy-loosening-ignored":
            assert r.example.strip(), f"{r.id} has no compliant example"


def test_rules_command_lists_every_rule() -> None:
    proc = run_suite("rules")
    assert proc.returncode == 0, proc.stderr
    listed = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    assert listed == set(catalogue())
    assert any(line.split()[:3] == ["imperative-hook", "imperative", "warning"] for line in proc.stdout.splitlines())


def test_explain_prints_explanation_and_compliant_example() -> None:
    proc = run_suite("explain", "secret-plaintext")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("secret-plaintext (secrets, default error)\n\nA Secret with data or stringData")
    assert "SealedSecret or an ExternalSecret" in out
    assert "Compliant example:\n\n    apiVersion: v1\n    kind: Secret\n" in out
    missing = run_suite("explain", "no-such-rule")
    assert missing.returncode == 2
    assert "no rule 'no-such-rule'; `gitops-hooks rules` lists them" in missing.stderr


def _generated() -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "rules_table.py")],
                          capture_output=True, text=True, check=True)
    return proc.stdout


def test_generator_prints_one_row_per_rule() -> None:
    table = _generated()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) == len([r for r in catalogue().values() if r.source == "built-in"])
    assert "| `secret-plaintext` | secrets | error | A Secret with data or stringData that is not SOPS-encrypted. |" \
        in rows


def test_docs_rules_table_is_generated_from_the_code() -> None:
    doc = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    start, end = "<!-- rules:start -->", "<!-- rules:end -->"
    assert start in doc and end in doc, \
        "docs/rules.md needs the rule table between <!-- rules:start --> and <!-- rules:end -->: " \
        "paste the output of scripts/rules_table.py"
    block = doc.split(start, 1)[1].split(end, 1)[0].strip("\n") + "\n"
    assert block == _generated(), "docs/rules.md's rule table is out of date: regenerate it with scripts/rules_table.py"
    check = subprocess.run([sys.executable, str(ROOT / "scripts" / "rules_table.py"), "--check"],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr


GATED_EXAMPLES = """\
apiVersion: v1
kind: Secret
metadata: {name: db, namespace: apps}
stringData: {password: hunter2-is-not-a-password}
---
apiVersion: batch/v1
kind: Job
metadata: {name: deploy, namespace: apps}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - {name: k, image: bitnami/kubectl, command: [kubectl, apply, -f, /manifests]}
---
apiVersion: policy/v1beta1
kind: PodDisruptionBudget
metadata: {name: web, namespace: apps}
spec: {minAvailable: 1}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: apps, uid: 1234, annotations: {helm.sh/hook: pre-install}}
data: {mode: fast}
"""


def test_document_checks_skipped_for_a_kind_would_have_found_nothing() -> None:
    """The pipeline calls only the document checks that can find something in an object's kind (and in
    this run): over the corpus and examples that trip the gated checks, all checks and the chosen ones
    give the same findings."""
    from conftest import CORPUS, need_corpus

    from gitops_hooks import config, pipeline
    from gitops_hooks.checks import DOCUMENT_CHECKS, document_checks
    from gitops_hooks.documents import parse

    need_corpus()
    ctx = pipeline.make_context(config.Policy(config.checked({}, "test")))
    skipped = {c.__name__ for c in DOCUMENT_CHECKS} - {c.__name__ for c in document_checks("ConfigMap", ctx)}
    assert skipped == {"plaintext_secret", "imperative_workloads", "deprecated_apis", "admin_cel_rules",
                       "plugin_documents"}
    files = [("examples.yaml", GATED_EXAMPLES.encode())]
    files += [(str(p), p.read_bytes()) for p in sorted(CORPUS.rglob("*.y*ml")) if p.is_file()]
    rules, objects = set(), 0
    for path, data in files:
        for doc in parse(path, data).documents:
            if not doc.is_object:
                continue
            objects += 1
            every = sorted(f for c in DOCUMENT_CHECKS for f in c(doc, ctx))
            chosen = sorted(f for c in document_checks(doc.kind, ctx) for f in c(doc, ctx))
            assert chosen == every, (path, doc.line)
            rules |= {f.rule for f in every}
    assert {"secret-plaintext", "imperative-workload", "api-removed"} <= rules, rules
    assert objects > 250
