"""Schema validation of custom resources: bundled CRDs, CRDs in the tree, unknown kinds, the CRD conversion.

What a user sees is checked through the real `gitops-hooks validate` command and, for the gate, a real push.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from conftest import CORPUS, EXE, Clone, Server, need_corpus
from test_cache import CRD, WIDGET

from gitops_hooks.schemas import (
    CustomSchemas,
    KubernetesSchemas,
    bundled_crd_dir,
    crd_to_jsonschema,
    definition_closure,
    load_bundled,
)

FLUX = CORPUS / "flux2-kustomize-helm-example"


def run_suite(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real CLI, with a result cache of its own (so results come from the code under test)."""
    env = {**os.environ, "XDG_CACHE_HOME": str(cwd.parent / "xdg-cache")}
    return subprocess.run([EXE, *args], cwd=cwd, capture_output=True, text=True, env=env, check=False)


def validate(folder: Path, files: dict[str, str], policy: str | None = None) -> tuple[int, list[str]]:
    """Write the files, run `gitops-hooks validate .` there; (exit code, finding lines)."""
    for rel, text in files.items():
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    args = ["validate", "."]
    if policy is not None:
        (folder.parent / "policy.yaml").write_text(policy, encoding="utf-8")
        args += ["--policy", str(folder.parent / "policy.yaml")]
    proc = run_suite(*args, cwd=folder)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc.returncode, [line for line in proc.stdout.splitlines() if ": " in line and "[" in line]


def corpus_file(rel: str) -> str:
    need_corpus()
    return (FLUX / rel).read_text(encoding="utf-8")


# ---------------------------------------------------------------------------- bundled CRDs, through the CLI


def test_broken_flux_kustomization_is_refused_with_file_line_and_message(tmp_path: Path) -> None:
    text = corpus_file("clusters/production/apps.yaml")
    text = text.replace("prune: true", 'prune: "true"').replace("  sourceRef:", "  sourceRefs:")
    code, lines = validate(tmp_path / "repo", {"apps.yaml": text})
    assert code == 1
    kust = "kustomization.kustomize.toolkit.fluxcd.io/apps"
    assert lines == [
        f"apps.yaml:8:3: error [schema-invalid] {kust}: spec: missing required field 'sourceRef'",
        f"apps.yaml:13:3: error [schema-invalid] {kust}: spec.sourceRefs: unknown field 'sourceRefs'",
        f"apps.yaml:17:10: error [schema-invalid] {kust}: spec.prune: 'true' is not of type boolean",
    ]


LOOSE_FLUX_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: kustomizations.kustomize.toolkit.fluxcd.io
spec:
  group: kustomize.toolkit.fluxcd.io
  names: {kind: Kustomization, plural: kustomizations, singular: kustomization}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""


@pytest.mark.parametrize("kustomization", [
    "resources: [crd.yaml, apps.yaml]\n",  # read as files
    "resources: [crd.yaml, apps.yaml]\ncommonLabels: {team: a}\n",  # rendered by kubectl kustomize
])
def test_a_pushed_crd_does_not_replace_a_bundled_one(tmp_path: Path, kustomization: str) -> None:
    """A CRD in the repository that redefines a bundled kind, committed or rendered, does not loosen its
    checks: the bundled schema counts."""
    text = corpus_file("clusters/production/apps.yaml").replace("  sourceRef:", "  sourceRefs:")
    code, lines = validate(tmp_path / "repo", {"kustomization.yaml": kustomization, "crd.yaml": LOOSE_FLUX_CRD,
                                               "apps.yaml": text})
    assert code == 1
    kust = "kustomization.kustomize.toolkit.fluxcd.io/apps"
    assert any(f"[schema-invalid] {kust}: spec: missing required field 'sourceRef'" in line for line in lines), lines


