"""The real corpora through the real gate: refused for exactly the imperative or secret content they hold.

Each test pushes a copy of a corpus in ../shared/corpus with real `git push` into a bare repository with
the hooks installed, and checks the whole set of errors and warnings the pusher sees.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from conftest import CORPUS, Clone, Push, Server, git, need_corpus

LINE = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<sev>error|warning|info) \[(?P<rule>[^\]]+)\]")

KUBE_PROMETHEUS_SECRETS = {
    "manifests/alertmanager-secret.yaml": "alertmanager-main",
    "manifests/grafana-config.yaml": "grafana-config",
    "manifests/grafana-dashboardDatasources.yaml": "grafana-datasources",
}
MICROSERVICES_SCRIPTS = [
    "kustomize/components/shopping-assistant/scripts/1_deploy_alloydb_infra.sh",
    "kustomize/components/shopping-assistant/scripts/2_create_populate_alloydb_tables.sh",
    "kustomize/components/shopping-assistant/scripts/generate_sql_from_products.py",
]
ISTIO = {("kustomize/components/service-mesh-istio/allow-egress-googleapis.yaml", "schema-unknown-kind"),
         ("kustomize/components/service-mesh-istio/frontend.yaml", "schema-unknown-kind"),
         ("release/istio-manifests.yaml", "schema-unknown-kind")}


def copy_corpus(clone: Clone, name: str) -> None:
    need_corpus()
    clone.copy_tree(CORPUS / name)
    for dirpath, dirnames, filenames in os.walk(clone.path):  # the corpus is read-only; keep exec bits
        if ".git" in Path(dirpath).parts:
            continue
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
    Path(clone.path).chmod(0o755)


def found(push: Push, severity: str) -> list[tuple[str, str]]:
    out = []
    for line in push.remote_lines():
        m = LINE.match(line)
        if m and m.group("sev") == severity:
            out.append((m.group("path"), m.group("rule")))
    return out


def amend(clone: Clone) -> None:
    git("add", "-A", cwd=clone.path)
    git("commit", "--quiet", "--amend", "--no-edit", cwd=clone.path)


def test_flux2_example_is_refused_for_its_script_alone(server: Server, clone: Clone) -> None:
    copy_corpus(clone, "flux2-kustomize-helm-example")
    clone.commit("flux2 example")
    push = clone.push()
    assert not push.accepted
    assert found(push, "error") == [("scripts/validate.sh", "imperative-script")], push.output
    assert ("scripts/validate.sh:1:1: error [imperative-script] scripts/validate.sh is a script (its first line is "
            "'#!/usr/bin/env bash'; its mode is executable (100755); its extension is .sh)") in push.remote_lines()
    clone.remove("scripts/validate.sh")
    amend(clone)
    push = clone.push()
    assert push.accepted, push.output
    assert found(push, "error") == []
    # Flux's ArtifactGenerator kind has no CRD in the repository or in the bundled schemas.
    assert sorted(found(push, "warning")) == [("clusters/production/artifacts.yaml", "schema-unknown-kind"),
                                              ("clusters/staging/artifacts.yaml", "schema-unknown-kind")]


def test_kube_prometheus_is_refused_for_its_three_plaintext_secrets_alone(server: Server, clone: Clone) -> None:
    copy_corpus(clone, "kube-prometheus")
    clone.commit("kube-prometheus")
    push = clone.push()
    assert not push.accepted
    assert sorted(found(push, "error")) == [(p, "secret-plaintext") for p in sorted(KUBE_PROMETHEUS_SECRETS)]
    assert found(push, "warning") == []
    for path, name in KUBE_PROMETHEUS_SECRETS.items():
        assert any(line.startswith(f"{path}:") and f"secret/{name} holds plaintext values: stringData." in line
                   for line in push.remote_lines()), path
    # The team encrypts the three files with SOPS (fake ciphertext of the right structure) and pushes again.
    for path in KUBE_PROMETHEUS_SECRETS:
        sops_encrypt(clone.path / path)
    amend(clone)
    push = clone.push()
    assert push.accepted, push.output
    assert found(push, "error") == [] and found(push, "warning") == []


def test_kube_prometheus_is_accepted_when_the_administrator_allows_those_objects(
        server: Server, clone: Clone) -> None:
    server.configure("allow:\n" + "".join(
        f"  - {{rule: secret-plaintext, kind: Secret, namespace: monitoring, name: {name}}}\n"
        for name in KUBE_PROMETHEUS_SECRETS.values()))
    copy_corpus(clone, "kube-prometheus")
    clone.commit("kube-prometheus")
    push = clone.push()
    assert push.accepted, push.output
    assert found(push, "error") == [] and found(push, "warning") == []


def test_microservices_demo_is_refused_for_its_three_scripts_alone(server: Server, clone: Clone) -> None:
    copy_corpus(clone, "microservices-demo")
    clone.commit("microservices-demo")
    push = clone.push()
    assert not push.accepted
    assert sorted(found(push, "error")) == [(p, "imperative-script") for p in MICROSERVICES_SCRIPTS]
    for path in MICROSERVICES_SCRIPTS:
        clone.remove(path)
    amend(clone)
    push = clone.push()
    assert push.accepted, push.output
    assert found(push, "error") == []
    # Istio's VirtualService and ServiceEntry kinds have no CRD in the repository or in the bundled schemas.
    assert set(found(push, "warning")) == ISTIO
    assert len(found(push, "warning")) == 6


def sops_encrypt(path: Path) -> None:
    """Replace each stringData value by an ENC[...] scalar and add a sops: block, as `sops -e` would."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[str] = []
    in_data = False
    for line in lines:
        if line == "stringData:":
            in_data = True
            out.append(line)
            continue
        if in_data and line.startswith("  ") and not line.startswith("    "):
            key = line.strip().split(":", 1)[0]
            out.append(f"  {key}: ENC[AES256_GCM,data:c2VjcmV0LWNpcGhlcnRleHQ=,iv:aXZpdml2aXZpdml2aXZpdg==,"
                       "tag:dGFndGFndGFndGFndGFndA==,type:str]")
            continue
        if in_data and line.startswith("    "):
            continue  # the rest of a block scalar
        in_data = False
        out.append(line)
    out += ["sops:", "  age:", "    - recipient: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
            "      enc: |", "        -----BEGIN AGE ENCRYPTED FILE-----",
            "        YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IFgyNTUxOSBmYWtlCg==", "        -----END AGE ENCRYPTED FILE-----",
            '  lastmodified: "2024-05-01T10:00:00Z"',
            "  mac: ENC[AES256_GCM,data:bWFjbWFjbWFj,iv:aXZpdml2aXZpdml2aXZpdg==,tag:dGFndGFndGFn,type:str]",
            "  encrypted_regex: ^(data|stringData)$", "  version: 3.9.0"]
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
