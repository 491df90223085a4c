"""What the gate reads from a tree: kustomizations, charts, links, submodules and hostile files, via real pushes."""

from __future__ import annotations

import os

from conftest import Clone, Server, git
from test_gate_e2e import DEPLOYMENT

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n"


def lines_with(push_lines: list[str], rule: str) -> list[str]:
    return [line for line in push_lines if f"[{rule}]" in line]


def test_kustomization_with_patches_is_rendered_and_patch_files_not_checked_alone(server: Server, clone: Clone) -> None:
    clone.write("base/deploy.yaml", DEPLOYMENT)
    clone.write("base/kustomization.yaml", "resources: [deploy.yaml]\n")
    clone.write("prod/kustomization.yaml", "resources: [../base]\npatches:\n  - path: replicas.yaml\n")
    # A strategic-merge patch is not a whole object: alone it would fail the schema (no selector, template).
    clone.write("prod/replicas.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: apps\nspec:\n  replicas: 5\n")
    clone.commit()
    push = clone.push()
    assert push.accepted, push.output


def test_rendered_error_points_back_to_source_file(server: Server, clone: Clone) -> None:
    clone.write("base/deploy.yaml", DEPLOYMENT.replace("replicas: 2", "replicas: 2\n  paused: maybe"))
    clone.write("base/kustomization.yaml", "resources: [deploy.yaml]\n")
    clone.write("prod/kustomization.yaml", "resources: [../base]\nnamePrefix: prod-\n")
    clone.commit()
    push = clone.push()
    assert not push.accepted
    found = lines_with(push.remote_lines(), "schema-invalid")
    assert found == [
        "base/deploy.yaml:8:11: error [schema-invalid] deployment.apps/prod-web: spec.paused: 'maybe' is not of type boolean"]


def test_remote_resources_and_helm_inflation_are_refused(server: Server, clone: Clone) -> None:
    clone.write("a/kustomization.yaml", "resources:\n  - https://github.com/example/repo//base?ref=v1\n")
    clone.write("b/kustomization.yaml", "helmCharts:\n  - name: podinfo\n    repo: https://example.invalid\n")
    clone.write("c/kustomization.yaml", "resources:\n  - ../../../etc\n")
    clone.commit()
    push = clone.push()
    assert not push.accepted
    found = lines_with(push.remote_lines(), "kustomize-unsafe")
    assert any(x.startswith("a/kustomization.yaml:2:1:") and "remote resource" in x for x in found)
    assert any(x.startswith("b/kustomization.yaml:1:1:") and "Helm inflation" in x for x in found)
    assert any(x.startswith("c/kustomization.yaml:2:1:") and "points outside the repository" in x for x in found)


def test_helm_chart_folder_is_rendered_and_reported(server: Server, clone: Clone) -> None:
    clone.write("charts/web/Chart.yaml", "apiVersion: v2\nname: web\nversion: 1.0.0\n")
    clone.write("charts/web/templates/config.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
                "data:\n  replicas: {{ .Values.replicas | quote }}\n")
    clone.write("charts/web/values.yaml", "replicas: 2\n")
    clone.commit()
    push = clone.push()
    assert push.accepted, push.output
    assert lines_with(push.remote_lines(), "helm-chart") == [
        "charts/web/Chart.yaml:1:1: info [helm-chart] Helm chart charts/web: rendered as release web of charts/web "
        "(default values)"
    ]


def test_symlinks_and_submodules_are_listed_never_followed(server: Server, clone: Clone) -> None:
    clone.write("apps/web.yaml", DEPLOYMENT)
    os.symlink("/etc/passwd", clone.path / "apps" / "passwd.yaml")
    os.makedirs(clone.path / "k")
    os.symlink("../apps/web.yaml", clone.path / "k" / "kustomization.yaml")
    clone.commit()
    sub = "1" * 40
    git("update-index", "--add", "--cacheinfo", f"160000,{sub},vendor/lib", cwd=clone.path)
    git("commit", "-q", "-m", "submodule", cwd=clone.path)
    push = clone.push()
    lines = push.remote_lines()
    assert "apps/passwd.yaml:1:1: info [tree-symlink] apps/passwd.yaml is a symbolic link: not followed, not checked" in lines
    assert any(x.startswith("vendor/lib:1:1: info [tree-submodule] submodule vendor/lib") for x in lines)
    assert any(x.startswith("k/kustomization.yaml:1:1: error [kustomize-unsafe]") for x in lines)
    assert "root:" not in push.output  # nothing of /etc/passwd was read


