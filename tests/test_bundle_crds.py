"""scripts/bundle_crds.py: the committed schemas/crds/ is what the script makes from ../shared/crds."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CRDS, ROOT

SCRIPT = ROOT / "scripts" / "bundle_crds.py"
COMMITTED = ROOT / "schemas" / "crds"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False)


def need_crds() -> None:
    if not CRDS.is_dir():
        pytest.skip(f"the upstream CRDs are not at {CRDS}")


def test_rerunning_the_script_reproduces_the_committed_files(tmp_path: Path) -> None:
    need_crds()
    out = tmp_path / "crds"
    proc = run("--crds", str(CRDS), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    made = {p.name: p.read_bytes() for p in out.iterdir()}
    committed = {p.name: p.read_bytes() for p in COMMITTED.iterdir()}
    assert sorted(made) == sorted(committed)
    assert [n for n in made if made[n] != committed[n]] == []
    assert run("--crds", str(CRDS), "--out", str(COMMITTED), "--check").returncode == 0


def test_check_names_the_files_that_differ(tmp_path: Path) -> None:
    need_crds()
    out = tmp_path / "crds"
    shutil.copytree(COMMITTED, out)
    (out / "gateways.gateway.networking.k8s.io.json").write_text("{}\n")
    (out / "old.example.com.json").write_text("{}\n")
    proc = run("--crds", str(CRDS), "--out", str(out), "--check")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "bundle_crds: stale old.example.com.json",
        "bundle_crds: differs gateways.gateway.networking.k8s.io.json",
    ]


def test_every_served_version_is_indexed_with_its_provenance() -> None:
    need_crds()
    index = json.loads((COMMITTED / "index.json").read_text())["kinds"]
    entries = {(k["group"], k["version"], k["kind"]): k["file"] for k in index}
    # Gateway API: v1 and v1beta1 served for Gateway; TCPRoute's v1alpha2 is not served.
    gateway = entries[("gateway.networking.k8s.io", "v1beta1", "Gateway")]
    assert gateway == "gateways.gateway.networking.k8s.io.json"
    assert ("gateway.networking.k8s.io", "v1alpha2", "TCPRoute") not in entries
    hr = json.loads((COMMITTED / "helmreleases.helm.toolkit.fluxcd.io.json").read_text())
    assert hr["source"] == (
        "fluxcd/helm-controller@0f61a86 config/crd/bases/helm.toolkit.fluxcd.io_helmreleases.yaml"
    )
    assert (hr["group"], hr["kind"], hr["scope"]) == ("helm.toolkit.fluxcd.io", "HelmRelease", "Namespaced")
    assert [v["name"] for v in hr["versions"]] == ["v2"]
    provenance = (COMMITTED / "PROVENANCE.md").read_text()
    assert "Apache-2.0" in provenance and "python scripts/bundle_crds.py" in provenance
    assert "| kubernetes-sigs/gateway-api | `config/crd/standard` | 4564255ac |" in provenance


def test_a_file_without_provenance_is_refused(tmp_path: Path) -> None:
    need_crds()
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(CRDS / "bitnami.com_sealedsecrets.yaml", src)
    shutil.copy(CRDS / "bitnami.com_sealedsecrets.yaml", src / "example.com_widgets.yaml")
    (src / "README.md").write_text(
        "| files | repository and folder | commit |\n| --- | --- | --- |\n"
        "| `bitnami.com_*` | bitnami-labs/sealed-secrets `helm/sealed-secrets/crds` | 86671a88 |\n"
    )
    proc = run("--crds", str(src), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "bundle_crds: example.com_widgets.yaml: 0 rows of the provenance table match this file "
        "(exactly one must say where it comes from)"
    )
    assert not (tmp_path / "out").exists()
