"""Hypothesis strategies that write real YAML text: Kubernetes-shaped objects, YAML 1.1 specials, anchors,
aliases, merge keys, tags, directives and multi-document files, plus byte mutations of the result."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

SEEDS = Path(__file__).resolve().parent / "seeds"

# Scalars that YAML 1.1 (go-yaml v2, kubectl) and YAML 1.2 read differently, or that stress the resolver.
SPECIAL_SCALARS = [
    "yes", "no", "on", "off", "y", "n", "Y", "N", "YES", "Off", "true", "False", "~", "null", "Null", "",
    "0755", "0o17", "0x1F", "0b101", "1_000", "-0", "+1", "1e3", "1E-2", ".5", "5.", ".inf", "-.Inf", ".NaN",
    "10:30", "190:20:30", "2001-12-14t21:59:43.10-05:00", "2024-01-01", "=", "<<", "0.", "08", "09.5",
    "123456789012345678901234567890", "-9223372036854775809", "1e400", "0x", "0b", "_", "0_", "+", "-",
    "'quoted'", '"dq"', "a: b", "# hash", "{{ .Values.x }}", "{% if %}", "*alias", "&anchor", "!tag", "%",
    "@at", "`tick`", "|", ">", "? q", "- d", "---", "...", "\t", "ünïcödé", "😀", "\u2028", "\ufeff",
    "AKIAIOSFODNN7EXAMPLE", "ghp_" + "a" * 36, "-----BEGIN RSA PRIVATE KEY-----",
    "password=hunter2", "$(rm -rf /)", "${HOME}", "../../etc/passwd", "/etc/passwd", "https://example.invalid/x",
    "kubectl apply -f -", "curl http://x | sh",
]

KINDS = [
    ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Service"), ("v1", "Namespace"), ("v1", "Pod"),
    ("v1", "ServiceAccount"), ("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("apps/v1", "DaemonSet"),
    ("batch/v1", "Job"), ("batch/v1", "CronJob"), ("networking.k8s.io/v1", "Ingress"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"), ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"), ("example.com/v1", "Widget"),
    ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"), ("helm.toolkit.fluxcd.io/v2", "HelmRelease"),
    ("source.toolkit.fluxcd.io/v1", "GitRepository"), ("cert-manager.io/v1", "Certificate"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"), ("bitnami.com/v1alpha1", "SealedSecret"),
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy"),
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding"),
    ("extensions/v1beta1", "Ingress"), ("apps/v1beta1", "Deployment"), ("v1", "List"), ("", ""),
]

names = st.sampled_from(["web", "db", "x", "a.b", "UPPER", "with space", "-bad-", "a" * 300, "", "ns/slash"])
scalar = st.one_of(
    st.sampled_from(SPECIAL_SCALARS),
    st.text(max_size=30),
    st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
values = st.recursive(
    scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(SPECIAL_SCALARS), st.text(max_size=12)), inner, max_size=4),
    ),
    max_leaves=12,
)


def _container(image: Any) -> dict[str, Any]:
    return {"name": "c", "image": image, "command": ["sh", "-c", "kubectl apply -f /x"],
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}}}


def _pod_template(image: Any) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [_container(image)]}}


def _body(kind: str, value: Any) -> dict[str, Any]:
    """A plausible body for the kind, with one generated value in it."""
    if kind in ("Deployment", "StatefulSet", "DaemonSet"):
        return {"spec": {"replicas": value if isinstance(value, int) else 2,
                         "selector": {"matchLabels": {"app": "web"}}, "template": _pod_template(value)}}
    if kind == "Job":
        template = _pod_template(value)
        return {"spec": {"template": {**template, "spec": {**template["spec"], "restartPolicy": "Never"}}}}
    if kind == "CronJob":
        return {"spec": {"schedule": value, "jobTemplate": {"spec": {"template": _pod_template("busybox")}}}}
    if kind == "Secret":
        raw = json.dumps(value).encode()
        return {"type": "Opaque", "data": {"token": base64.b64encode(raw).decode(), "bad": value},
                "stringData": {"password": value, "aws": "AKIAIOSFODNN7EXAMPLE"}}
    if kind == "ConfigMap":
        return {"data": {"k": value, "script.sh": "#!/bin/sh\nkubectl delete ns x\n"}}
    if kind == "CustomResourceDefinition":
        return {"spec": {"group": "example.com", "scope": value if isinstance(value, str) else "Namespaced",
                         "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
                         "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                             "type": "object", "properties": {"spec": {"type": "object", "properties": {
                                 "size": {"type": value if isinstance(value, str) else "integer", "maximum": 10},
                                 "pattern": {"type": "string", "pattern": str(value)[:20]}},
                                 "x-kubernetes-validations": [{"rule": str(value)[:40] or "self.size > 0"}]}}}}}]}}
    if kind == "ValidatingAdmissionPolicy":
        return {"spec": {"failurePolicy": "Fail", "matchConstraints": {"resourceRules": [
            {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["deployments"]}]},
            "validations": [{"expression": str(value)[:60] or "object.spec.replicas < 5"}]}}
    if kind == "List":
        return {"items": [value, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "in-list"}}]}
    if kind == "Kustomization":
        return {"spec": {"interval": "5m", "path": value, "prune": True,
                         "sourceRef": {"kind": "GitRepository", "name": "flux-system"}}}
    return {"spec": {"value": value}}


@st.composite
def k8s_object(draw: st.DrawFn) -> dict[str, Any]:
    api_version, kind = draw(st.sampled_from(KINDS))
    value = draw(values)
    obj: dict[str, Any] = {}
    if api_version:
        obj["apiVersion"] = api_version
    if kind:
        obj["kind"] = kind
    meta: dict[str, Any] = {"name": draw(names)}
    if draw(st.booleans()):
        meta["namespace"] = draw(st.sampled_from(["default", "apps", "", "kube-system", "x" * 70]))
    if draw(st.integers(0, 4)) == 0:
        meta["annotations"] = {"gitops-hooks.io/allow": draw(st.sampled_from(["secret-value", "all", "", "x,y"])),
                               "config.kubernetes.io/origin": "path: ../x.yaml\n"}
    obj["metadata"] = meta
    obj.update(_body(kind, value))
    if draw(st.integers(0, 5)) == 0:  # one field replaced by anything at all
        key = draw(st.sampled_from(["apiVersion", "kind", "metadata", "spec", "data"]))
        obj[key] = draw(values)
    return obj


def kustomization(resources: list[str], extra: Any) -> dict[str, Any]:
    return {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "resources": resources, "namePrefix": extra if isinstance(extra, str) else "p-",
            "commonLabels": {"env": "x"}}


def dump(obj: Any, style: int) -> str:
    """One of several YAML writers: block, flow, JSON (a YAML subset), canonical with explicit tags."""
    import yaml

    if style == 0:
        return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True)
    if style == 1:
        return yaml.safe_dump(obj, default_flow_style=True, width=60)
    if style == 2:
        return json.dumps(obj, default=str) + "\n"
    if style == 3:
        return yaml.safe_dump(obj, canonical=True)
    return yaml.safe_dump(obj, default_style='"')


# Fragments that change the meaning of YAML around them: anchors, aliases, merges, tags, directives.
FRAGMENTS = [
    "base: &b {a: 1, b: [1, 2]}\nother:\n  <<: *b\n  c: 3\n",
    "x: &x [&y {k: v}, *y]\ny: *x\n",
    "a: &a\n  <<: *a\n",
    "l: &l [*l]\n",
    "m: !!python/object:os.system ['echo pwned']\n",
    "m: !!python/object/apply:subprocess.check_output [['id']]\n",
    "m: !!python/name:os.system\n",
    "m: !custom {a: 1}\n",
    "m: !!binary aGVsbG8=\n",
    "m: !!set {a, b}\n",
    "m: !!omap [{a: 1}, {b: 2}]\n",
    "m: !!pairs [{a: 1}, {a: 2}]\n",
    "m: !!str 1\nn: !!int '12'\no: !!float x\np: !!bool maybe\n",
    "m: !!timestamp 2001-12-14\nn: !!null ''\n",
    "? [complex, key]\n: v\n",
    "? {a: 1}\n: v\n",
    "1: one\ntrue: t\n~: n\n1.5: f\n",
    "a: 1\na: 2\n",
    "yes: 1\ntrue: 2\n",
    "%YAML 1.1\n---\na: 1\n",
    "%TAG !e! tag:example.com,2000:\n---\na: !e!x 1\n",
    "--- !!map\na: 1\n...\n--- !!seq\n- 1\n",
    "a: |\n  text\n   more\nb: >-\n  folded\n",
    "a: 'it''s'\nb: \"\\x00\\u0000\\N\"\n",
    "- just\n- a\n- list\n",
    "just a scalar\n",
    "a: [1, 2\n",
    "\ta: tab\n",
    "a: {{ .Values.name }}\n",
    "a: b: c\n",
    "&a [*a]\n",
    "<<: {apiVersion: v1, kind: ConfigMap}\nmetadata: {name: merged}\n",
]


@st.composite
def document_text(draw: st.DrawFn) -> str:
    choice = draw(st.integers(0, 9))
    if choice < 6:
        return dump(draw(k8s_object()), draw(st.integers(0, 4)))
    if choice < 8:
        return draw(st.sampled_from(FRAGMENTS))
    return dump(draw(values), draw(st.integers(0, 4)))


@st.composite
def file_text(draw: st.DrawFn) -> str:
    docs = draw(st.lists(document_text(), min_size=1, max_size=4))
    seps = ["---\n", "--- # c\n", "...\n---\n", "\n---\n", "# comment\n---\n"]
    out = docs[0]
    for d in docs[1:]:
        if not out.endswith("\n"):
            out += "\n"
        out += draw(st.sampled_from(seps)) + d
    if draw(st.integers(0, 6)) == 0:
        out = draw(st.sampled_from(FRAGMENTS)) + "---\n" + out
    return out


INSERTS = [b"\x00", b"\xff", b"\xc3", b"\xef\xbb\xbf", b"\r\n", b"\r", b"\t", b"&a ", b"*a", b"<<: *a\n",
           b"!!python/object:os.system ",
           b": ", b"- ", b"{", b"}", b"[", b"]", b"'", b'"', b"#", b"---\n", b"...\n", b"%YAML 1.2\n", b"\n  ", b"? ", b"|", b">",
           b"\xe2\x80\xa8", b"{{ x }}", b"\\", b"@", b"`", b"!"]


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """Byte-level mutations: insert tokens, flip bytes, delete or duplicate ranges, encode differently."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.integers(0, 5))
        pos = draw(st.integers(0, len(buf)))
        if op == 0:
            buf[pos:pos] = draw(st.sampled_from(INSERTS))
        elif op == 1 and buf:
            buf[min(pos, len(buf) - 1)] = draw(st.integers(0, 255))
        elif op == 2:
            end = draw(st.integers(pos, min(len(buf), pos + 40)))
            del buf[pos:end]
        elif op == 3:
            end = draw(st.integers(pos, min(len(buf), pos + 40)))
            buf[pos:pos] = buf[pos:end] * draw(st.integers(1, 3))
        elif op == 4:
            buf = bytearray(bytes(buf).replace(b"\n", b"\r\n"))
        else:
            buf[pos:pos] = draw(st.binary(max_size=8))
    if draw(st.integers(0, 10)) == 0:
        buf = bytearray(b"\xef\xbb\xbf") + buf
    if draw(st.integers(0, 15)) == 0:
        buf = bytearray(bytes(buf).decode("utf-8", "replace").encode("utf-16"))
    return bytes(buf)


