"""The kubeconform engine.

Contract tests read kubeconform's real recorded output (../shared/kubeconform-recorded, see its README)
through the mapper and assert the findings a user would see. The real kubeconform (v0.7.0, from
../shared/tools) then checks the recorded inputs and the three corpora, broken on purpose, and must find what
the built-in engine finds; those tests skip, saying so, where ../shared is absent. The engine's wiring
(command line, generated schema folder, mapping back to the pushed files) is also exercised through a real
push with a stand-in executable that replies with kubeconform's recorded report.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema_rs
import pytest
from conftest import CORPUS, SHARED, Clone, Server, git, need_corpus, real_kubeconform, run_suite

from gitops_hooks import kubeconform as kc
from gitops_hooks.report import finding_line
from gitops_hooks.schemas import KubernetesSchemas

RECORDED = SHARED / "kubeconform-recorded"
KUBE = KubernetesSchemas("1.33", True)  # the recordings were made for Kubernetes 1.33.0


def need_recorded() -> None:
    if not RECORDED.is_dir():
        pytest.skip(f"the recorded kubeconform output is not at {RECORDED}")


def recorded(name: str) -> str:
    need_recorded()
    text = (RECORDED / name).read_text(encoding="utf-8")
    if name.endswith(".xml"):
        # The recording redacted the schema folder as `<schema-dir>` inside attributes, which is not
        # well-formed XML; kubeconform itself escapes what it writes there.
        text = text.replace("<schema-dir>", "&lt;schema-dir&gt;")
    return text


def user_sees(records: list[kc.Record]) -> list[str]:
    found = kc.findings(records, kc.SourceResolver(RECORDED), KUBE.is_builtin_group, KUBE.version)
    return [finding_line(f) for f in sorted(found)]


STRICT = [
    "inputs/bad-types.yaml:6:13: error [schema-invalid] deployment.apps/web: spec.replicas: 'three' is not "
    "of type integer",
    "inputs/bad-types.yaml:17:30: error [schema-invalid] deployment.apps/web: "
    "spec.template.spec.containers[0].ports[0].containerPort: 'http' is not of type integer",
    'inputs/duplicate-key.yaml:5:1: error [yaml-duplicate-key] kubeconform: key "name" already set in map',
    "inputs/extra-field.yaml:10:3: error [schema-invalid] service/web: spec.loadBalancerIPs: unknown field "
    "'loadBalancerIPs'",
    "inputs/missing-kind.yaml:1:1: error [object-required] object/orphan: missing kind",
    "inputs/multi.yaml:12:12: error [schema-invalid] configmap/cfg: data.enabled: true is not of type string",
    "inputs/not-yaml.yaml:6:1: error [yaml-syntax] kubeconform: did not find expected ',' or ']'",
    "inputs/unknown-kind.yaml:1:1: warning [schema-unknown-kind] no schema for Widget example.com/v1: "
    "not validated",
]


def test_strict_json_report_maps_to_findings_on_the_right_lines() -> None:
    records = kc.parse_json(recorded("inputs.strict.json"))
    assert len(records) == 10  # -verbose: valid resources and the comment-only document are listed too
    assert user_sees(records) == STRICT


def test_yaml_boolean_for_a_string_gets_the_quoting_hint() -> None:
    found = kc.findings(
        kc.parse_json(recorded("inputs.strict.json")),
        kc.SourceResolver(RECORDED),
        KUBE.is_builtin_group,
        KUBE.version,
    )
    multi = [f for f in found if f.path == "inputs/multi.yaml"]
    assert [f.hint for f in multi] == [
        'YAML reads the unquoted true as a boolean (kubectl does too); quote it: "true"'
    ]


def test_junit_report_of_the_same_run_gives_the_same_findings() -> None:
    assert user_sees(kc.parse_junit(recorded("inputs.strict.junit.xml"))) == STRICT


def test_ignore_missing_schemas_skips_the_unknown_kind() -> None:
    assert user_sees(kc.parse_json(recorded("inputs.strict-ignore-missing.json"))) == STRICT[:-1]


def test_text_report_without_strict() -> None:
    # Not strict: the unknown Service field and the duplicate key pass; text gives no apiVersion, so the
    # document in the source tells whether Widget belongs to a built-in group.
    lines = user_sees(kc.parse_text(recorded("inputs.text.txt")))
    assert lines == [STRICT[0], STRICT[1], STRICT[4], STRICT[5], STRICT[6], STRICT[7]]


def test_corpus_report() -> None:
    records = kc.parse_json(recorded("corpus.strict.json"))
    found = kc.findings(records, kc.SourceResolver(RECORDED), KUBE.is_builtin_group, KUBE.version)
    errors = [finding_line(f) for f in found if f.severity.name == "ERROR"]
    assert errors == [
        "../corpus/microservices-demo/kustomize/components/without-loadgenerator/delete-loadgenerator.patch.yaml"
        ":5:1: error [schema-invalid] deployment.apps/loadgenerator: $patch: unknown field '$patch'",
    ]
    unknown = {(f.rule, f.subject[1] if f.subject else "") for f in found if f.severity.name == "WARNING"}
    assert ("schema-unknown-kind", "HelmRelease") in unknown and ("schema-unknown-kind", "Gateway") in unknown
    assert {rule for rule, _ in unknown} == {"schema-unknown-kind"}
    assert len([f for f in found if f.rule == "schema-unknown-kind"]) == 81


def test_schema_file_names_match_kubeconform_kind_suffix() -> None:
    # The schema files kubeconform opened, as its messages name them.
    seen = set(re.findall(r"standalone-strict/([\w.-]+\.json)", recorded("inputs.strict.json")))
    assert seen == {"service-v1.json", "configmap-v1.json", "deployment-apps-v1.json"}
    assert {
        kc.schema_file_name("v1", "Service"),
        kc.schema_file_name("v1", "ConfigMap"),
        kc.schema_file_name("apps/v1", "Deployment"),
    } == seen
    assert kc.schema_file_name("gateway.networking.k8s.io/v1", "HTTPRoute") == "httproute-gateway-v1.json"


def test_kinds_sharing_a_schema_file_name_are_checked_in_separate_runs() -> None:
    from gitops_hooks.documents import parse

    text = "\n---\n".join(
        f"apiVersion: {av}\nkind: Kustomization\nmetadata:\n  name: k{n}\n"
        for n, av in enumerate(["kustomize.toolkit.fluxcd.io/v1", "kustomize.example.com/v1",
                                "kustomize.toolkit.fluxcd.io/v1", "v1"])
    )
    docs = parse("k.yaml", text.encode()).documents
    assert {kc.schema_file_name(d.api_version, d.kind) for d in docs[:3]} == {"kustomization-kustomize-v1.json"}
    by_file = {f"{n}.json": d for n, d in enumerate(docs)}
    assert kc._batches(by_file) == [["0.json", "2.json", "3.json"], ["1.json"]]


def test_command_line() -> None:
    settings = kc.Settings.from_config(
        {
            "strict": True,
            "kubeconform": {"schema_locations": ["default", "/srv/crds/{{ .ResourceKind }}.json"]},
            "limits": {"timeout_seconds": 30},
        },
        "1.33",
    )
    assert kc.command_line("/usr/bin/kubeconform", settings, settings.schema_locations, ["/tmp/in"]) == [
        "/usr/bin/kubeconform",
        "-output",
        "json",
        "-kubernetes-version",
        "1.33.0",
        "-strict",
        "-schema-location",
        "default",
        "-schema-location",
        "/srv/crds/{{ .ResourceKind }}.json",
        "/tmp/in",
    ]


def test_unreadable_report_is_an_error_for_the_administrator() -> None:
    with pytest.raises(kc.OutputError, match="kubeconform printed no JSON report"):
        kc.parse_json("failed parsing command line: flag provided but not defined: -bogus\n")


# ---------------------------------------------------------------------------- selected but missing

MISSING = "version: 1\nengine: kubeconform\nkubeconform:\n  command: /nonexistent/kubeconform\n"


def test_install_refuses_when_kubeconform_is_selected_but_missing(tmp_path: Path) -> None:
    repo = tmp_path / "server.git"
    git("init", "--bare", "--quiet", str(repo))
    (repo / "gitops-hooks").mkdir()
    (repo / "gitops-hooks" / "config.yaml").write_text(MISSING)
    proc = run_suite("install", str(repo))
    assert proc.returncode != 0
    assert (
        "engine: kubeconform is selected but '/nonexistent/kubeconform' is not an executable file"
        in proc.stderr
    )
    assert "Traceback" not in proc.stderr


def test_config_check_reports_the_missing_engine(server: Server) -> None:
    server.configure(MISSING)
    proc = run_suite("config", "check", str(server.path))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "engine: kubeconform is selected but '/nonexistent/kubeconform' is not an executable file; install "
        "kubeconform, set kubeconform.command to its path, or select engine: builtin"
    )


def test_push_is_refused_when_kubeconform_is_selected_but_missing(server: Server, clone: Clone) -> None:
    server.configure(MISSING)
    clone.write("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n")
    clone.commit()
    push = clone.push()
    assert not push.accepted
    lines = push.remote_lines()
    assert (
        ".:1:1: error [kubeconform-missing] push refused: engine: kubeconform is selected but "
        "'/nonexistent/kubeconform' is not an executable file; install kubeconform, set kubeconform.command "
        "to its path, or select engine: builtin; tell the administrator"
    ) in lines
    assert server.rev() is None


# ---------------------------------------------------------------------------- the engine in a push

REPLAY = """\
#!/bin/sh
# Stand-in for kubeconform: records its arguments and the schema files it was offered, then replies with
# kubeconform's recorded report for the invalid Deployment (and "valid" for the other objects).
printf '%s\\n' "$@" > "$LOG/argv"
for a in "$@"; do case "$a" in *KindSuffix*) ls "$(dirname "$a")" > "$LOG/schemas";; esac; done
for a in "$@"; do last="$a"; done
exec "$PYTHON" - "$last" "$RECORD" <<'EOF'
import json, pathlib, sys
folder, record = pathlib.Path(sys.argv[1]), json.loads(pathlib.Path(sys.argv[2]).read_text())
bad = next(r for r in record["resources"] if r["kind"] == "Deployment")
out = []
for f in sorted(folder.iterdir()):
    obj = json.loads(f.read_text())
    r = {"filename": str(f), "kind": obj["kind"], "name": obj["metadata"]["name"],
         "version": obj["apiVersion"], "status": "statusValid", "msg": ""}
    if obj["kind"] == "Deployment":
        r.update(status="statusInvalid", msg=bad["msg"], validationErrors=bad["validationErrors"])
    out.append(r)