def test_broken_helmrelease_is_refused(tmp_path: Path) -> None:
    text = corpus_file("apps/base/podinfo/release.yaml")
    text = text.replace("kind: HelmRepository", "kind: HelmRepo").replace("interval: 50m", "interval: 50")
    code, lines = validate(tmp_path / "repo", {"release.yaml": text})
    assert code == 1
    hr = "helmrelease.helm.toolkit.fluxcd.io/podinfo"
    assert lines == [
        f"release.yaml:7:13: error [schema-invalid] {hr}: spec.interval: 50 is not of type string",
        f"release.yaml:13:15: error [schema-invalid] {hr}: spec.chart.spec.sourceRef.kind: "
        '"HelmRepo" is not one of "HelmRepository", "GitRepository" or "Bucket"',
    ]


def test_broken_clusterissuer_is_refused(tmp_path: Path) -> None:
    text = corpus_file("infrastructure/configs/cluster-issuers.yaml")
    text = text.replace(
        "    privateKeySecretRef:\n      name: letsencrypt\n",
        "    privateKeySecretRef: letsencrypt\n    privateKeySecretRefs:\n      name: x\n",
    )
    code, lines = validate(tmp_path / "repo", {"issuers.yaml": text})
    assert code == 1
    ci = "clusterissuer.cert-manager.io/letsencrypt"
    assert lines == [
        f"issuers.yaml:12:26: error [schema-invalid] {ci}: spec.acme.privateKeySecretRef: "
        "'letsencrypt' is not of type object",
        f"issuers.yaml:13:5: error [schema-invalid] {ci}: spec.acme.privateKeySecretRefs: unknown field "
        "'privateKeySecretRefs'",
    ]


GATEWAY_ADDRESSES = """\
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: hosts
  namespace: envoy-gateway-system
spec:
  gatewayClassName: envoy
  addresses:
    - type: Hostname
      value: gw.example.com
    - type: IPAddress
      value: 10.0.0.1
  listeners:
    - name: http
      protocol: HTTP
      port: 80
"""


def test_broken_gateway_is_refused_and_addresses_of_every_type_pass(tmp_path: Path) -> None:
    text = (
        corpus_file("infrastructure/configs/gateway.yaml").replace("port: 80", 'port: "80"')
        + GATEWAY_ADDRESSES
    )
    code, lines = validate(tmp_path / "repo", {"gateway.yaml": text})
    assert code == 1
    assert lines == [
        "gateway.yaml:19:13: error [schema-invalid] gateway.gateway.networking.k8s.io/envoy: "
        "spec.listeners[0].port: '80' is not of type integer",
    ]


def test_flux_example_validates_against_bundled_crds(tmp_path: Path) -> None:
    need_corpus()
    repo = tmp_path / "flux"
    shutil.copytree(FLUX, repo, ignore=shutil.ignore_patterns("validate.sh"))
    code, lines = validate(repo, {})
    assert code == 0, lines
    # The only kind without a schema: Flux's source-watcher ArtifactGenerator, whose CRD is not bundled.
    # The HelmReleases' charts come from a HelmRepository and OCI registries: said, never downloaded.
    assert lines == [
        "apps/base/podinfo/release.yaml:13:9: info [helm-not-rendered] HelmRelease podinfo/podinfo: chart podinfo "
        "comes from HelmRepository podinfo: not downloaded at push, not rendered",
        *(f"clusters/{env}/artifacts.yaml:2:1: warning [schema-unknown-kind] no schema for ArtifactGenerator "
          "source.extensions.fluxcd.io/v1beta1: not validated" for env in ("production", "staging")),
        "infrastructure/controllers/cert-manager.yaml:37:5: info [helm-not-rendered] HelmRelease "
        "cert-manager/cert-manager: chart from OCIRepository cert-manager: not downloaded at push, not rendered",
        "infrastructure/controllers/envoy-gateway.yaml:38:5: info [helm-not-rendered] HelmRelease "
        "envoy-gateway-system/envoy-gateway: chart from OCIRepository gateway-helm: not downloaded at push, "
        "not rendered",
    ]


# ---------------------------------------------------------------------------- CRDs in the tree

WIDGET_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [size]
              properties:
                size: {type: integer, minimum: 1}
                port: {x-kubernetes-int-or-string: true}
