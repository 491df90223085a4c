"""The manifests that run the webhook service in a cluster pass this project's own gate: pushed with real
git into a bare repository guarded by `gitops-hooks install`, with the strictest severities."""

from __future__ import annotations

from pathlib import Path

import yaml
from conftest import ROOT, Clone, Server

from gitops_hooks.hosted.config import load


def test_deploy_manifests_pass_the_gate(server: Server, clone: Clone) -> None:
    server.configure("kubernetes_version: '1.29'\n"
                     "rules: {secret-plaintext: error, secret-value: error, api-deprecated: error, "
                     "imperative-workload: error}\n")
    clone.copy_tree(ROOT / "deploy", "deploy")
    clone.commit("the webhook service")
    push = clone.push()
    assert push.accepted, push.output
    assert any("6 objects: 0 errors, 0 warnings" in line for line in push.remote_lines()), push.output


def test_the_deployed_configuration_is_a_valid_serve_configuration(tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "configmap.yaml").read_text()))
    text = docs[0]["data"]["serve.yaml"]
    for name in ("webhook-secret", "token"):
        (tmp_path / name).write_text("x\n")
    config = tmp_path / "serve.yaml"
    config.write_text(text.replace("/etc/gitops-hooks/credentials/", str(tmp_path) + "/"))
    loaded = load(config)
    assert (loaded.host, loaded.port, str(loaded.state_dir)) == ("0.0.0.0", 8080, "/var/lib/gitops-hooks")
    mounts = yaml.safe_load((ROOT / "deploy" / "deployment.yaml").read_text())["spec"]["template"]["spec"]
    paths = {m["mountPath"] for m in mounts["containers"][0]["volumeMounts"]}
    assert {"/etc/gitops-hooks/serve.yaml", "/etc/gitops-hooks/credentials", "/var/lib/gitops-hooks"} <= paths