print(json.dumps({"resources": out}))
sys.exit(1)
EOF
"""


def test_push_with_the_kubeconform_engine_maps_results_to_the_pushed_files(
    server: Server, clone: Clone, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    need_recorded()
    stand_in = tmp_path / "bin" / "kubeconform"
    stand_in.parent.mkdir()
    stand_in.write_text(REPLAY)
    stand_in.chmod(0o755)
    log = tmp_path / "log"
    log.mkdir()
    # The hook inherits the environment of `git push`; the stand-in reads where to log and what to replay.
    monkeypatch.setenv("LOG", str(log))
    monkeypatch.setenv("PYTHON", sys.executable)
    monkeypatch.setenv("RECORD", str(RECORDED / "inputs.strict.json"))
    server.configure(
        f"version: 1\nengine: kubeconform\nkubernetes_version: '1.33'\nkubeconform:\n  command: {stand_in}\n"
    )
    clone.write("apps/web.yaml", (RECORDED / "inputs/bad-types.yaml").read_text())
    clone.write("apps/ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n")
    clone.commit()
    push = clone.push()
    assert not push.accepted
    lines = push.remote_lines()
    assert (
        "apps/web.yaml:6:13: error [schema-invalid] deployment.apps/web: spec.replicas: 'three' is not of "
        "type integer"
    ) in lines
    assert (
        "apps/web.yaml:17:30: error [schema-invalid] deployment.apps/web: "
        "spec.template.spec.containers[0].ports[0].containerPort: 'http' is not of type integer"
    ) in lines
    argv = (log / "argv").read_text().splitlines()
    assert argv[:6] == ["-output", "json", "-kubernetes-version", "1.33.0", "-strict", "-schema-location"]
    assert argv[6].endswith("/{{ .ResourceKind }}{{ .KindSuffix }}.json")
    assert sorted((log / "schemas").read_text().split()) == ["deployment-apps-v1.json", "namespace-v1.json"]
    assert server.rev() is None


def test_push_checked_by_the_real_kubeconform_is_refused_at_the_lines(server: Server, clone: Clone) -> None:
    need_recorded()
    server.configure(f"version: 1\nengine: kubeconform\nkubernetes_version: '1.33'\n"
                     f"kubeconform:\n  command: {real_kubeconform()}\n")
    clone.write("apps/web.yaml", (RECORDED / "inputs/bad-types.yaml").read_text())
    clone.write("apps/ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n")
    clone.commit()
    push = clone.push()
    assert not push.accepted
    assert [line for line in push.remote_lines() if "] " in line] == [
        "apps/web.yaml:6:13: error [schema-invalid] deployment.apps/web: spec.replicas: 'three' is not of type integer",
        "apps/web.yaml:17:30: error [schema-invalid] deployment.apps/web: "
        "spec.template.spec.containers[0].ports[0].containerPort: 'http' is not of type integer",
    ], push.output
    assert server.rev() is None


def test_generated_schemas_refuse_what_the_builtin_engine_refuses(tmp_path: Path) -> None:
    from gitops_hooks import config, pipeline
    from gitops_hooks.documents import parse

    need_recorded()
    policy = config.Policy(config.checked({"kubernetes_version": "1.33"}, "test"))
    ctx = pipeline.make_context(policy)
    docs = parse("bad-types.yaml", (RECORDED / "inputs/bad-types.yaml").read_bytes()).documents
    location = kc._write_schemas(docs, ctx, tmp_path / "schemas")
    assert location == str(tmp_path / "schemas" / "{{ .ResourceKind }}{{ .KindSuffix }}.json")
    schema = json.loads((tmp_path / "schemas" / "deployment-apps-v1.json").read_text())
    validator = jsonschema_rs.validator_for(schema, validate_formats=False)
    paths = sorted(list(e.instance_path) for e in validator.iter_errors(docs[0].obj))
    assert ["spec", "replicas"] in paths
    assert ["spec", "template", "spec", "containers", 0, "ports", 0, "containerPort"] in paths


# ---------------------------------------------------------------------------- with the real binary


def kubeconform_policy(folder: Path, engine: str) -> Path:
    """A policy file selecting an engine; kubeconform is the real one of ../shared/tools."""
    policy = folder / f"{engine}.yaml"
    policy.write_text(f"version: 1\nengine: {engine}\nkubernetes_version: '1.33'\n"
                      f"kubeconform:\n  command: {real_kubeconform()}\n")
    return policy


def validate_findings(work: Path, engine: str, policy_dir: Path) -> list[str]:
    """What `gitops-hooks validate` reports with an engine: each finding's line and its hint."""
    proc = run_suite("validate", ".", "--policy", str(kubeconform_policy(policy_dir, engine)), cwd=work)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    assert "kubeconform-error" not in proc.stdout and "kubeconform-missing" not in proc.stdout, proc.stdout
    return sorted(line.strip() for line in proc.stdout.splitlines()
                  if "] " in line or line.lstrip().startswith("hint:"))


