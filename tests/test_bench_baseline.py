"""bench/baseline.py, the straightforward Python validator that bench_push.py uses as a probe of the
machine's speed: it must really read and validate, or its time says nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT

SCRIPT = ROOT / "bench" / "baseline.py"

DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: %s
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "nginx:1.27"}]}
"""


def run(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), str(folder), "1.30"], capture_output=True, text=True,
                          check=False)


def test_counts_objects_schema_errors_and_unknown_kinds(tmp_path: Path) -> None:
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "web.yaml").write_text(DEPLOYMENT % "2" + "---\napiVersion: v1\nkind: Service\n"
                                                "metadata: {name: web}\nspec: {ports: [{port: 80}]}\n")
    (tmp_path / "apps" / "broken.yml").write_text(DEPLOYMENT % '"two"')
    (tmp_path / "widget.json").write_text('{"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {}}')
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "hidden.yaml").write_text(DEPLOYMENT % '"hidden"')
    (tmp_path / "notes.txt").write_text("kind: Deployment\n")
    proc = run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "3 files, 4 objects, 1 with schema errors, 1 kinds without a schema\n"


def test_a_file_pyyaml_cannot_read_is_named_and_fails_the_run(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(DEPLOYMENT % "1")
    (tmp_path / "crd.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n  op: =\n")
    proc = run(tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        "2 files, 1 objects, 0 with schema errors, 0 kinds without a schema",
        "cannot read crd.yaml: could not determine a constructor for the tag 'tag:yaml.org,2002:value'",
    ]
