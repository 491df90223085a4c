"""Rule plugins: a real distribution installed with pip, seen by the hook process through its entry point."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, Clone, Server, run_suite

PACKAGE = ROOT / "tests" / "data" / "plugin-pkg"

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: apps
  annotations:
    testplugin.gitops-hooks.invalid/check: "{mark}"
{owner}data: {{a: b}}
"""


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """pip installs the test plugin into a folder of its own (so other test runs never see it)."""
    work = tmp_path_factory.mktemp("plugin")
    source = work / "src"
    shutil.copytree(PACKAGE, source)
    target = work / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                           str(source)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"pip could not build the test plugin: {proc.stderr.strip().splitlines()[-1:]}")
    yield target
    proc = subprocess.run([sys.executable, "-m", "pip", "uninstall", "--yes", "--quiet", "gitops-hooks-testplugin"],
                          capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(target)})
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def with_plugin(plugin_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # git passes its environment to the hooks: the pre-receive process imports from this path.
    monkeypatch.setenv("PYTHONPATH", str(plugin_path))
    return plugin_path


def configmap(mark: str, owner: str = "") -> str:
    return CONFIGMAP.format(mark=mark, owner=f"    owner: {owner}\n" if owner else "")


def test_plugin_rule_refuses_and_accepts(with_plugin: Path, server: Server, clone: Clone) -> None:
    clone.write("apps/settings.yaml", configmap("true"))
    clone.commit("no owner")
    push = clone.push()
    assert not push.accepted
    assert "apps/settings.yaml:7:5: error [testplugin-owner] configmap/settings: no owner annotation" in push.remote_lines()

    clone.write("apps/settings.yaml", configmap("true", owner="team-a"))
    sha = clone.commit("owner")
    push = clone.push()
    assert push.accepted, push.output
    assert server.rev() == sha


def test_plugin_that_raises_refuses_the_push_naming_the_plugin(with_plugin: Path, server: Server, clone: Clone) -> None:
    clone.write("apps/settings.yaml", configmap("raise", owner="team-a"))
    clone.commit("make the plugin fail")
    push = clone.push()
    assert not push.accepted
    assert ("apps/settings.yaml:1:1: error [plugin-failed] plugin 'owner-annotation' (gitops-hooks-testplugin 1.0.0) "
            "raised on configmap/settings: RuntimeError: the plugin was asked to fail") in push.remote_lines()
    assert server.rev() is None


def test_plugin_rules_are_listed_and_explained(with_plugin: Path) -> None:
    listed = run_suite("rules")
    row = next(line for line in listed.stdout.splitlines() if line.startswith("testplugin-owner"))
    assert row.split()[1:3] == ["testplugin", "error"]
    assert row.endswith("Objects that opt in name their owner. [plugin owner-annotation (gitops-hooks-testplugin 1.0.0)]")
    explained = run_suite("explain", "testplugin-owner")
    assert explained.returncode == 0, explained.stderr
    assert "Add the annotation `owner` with the team's name." in explained.stdout
    assert "owner: team-a" in explained.stdout


def test_without_the_plugin_its_rule_is_unknown(server: Server, clone: Clone) -> None:
    assert "testplugin-owner" not in run_suite("rules").stdout
    clone.write("apps/settings.yaml", configmap("raise"))
    clone.commit("plugin not installed")
    assert clone.push().accepted