def test_hostile_files_are_clear_errors(server: Server, clone: Clone) -> None:
    clone.write("bin.yaml", b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    clone.write("latin1.yaml", b"name: caf\xe9\n")
    clone.write("empty.yaml", "")
    clone.write("with space/a b.yaml", CM.format(name="spaced"))
    clone.write("dup.yaml", "a: 1\na: 2\n")
    clone.commit()
    push = clone.push()
    assert not push.accepted
    lines = push.remote_lines()
    assert "bin.yaml:1:1: error [file-binary] binary content (NUL bytes) in a file named like a manifest" in lines
    assert "latin1.yaml:1:10: error [file-encoding] not valid UTF-8 (byte 0xe9)" in lines
    assert "dup.yaml:2:1: error [yaml-duplicate-key] duplicate key 'a' (first defined on line 1)" in lines
    assert not [x for x in lines if x.startswith(("empty.yaml", "with space/"))]
    assert "Traceback" not in push.output


def test_same_object_in_two_folders_is_not_a_duplicate(server: Server, clone: Clone) -> None:
    clone.write("clusters/staging/cm.yaml", CM.format(name="settings"))
    clone.write("clusters/production/cm.yaml", CM.format(name="settings"))
    clone.commit()
    assert clone.push().accepted
    clone.write("clusters/production/cm-again.yaml", CM.format(name="settings"))
    clone.commit()
    push = clone.push()
    assert not push.accepted
    assert lines_with(push.remote_lines(), "object-duplicate") == [
        "clusters/production/cm.yaml:1:1: error [object-duplicate] configmap/settings is already defined at "
        "clusters/production/cm-again.yaml:1"
    ]


def test_yes_for_a_string_field_is_explained(server: Server, clone: Clone) -> None:
    clone.write("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\ndata:\n  enabled: yes\n")
    clone.commit()
    push = clone.push()
    assert not push.accepted
    lines = push.remote_lines()
    i = lines.index("cm.yaml:6:12: error [schema-invalid] configmap/flags: data.enabled: true is not of type string")
    assert lines[i + 1] == '    hint: YAML reads the unquoted yes as a boolean (kubectl does too); quote it: "yes"'


def test_missing_required_fields(server: Server, clone: Clone) -> None:
    clone.write("x.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n---\nkind: Service\nmetadata: {name: s}\n")
    clone.commit()
    push = clone.push()
    lines = lines_with(push.remote_lines(), "object-required")
    assert lines == [
        "x.yaml:1:1: error [object-required] configmap: missing metadata.name",
        "x.yaml:5:1: error [object-required] service/s: missing apiVersion",
    ]


def test_crd_from_a_kustomize_build_validates_standalone_resources(server: Server, clone: Clone) -> None:
    """A CRD that only a rendered kustomization yields still validates custom resources elsewhere."""
    from test_cache import CRD, WIDGET

    clone.write("crds/crd.yaml", CRD % "integer")
    clone.write("crds/kustomization.yaml", "resources: [crd.yaml]\ncommonLabels: {team: platform}\n")
    clone.write("apps/widget.yaml", WIDGET.replace("size: 3", "size: big"))
    clone.commit()
    push = clone.push()
    assert not push.accepted
    assert ("apps/widget.yaml:6:9: error [schema-invalid] widget.example.io/w: spec.size: 'big' is not of type "
            "integer") in push.remote_lines()
    clone.write("apps/widget.yaml", WIDGET)
    clone.commit()
    assert clone.push().accepted