def test_real_kubeconform_gives_the_builtin_engines_findings(tmp_path: Path) -> None:
    need_recorded()
    work = tmp_path / "repo"
    shutil.copytree(RECORDED / "inputs", work)
    for name in ("duplicate-key.yaml", "not-yaml.yaml", "missing-kind.yaml"):
        (work / name).unlink()  # YAML and object errors are the suite's own, whatever the engine
    outputs = {engine: [line for line in validate_findings(work, engine, tmp_path) if "] " in line]
               for engine in ("builtin", "kubeconform")}
    assert outputs["kubeconform"] == outputs["builtin"]
    assert any("[schema-invalid]" in line for line in outputs["kubeconform"])


def test_real_kubeconform_version_runs() -> None:
    proc = subprocess.run([real_kubeconform(), "-v"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "development"  # built without version ldflags


# The corpora of test_corpora.py, each with fields broken the ways pushes break them (a wrong type, an unknown
# field), in built-in kinds, in custom resources checked against the CRDs of the tree, and in objects that
# only a kustomize render produces.
BREAKS = {
    "kube-prometheus": [
        ("manifests/prometheusOperator-deployment.yaml", "  replicas: 1\n", "  replicas: one\n"),
        ("manifests/grafana-service.yaml", "spec:\n", "spec:\n  portz: []\n"),
        ("manifests/prometheus-prometheus.yaml", "  replicas: 2\n", "  replicas: two\n"),  # a Prometheus
    ],
    "microservices-demo": [
        ("kubernetes-manifests/frontend.yaml", "- containerPort: 8080", "- containerPort: web"),
    ],
    "flux2-kustomize-helm-example": [
        ("apps/base/podinfo/release.yaml", "interval: 50m", "interval: 50"),  # a HelmRelease, through two overlays
        ("apps/base/podinfo/namespace.yaml", "metadata:\n", "metadata:\n  nam: podinfo\n"),
    ],
}
# Where the engines' reports differ by design: the hint for a kind without a schema names the setting that
# gives it one, which is schema_dirs for the built-in engine and kubeconform.schema_locations for kubeconform.
HINTS = {
    "builtin": "hint: commit its CustomResourceDefinition, or ask the administrator to add it to schema_dirs",
    "kubeconform": "hint: commit its CustomResourceDefinition, or ask the administrator to add a schema location "
                   "for it (kubeconform.schema_locations)",
}


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_real_kubeconform_finds_what_the_builtin_engine_finds_in_the_corpora(name: str, tmp_path: Path) -> None:
    need_corpus()
    work = tmp_path / name
    shutil.copytree(CORPUS / name, work)
    for rel, old, new in BREAKS[name]:
        text = (work / rel).read_text(encoding="utf-8")
        assert old in text, (rel, old)
        (work / rel).write_text(text.replace(old, new, 1), encoding="utf-8")
    found = {engine: validate_findings(work, engine, tmp_path) for engine in ("builtin", "kubeconform")}
    unknown_kinds = sum("[schema-unknown-kind]" in line for line in found["builtin"])
    assert found["builtin"].count(HINTS["builtin"]) == unknown_kinds
    assert found["kubeconform"].count(HINTS["kubeconform"]) == unknown_kinds
    assert [HINTS["builtin"] if line == HINTS["kubeconform"] else line for line in found["kubeconform"]] == \
        found["builtin"]
    invalid = {line.split(":", 1)[0] for line in found["kubeconform"] if "[schema-invalid]" in line}
    assert invalid == {rel for rel, _, _ in BREAKS[name]}, found["kubeconform"]


def test_missing_properties_read_as_missing_required_fields() -> None:
    # Not in the recordings: the wording of kubeconform's JSON schema library for `required`.
    from gitops_hooks.documents import parse

    doc = parse("a.yaml", b"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: w\nspec:\n  replicas: 1\n")
    rec = kc.Record("a.yaml", "Deployment", "w", "apps/v1", "invalid",
                    "jsonschema validation failed with 'file:///s.json#' - at '/spec': missing properties: "
                    "'selector', 'template'")
    found = kc.findings([rec], lambda r: doc.documents[0], KUBE.is_builtin_group, KUBE.version)
    assert [finding_line(f) for f in found] == [
        "a.yaml:6:3: error [schema-invalid] deployment.apps/w: spec: missing required fields 'selector', 'template'"
    ]
