"""Reconciliation under faults and with operator backends: kill -9 mid-apply, then recovery; Flux and Argo CD
triggers. Real pushes and real processes against the loopback API server."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import EXE, Clone, Server, run_suite
from kubeapi import KubeAPI
from test_reconcile_e2e import TOKEN, base_tree, history, note


@pytest.fixture
def kube() -> Iterator[KubeAPI]:
    api = KubeAPI(token=TOKEN).start()
    yield api
    api.stop()


def add_env(server: Server, kube: KubeAPI, tmp_path: Path, *extra: str) -> None:
    kc = kube.write_kubeconfig(tmp_path / "kubeconfig", context="prod")
    proc = run_suite("env", "add", str(server.path), "prod", "--ref", "main", "--path", "clusters/prod",
                     "--kubeconfig", str(kc), "--context", "prod", "--namespace", "apps",
                     "--var", "CLUSTER_NAME=prod-eu", "--health-timeout", "5", *extra)
    assert proc.returncode == 0, proc.stderr


def test_kill_9_mid_reconcile_leaves_a_pending_record_that_the_next_run_completes(
        server: Server, clone: Clone, kube: KubeAPI, tmp_path: Path) -> None:
    add_env(server, kube, tmp_path)
    base_tree(clone)
    for i in range(30):
        clone.write(f"clusters/prod/cm{i:02}.yaml", f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm{i:02}\n")
    sha = clone.commit("many")
    kube.down()
    assert clone.push().accepted  # recorded as failed: the cluster is down
    assert "pending:" in history(server)
    kube.up()
    kube.slow(0.1)
    proc = subprocess.Popen([EXE, "reconcile", "prod", "--repo", str(server.path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while not any(m == "PATCH" and "/configmaps/" in p for m, p in list(kube.requests)):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kube.slow(0)
    assert "pending:" in history(server)  # still pending after the crash
    assert len(kube.names("ConfigMap")) < 31  # it did not finish
    done = run_suite("reconcile", "prod", "--repo", str(server.path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(kube.names("ConfigMap")) == 31
    text = history(server)
    assert "pending:" not in text and "applied" in text
    assert "result: applied" in note(server, sha)


FLUX_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "kustomizations.kustomize.toolkit.fluxcd.io"},
    "spec": {"group": "kustomize.toolkit.fluxcd.io", "scope": "Namespaced",
             "names": {"plural": "kustomizations", "kind": "Kustomization"},
             "versions": [{"name": "v1", "served": True, "storage": True}]},
}


def test_flux_backend_annotates_the_kustomization(server: Server, clone: Clone, kube: KubeAPI, tmp_path: Path) -> None:
    kube.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "flux-system"}})
    kube.put(FLUX_CRD)
    deadline = time.monotonic() + 5
    while kube.object("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "x", "flux-system") is None:
        try:
            kube.put({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                      "metadata": {"name": "apps", "namespace": "flux-system"}, "spec": {"path": "./clusters/prod"}},
                     manager="flux")
            break
        except StopIteration:  # not served until the CRD is established
            assert time.monotonic() < deadline
            time.sleep(0.1)
    add_env(server, kube, tmp_path, "--backend", "flux", "--flux", "Kustomization/flux-system/apps")
    base_tree(clone)
    sha = clone.commit("first")
    push = clone.push()
    lines = push.remote_lines()
    assert any(line.startswith("kustomization.kustomize.toolkit.fluxcd.io/apps triggered: "
                               "reconcile.fluxcd.io/requestedAt=") for line in lines), push.output
    obj = kube.object("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "apps", "flux-system")
    assert obj is not None and "reconcile.fluxcd.io/requestedAt" in obj["metadata"]["annotations"]
    assert kube.object("apps/v1", "Deployment", "web", "apps") is None  # Flux applies, not us
    assert "result: triggered" in note(server, sha)


def test_secret_values_and_credentials_stay_out_of_output_and_notes(server: Server, clone: Clone, kube: KubeAPI,
                                                                    tmp_path: Path) -> None:
    server.configure("version: 1\nrules:\n  secret-plaintext: off\n")  # this test is about what we print
    add_env(server, kube, tmp_path)
    base_tree(clone)
    clone.write("clusters/prod/secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n"
                "stringData:\n  password: s3cr3t-pa55word\n")
    kube.inject("deny", 1, methods=("PATCH",), path="/secrets/db")
    sha = clone.commit("secret")
    push = clone.push()
    failed = [line for line in push.remote_lines() if line.startswith("secret/db failed")]
    assert failed and 'admission webhook "deny.example.com" denied the request' in failed[0], push.output
    assert "(redacted)" in failed[0]
    logs = "".join(p.read_bytes().decode("utf-8", "replace") for p in (server.path / "gitops-hooks").rglob("*") if p.is_file())
    for text in (push.output, note(server, sha), history(server), logs):
        assert "s3cr3t-pa55word" not in text and TOKEN not in text


def test_flux_receiver_is_called_with_a_signed_body(server: Server, clone: Clone, tmp_path: Path) -> None:
    import hashlib
    import hmac
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    token = b"receiver-token-123"
    calls: list[tuple[str, bool]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            want = "sha256=" + hmac.new(token, body, hashlib.sha256).hexdigest()
            calls.append((self.path, hmac.compare_digest(want, self.headers.get("X-Signature", ""))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        (tmp_path / "token").write_bytes(token + b"\n")
        server.configure("version: 1\nenvironments:\n  prod:\n    ref: main\n    path: clusters/prod\n"
                         "    backend: flux\n    flux:\n"
                         f"      receiver_url: http://127.0.0.1:{httpd.server_address[1]}/hook/abc123secretdigest\n"
                         f"      token_file: {tmp_path / 'token'}\n")
        base_tree(clone)
        sha = clone.commit("first")
        push = clone.push()
        assert f"receiver 127.0.0.1:{httpd.server_address[1]} triggered: Flux Receiver called (HTTP 200)" in \
            push.remote_lines(), push.output
        assert calls == [("/hook/abc123secretdigest", True)]
        for text in (push.output, note(server, sha)):
            assert "abc123secretdigest" not in text and "receiver-token-123" not in text
    finally:
        httpd.shutdown()


def test_audit_notes_are_never_half_written_under_kill_9(
        server: Server, clone: Clone, kube: KubeAPI, tmp_path: Path) -> None:
    """SIGKILL at random moments of reconciles (apply, note writing): every note that exists is whole YAML
    with whole records, and the repository stays sound."""
    import random

    import yaml

    add_env(server, kube, tmp_path)
    base_tree(clone)
    for i in range(10):
        clone.write(f"clusters/prod/cm{i:02}.yaml", f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm{i:02}\n")
    sha = clone.commit("ten")
    assert clone.push().accepted
    rng = random.Random(7)
    for _ in range(10):  # every run rewrites the note (a quiet run refreshes its `checked` time)
        proc = subprocess.Popen([EXE, "reconcile", "prod", "--repo", str(server.path)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(rng.uniform(0.0, 0.6))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        listed = subprocess.run(["git", "--git-dir", str(server.path), "notes", "--ref=refs/notes/gitops", "list"],
                                capture_output=True, text=True, check=True).stdout.split()
        for note_id in listed[::2]:
            text = subprocess.run(["git", "--git-dir", str(server.path), "cat-file", "-p", note_id],
                                  capture_output=True, text=True, check=True).stdout
            data = yaml.safe_load(text)
            assert isinstance(data, dict) and isinstance(data.get("reconciles"), list), text
            for record in data["reconciles"]:
                assert {"environment", "commit", "result"} <= set(record), record
    fsck = subprocess.run(["git", "--git-dir", str(server.path), "fsck", "--no-dangling"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr
    done = run_suite("reconcile", "prod", "--repo", str(server.path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "result: applied" in note(server, sha)