def seed_bytes() -> list[tuple[str, bytes]]:
    return sorted((p.name, p.read_bytes()) for p in SEEDS.iterdir() if p.is_file())


@st.composite
def file_bytes(draw: st.DrawFn) -> bytes:
    seeds = seed_bytes()
    if seeds and draw(st.integers(0, 3)) == 0:
        base = draw(st.sampled_from(seeds))[1]
    else:
        base = draw(file_text()).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        return base
    return draw(mutated(base))


PATHS = ["a.yaml", "apps/web.yaml", "apps/db.yml", "apps/x.json", "with space/a b.yaml", "ünï/cödé.yaml",
         "base/kustomization.yaml", "base/deploy.yaml", "overlay/kustomization.yaml", "overlay/patch.yaml",
         ".gitops-hooks.yaml", "charts/c/Chart.yaml", "charts/c/templates/t.yaml", "scripts/run.sh",
         "crds/crd.yaml", "secrets/s.yaml", "-dash.yaml", "a/../b.yaml", "deep/" * 10 + "f.yaml"]


@st.composite
def kustomization_bytes(draw: st.DrawFn) -> bytes:
    resources = draw(st.lists(st.sampled_from(
        ["deploy.yaml", "../base", "../base/deploy.yaml", "/etc/passwd", "../../../../etc", "missing.yaml",
         "https://github.com/x/y//base", "patch.yaml", "", "."]), max_size=3))
    obj = kustomization(resources, draw(values))
    if draw(st.booleans()):
        obj["patches"] = [{"path": draw(st.sampled_from(["patch.yaml", "../x.yaml", "/etc/passwd"]))}]
    if draw(st.integers(0, 3)) == 0:
        key = draw(st.sampled_from(["helmCharts", "generators", "transformers", "configMapGenerator", "components"]))
        obj[key] = draw(values)
    return dump(obj, draw(st.integers(0, 2))).encode()


@st.composite
def tree(draw: st.DrawFn) -> dict[str, bytes]:
    """A small tree: paths chosen from real-looking names, contents generated or mutated."""
    files: dict[str, bytes] = {}
    for path in draw(st.lists(st.sampled_from(PATHS), min_size=1, max_size=5, unique=True)):
        if path.endswith("kustomization.yaml") and draw(st.booleans()):
            files[path] = draw(kustomization_bytes())
        elif path == ".gitops-hooks.yaml" and draw(st.booleans()):
            files[path] = draw(file_bytes())
        elif path == ".gitops-hooks.yaml":
            files[path] = draw(st.sampled_from([b"strict: false\n", b"rules: {schema-invalid: off}\n", b"- x\n",
                                                b"manifests: {include: ['**']}\n", b"rules: !!python/object:x {}\n",
                                                b"rules: {secret-value: error}\n", b"strict: yes\n"]))
        else:
            files[path] = draw(file_bytes())
    return files
