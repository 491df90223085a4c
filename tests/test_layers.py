"""The package's import graph: no cycle, lazy imports inside functions included (import-linter's
contracts in .importlinter keep the layers; .ci/run runs them)."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_the_package_has_no_import_cycle() -> None:
    for args in ([], ["--units"]):
        proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "import_cycles.py"), *args],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert " 0 in 0 cycle(s)" in proc.stdout


def test_the_bottom_layer_knows_only_what_was_registered() -> None:
    """findings imports nothing above it; the entry points assemble the catalogue (rulebook)."""
    code = ("import sys; import gitops_hooks.findings as f; "
            "assert 'gitops_hooks.checks' not in sys.modules and f.catalogue() == {}, f.catalogue(); "
            "from gitops_hooks.rulebook import register_all; r = register_all(); "
            "assert {'schema-invalid', 'kubeconform-missing', 'reconcile-desired', 'yaml-not-mapping'} <= set(r); "
            "print(len(r))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 30
