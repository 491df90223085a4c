"""The real corpora pass the gate's schema, YAML and object checks; broken copies are refused at the right line.

Other rule families (plaintext Secrets, scripts) may refuse these corpora on their own; here we look only at
the gate's own families, as the pusher sees them in the `remote:` lines.
"""

from __future__ import annotations

import re

import pytest
from conftest import CORPUS, Clone, Server, git, need_corpus

GATE_FAMILIES = re.compile(r"(?:error|warning) \[(?:yaml-|schema-|object-|kustomize-|file-|template-)")


def gate_errors(lines: list[str]) -> list[str]:
    return [line for line in lines if GATE_FAMILIES.search(line) and " error [" in line]


@pytest.mark.parametrize("name", ["kube-prometheus", "microservices-demo", "flux2-kustomize-helm-example"])
def test_corpus_passes_gate_checks(server: Server, clone: Clone, name: str) -> None:
    need_corpus()
    clone.copy_tree(CORPUS / name)
    clone.commit(f"import {name}")
    push = clone.push()
    lines = push.remote_lines()
    assert gate_errors(lines) == []
    assert any(re.search(r"refs/heads/main at \w+: \d+ files, \d+ manifests, \d+ objects", line) for line in lines)


def _kube_prometheus(server: Server, clone: Clone) -> str:
    need_corpus()
    clone.copy_tree(CORPUS / "kube-prometheus")
    return clone.commit("import")


def test_broken_field_in_corpus_is_refused_at_its_line(server: Server, clone: Clone) -> None:
    _kube_prometheus(server, clone)
    path = clone.path / "manifests" / "prometheusOperator-deployment.yaml"
    text = path.read_text()
    line = text.splitlines().index("  replicas: 1") + 1
    path.write_text(text.replace("  replicas: 1\n", "  replicas: one\n"))
    clone.commit("break replicas")
    push = clone.push()
    assert not push.accepted
    expected = (f"manifests/prometheusOperator-deployment.yaml:{line}:13: error [schema-invalid] "
                "deployment.apps/prometheus-operator: spec.replicas: 'one' is not of type integer")
    assert expected in push.remote_lines()
    assert server.rev() is None


def test_unknown_field_points_at_the_field(server: Server, clone: Clone) -> None:
    _kube_prometheus(server, clone)
    path = clone.path / "manifests" / "grafana-service.yaml"
    text = path.read_text()
    text = text.replace("spec:\n", "spec:\n  portz: []\n", 1)
    path.write_text(text)
    line = text.splitlines().index("  portz: []") + 1
    clone.commit()
    push = clone.push()
    assert (f"manifests/grafana-service.yaml:{line}:3: error [schema-invalid] service/grafana: spec.portz: "
            "unknown field 'portz'") in push.remote_lines()


def test_duplicate_object_in_kustomization_names_both_places(server: Server, clone: Clone) -> None:
    _kube_prometheus(server, clone)
    src = clone.path / "manifests" / "grafana-service.yaml"
    (clone.path / "manifests" / "grafana-service-copy.yaml").write_text(src.read_text())
    k = clone.path / "kustomization.yaml"
    k.write_text(k.read_text() + "- ./manifests/grafana-service-copy.yaml\n")
    clone.commit("duplicate")
    push = clone.push()
    assert not push.accepted
    lines = push.remote_lines()
    dup = [line for line in lines if "[object-duplicate]" in line]
    assert len(dup) == 1
    assert "grafana-service" in dup[0] and "is already defined at manifests/grafana-service" in dup[0]


def test_bad_yaml_line_is_refused_at_that_line(server: Server, clone: Clone) -> None:
    _kube_prometheus(server, clone)
    path = clone.path / "manifests" / "alertmanager-service.yaml"
    lines = path.read_text().splitlines()
    lines.insert(3, "  labels: [unclosed")
    path.write_text("\n".join(lines) + "\n")
    clone.commit()
    push = clone.push()
    assert not push.accepted
    bad = [line for line in push.remote_lines() if "[yaml-syntax]" in line]
    assert len(bad) == 1 and bad[0].startswith("manifests/alertmanager-service.yaml:5:")


def test_microservices_kustomize_overlay_error_points_to_kustomization(server: Server, clone: Clone) -> None:
    need_corpus()
    clone.copy_tree(CORPUS / "microservices-demo")
    k = clone.path / "kustomize" / "tests" / "spanner-with-all-components" / "kustomization.yaml"
    k.write_text(k.read_text().replace("../../components/spanner", "../../components/spanner-missing"))
    clone.commit()
    push = clone.push()
    assert not push.accepted
    lines = [line for line in push.remote_lines() if "[kustomize-build]" in line]
    assert lines and lines[0].startswith("kustomize/tests/spanner-with-all-components/kustomization.yaml:")
    assert "'../../components/spanner-missing' does not exist in this commit" in lines[0]
    git("status", cwd=clone.path)