"""


def widget(name: str, spec: str) -> str:
    meta = f"metadata:\n  name: {name}\n  namespace: shop\n"
    return f"apiVersion: example.com/v1\nkind: Widget\n{meta}spec:\n{spec}"


def test_crd_in_the_tree_validates_its_custom_resources(tmp_path: Path) -> None:
    files = {
        "crds/widget.yaml": WIDGET_CRD,
        "good.yaml": widget("w0", "  size: 3\n  port: http\n"),
        "bad.yaml": widget("w1", "  size: 0\n  port: 8080\n  colour: red\n"),
    }
    code, lines = validate(tmp_path / "repo", files)
    assert code == 1
    assert lines == [
        "bad.yaml:7:9: error [schema-invalid] widget.example.com/w1: spec.size: 0 is less than the minimum "
        "of 1",
        "bad.yaml:9:3: error [schema-invalid] widget.example.com/w1: spec.colour: unknown field 'colour'",
    ]


def test_broken_crd_in_the_tree_is_reported_at_its_resources(tmp_path: Path) -> None:
    crd = WIDGET_CRD.replace("size: {type: integer, minimum: 1}", "size: {type: integr}")
    code, lines = validate(tmp_path / "repo", {"crd.yaml": crd, "w.yaml": widget("w1", "  size: 3\n")})
    assert code == 1
    assert lines == [
        "w.yaml:1:1: error [schema-invalid] widget.example.com/w1: not validated: the openAPIV3Schema of "
        "Widget example.com/v1 in crd.yaml:1 is not usable at /properties/spec/properties/size/type: "
        "\"integr\" is not valid under any of the schemas listed in the 'anyOf' keyword"
    ]


# ---------------------------------------------------------------------------- kinds without a schema


def test_unknown_kind_in_builtin_group_is_an_error(tmp_path: Path) -> None:
    files = {
        "a.yaml": "apiVersion: apps/v1\nkind: Deploymnet\nmetadata:\n  name: web\n",
        "b.yaml": "apiVersion: networking.k8s.io/v2\nkind: Ingress\nmetadata:\n  name: web\n",
        "c.yaml": "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata:\n  name: old\n",
    }
    proc = run_suite("validate", ".", cwd=_write(tmp_path / "repo", files))
    assert proc.returncode == 1
    lines = [line for line in proc.stdout.splitlines() if "] " in line or "hint:" in line]
    version = KubernetesSchemas("", True).version
    unknown = "error [schema-unknown-builtin]"
    assert lines[:4] == [
        f"a.yaml:1:1: {unknown} Deploymnet apps/v1 is not served by Kubernetes {version}",
        f"    hint: Kubernetes {version} has no kind Deploymnet in this group",
        f"b.yaml:1:1: {unknown} Ingress networking.k8s.io/v2 is not served by Kubernetes {version}",
        f"    hint: Kubernetes {version} serves Ingress as networking.k8s.io/v1",
    ]
    # A removed API is reported once, by api-removed, which names the replacement.
    assert [line.split(" ", 3)[:3] for line in lines[4:] if "] " in line] == [
        ["c.yaml:1:13:", "error", "[api-removed]"]
    ]


def _write(folder: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text, encoding="utf-8")
    return folder


UNKNOWN = "apiVersion: example.org/v1\nkind: Gadget\nmetadata:\n  name: g\n"


@pytest.mark.parametrize(
    ("policy", "code", "expected"),
    [
        (
            None,
            0,
            ["a.yaml:1:1: warning [schema-unknown-kind] no schema for Gadget example.org/v1: not validated"],
        ),
        (
            "rules: {schema-unknown-kind: error}\n",
            1,
            ["a.yaml:1:1: error [schema-unknown-kind] no schema for Gadget example.org/v1: not validated"],
        ),
        ("rules: {schema-unknown-kind: 'off'}\n", 0, []),
    ],
)
def test_unknown_custom_kind_severity_follows_policy(
    tmp_path: Path, policy: str | None, code: int, expected: list[str]
) -> None:
    assert validate(tmp_path / "repo", {"a.yaml": UNKNOWN}, policy) == (code, expected)


def test_unknown_custom_kind_error_refuses_the_push(server: Server, clone: Clone) -> None:
    server.configure("version: 1\nrules:\n  schema-unknown-kind: error\n")
    clone.write("gadget.yaml", UNKNOWN)
    clone.commit()
    push = clone.push()
    assert not push.accepted
    assert (
        "gadget.yaml:1:1: error [schema-unknown-kind] no schema for Gadget example.org/v1: not validated"
        in push.remote_lines()
    )
    assert server.rev() is None


def test_broken_helmrelease_in_flux_example_refuses_the_push(server: Server, clone: Clone) -> None:
    need_corpus()
    clone.copy_tree(FLUX)
    (clone.path / "scripts/validate.sh").unlink()  # an imperative script: another rule refuses it
    good = clone.commit("flux example")
    push = clone.push()
    assert push.accepted, push.output
    release = clone.path / "infrastructure/controllers/cert-manager.yaml"
    release.write_text(
        release.read_text().replace("  interval: 12h\n", "  interval: 12h\n  intervall: 1h\n", 1)
    )
    clone.commit("typo")
    push = clone.push()
    assert not push.accepted
    assert any(
        line.startswith("infrastructure/controllers/cert-manager.yaml:")
        and "error [schema-invalid] helmrelease.helm.toolkit.fluxcd.io/cert-manager: spec.intervall: "
        "unknown field 'intervall'"
        in line
        for line in push.remote_lines()
    ), push.remote_lines()
    assert server.rev() == good


# ---------------------------------------------------------------------------- the CRD conversion


def compiled(schema: dict[str, Any], strict: bool = True) -> Any:
    return jsonschema_rs.validator_for(crd_to_jsonschema(schema, strict, None), validate_formats=False)


def obj(spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec}


def spec_schema(spec: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"metadata": {"type": "object"}, "spec": spec}}


def test_int_or_string() -> None:
    v = compiled(spec_schema({"type": "object", "properties": {"p": {"x-kubernetes-int-or-string": True}}}))
    assert v.is_valid(obj({"p": 80})) and v.is_valid(obj({"p": "http"}))
    assert not v.is_valid(obj({"p": True})) and not v.is_valid(obj({"p": None}))


def test_preserve_unknown_fields_keeps_declared_fields_checked() -> None:
    v = compiled(
        spec_schema(
            {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "properties": {"n": {"type": "integer"}},
            }
        )
    )
    assert v.is_valid(obj({"n": 1, "anything": {"x": 1}}))
    assert not v.is_valid(obj({"n": "one"}))


def test_nullable() -> None:
    schema = spec_schema(
        {
            "type": "object",
            "properties": {
                "a": {"type": "string", "nullable": True},
                "b": {"type": "string"},
                "e": {"type": "string", "enum": ["x"], "nullable": True},
            },
        }
    )
    v = compiled(schema)
    assert v.is_valid(obj({"a": None, "e": None}))
    assert not v.is_valid(obj({"b": None}))


def test_strict_refuses_unknown_fields_at_every_level_and_lax_does_not() -> None:
    schema = spec_schema(
        {
            "type": "object",
            "properties": {"inner": {"type": "object", "properties": {"x": {"type": "string"}}}},
        }
    )
    assert not compiled(schema).is_valid(obj({"inner": {"y": "1"}}))
    assert not compiled(schema).is_valid(obj({"other": 1}))
    assert not compiled(schema).is_valid({**obj({}), "extra": 1})
    assert compiled(schema, strict=False).is_valid({**obj({"inner": {"y": "1"}}), "extra": 1})


def test_embedded_resource_gets_type_meta() -> None:
    v = compiled(
        spec_schema(
            {
                "type": "object",
                "properties": {
                    "template": {
                        "type": "object",
                        "x-kubernetes-embedded-resource": True,
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        )
    )
    assert v.is_valid(
        obj({"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": {"a": 1}}})
    )
    assert not v.is_valid(obj({"template": {"apiVersion": 1, "kind": "Pod"}}))


def test_junctor_branches_do_not_close_objects() -> None:
    # Gateway API's address: oneOf branches list only the fields they constrain.
    item = {
        "type": "object",
        "properties": {"type": {"type": "string"}, "value": {"type": "string"}},
        "oneOf": [
            {"properties": {"type": {"enum": ["IPAddress"]}}},
            {"properties": {"type": {"not": {"enum": ["IPAddress"]}}}},
        ],
    }
    v = compiled(
        spec_schema({"type": "object", "properties": {"addresses": {"type": "array", "items": item}}})
    )
    assert v.is_valid(
        obj(
            {
                "addresses": [
                    {"type": "Hostname", "value": "a.example"},
                    {"type": "IPAddress", "value": "10.0.0.1"},
                ]
            }
        )
    )
    assert not v.is_valid(obj({"addresses": [{"type": "Hostname", "valu": "a"}]}))


def test_list_type_set_refuses_duplicates() -> None:
    v = compiled(
        spec_schema(
            {
                "type": "object",
                "properties": {
                    "s": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"}
                },
            }
        )
    )
    assert v.is_valid(obj({"s": ["a", "b"]}))
    assert not v.is_valid(obj({"s": ["a", "a"]}))


def test_metadata_is_checked_as_object_meta() -> None:
    defs = {
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"name": {"type": "string"}, "labels": {"$ref": "#/$defs/labels"}},
        },
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "unrelated": {},
    }
    meta = definition_closure(defs, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
    assert set(meta["$defs"]) == {"io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "labels"}
    v = jsonschema_rs.validator_for(crd_to_jsonschema(spec_schema({"type": "object"}), True, meta))
    assert v.is_valid({"apiVersion": "a/v1", "kind": "K", "metadata": {"name": "n", "labels": {"a": "b"}}})
    assert not v.is_valid({"apiVersion": "a/v1", "kind": "K", "metadata": {"name": "n", "labels": {"a": 1}}})
    assert not v.is_valid({"apiVersion": "a/v1", "kind": "K", "metadata": {"nmae": "n"}})


def test_every_bundled_schema_compiles_and_keeps_cel_rules() -> None:
    index = json.loads((bundled_crd_dir() / "index.json").read_text())
    custom = CustomSchemas(True, None, "bundled")
    load_bundled(custom)
    gvks = {(k["group"], k["version"], k["kind"]) for k in index["kinds"]}
    assert len(gvks) == len(index["kinds"]) >= 28
    assert gvks <= custom.kinds()
    for gvk in sorted(gvks):
        schema = custom.get(gvk)
        assert schema is not None and schema.source.startswith("bundled CRD "), gvk
    raw = custom.raw(("gateway.networking.k8s.io", "v1", "HTTPRoute"))
    assert raw is not None and "x-kubernetes-validations" in json.dumps(raw[0])
    assert raw[2] == "Namespaced"
    cluster = custom.raw(("cert-manager.io", "v1", "ClusterIssuer"))
    assert cluster is not None and cluster[2] == "Cluster"


@pytest.mark.parametrize("kustomization", [
    "resources: [crd.yaml, widget.yaml]\n",  # read as files
    "resources: [crd.yaml, widget.yaml]\ncommonLabels: {team: a}\n",  # rendered by kubectl kustomize
])
def test_a_pushed_crd_cannot_replace_the_administrators_schema(server: Server, clone: Clone, tmp_path: Path,
                                                               kustomization: str) -> None:
    """Server policy lives on the server: a CRD in the push, committed as a file or rendered by a
    kustomization, does not replace a kind that the administrator's schema_dirs define."""
    folder = tmp_path / "crds"
    folder.mkdir()
    (folder / "widgets.yaml").write_text(CRD % "integer", encoding="utf-8")
    server.configure(f"schema_dirs: [{folder}]\n")
    clone.write("kustom/kustomization.yaml", kustomization)
    clone.write("kustom/crd.yaml", CRD % "string")  # the pushed, looser definition
    clone.write("kustom/widget.yaml", WIDGET.replace("size: 3", "size: big"))
    clone.commit("a widget with a looser CRD of its own")
    push = clone.push()
    assert not push.accepted
    assert any("[schema-invalid] widget.example.io/w" in line and "kustom/widget.yaml" in line
               for line in push.remote_lines())
