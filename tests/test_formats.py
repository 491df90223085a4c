"""Machine-readable reports from the real `gitops-hooks validate --output ...`, checked with real parsers:
jsonschema for the JSON report (its own schema) and for SARIF (the OASIS SARIF 2.1.0 schema), xml.etree for
JUnit, and GitHub's workflow-command rules for annotations."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jsonschema
import pytest
from conftest import ROOT, run_suite

from gitops_hooks.formats import escape_data, escape_property

DATA = Path(__file__).parent / "data"
SARIF_SCHEMA = DATA / "sarif-schema-2.1.0.json"
REPORT_SCHEMA = ROOT / "schemas" / "report.schema.json"

BAD_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: apps
spec:
  replicas: two
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:1.27
"""
WIDGET = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: gadget\n  namespace: apps\n"
NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n"
ODD_NAME = "apps/we,ird: 100%.yaml"  # `,` `:` `%` and a space: escaped in every format


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    (root / "apps").mkdir()
    (root / ODD_NAME).write_text(BAD_DEPLOYMENT, encoding="utf-8")
    (root / "apps/broken.yaml").write_text("a: [1\n", encoding="utf-8")
    (root / "apps/widget.yaml").write_text(WIDGET, encoding="utf-8")
    return root


def report(root: Path, fmt: str, code: int = 1) -> str:
    proc = run_suite("validate", "--output", fmt, cwd=root)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def findings(tree: Path) -> list[dict[str, Any]]:
    """The findings as the JSON report gives them; every other format must carry the same."""
    data = json.loads(report(tree, "json"))
    return [f for r in data["results"] for f in r["findings"]]


def test_the_tree_has_errors_and_a_warning_with_a_hint(findings: list[dict[str, Any]]) -> None:
    assert [(f["file"], f["rule"], f["severity"]) for f in findings] == [
        ("apps/broken.yaml", "yaml-syntax", "error"),
        (ODD_NAME, "schema-invalid", "error"),
        ("apps/widget.yaml", "schema-unknown-kind", "warning"),
    ]
    assert findings[2]["hint"]
    web = {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "apps", "name": "web"}
    assert findings[1]["object"] == web


# ---------------------------------------------------------------------------- json

def report_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(REPORT_SCHEMA.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_json_report_is_valid_against_its_schema(tree: Path) -> None:
    data = json.loads(report(tree, "json"))
    report_validator().validate(data)
    assert data["ok"] is False
    assert (data["errors"], data["warnings"]) == (2, 1)


def test_json_report_agrees_with_the_text_report(tree: Path, findings: list[dict[str, Any]]) -> None:
    text = report(tree, "text")
    for f in findings:
        assert f"{f['file']}:{f['line']}:{f['column']}: {f['severity']} [{f['rule']}] {f['message']}" in text


def test_report_schema_refuses_what_is_not_a_report(tree: Path) -> None:
    good = json.loads(report(tree, "json"))
    validator = report_validator()
    for mutate in (
        lambda d: d["results"][0]["findings"][0].pop("line"),
        lambda d: d["results"][0]["findings"][0].update(severity="fatal"),
        lambda d: d.update(ok="no"),
    ):
        bad = copy.deepcopy(good)
        mutate(bad)
        assert not validator.is_valid(bad)


def test_json_report_of_a_clean_tree(tmp_path: Path) -> None:
    (tmp_path / "ns.yaml").write_text(NAMESPACE, encoding="utf-8")
    data = json.loads(report(tmp_path, "json", code=0))
    report_validator().validate(data)
    assert data["ok"] is True
    assert data["results"][0]["findings"] == []
    assert data["results"][0]["stats"]["objects"] == 1


# ---------------------------------------------------------------------------- sarif

def sarif_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SARIF_SCHEMA.read_text(encoding="utf-8"))
    assert schema["id"].endswith("/sarif-schema-2.1.0.json")
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)


def test_sarif_is_valid_sarif_2_1_0(tree: Path) -> None:
    log = json.loads(report(tree, "sarif"))
    errors = sorted(sarif_validator().iter_errors(log), key=str)
    assert errors == [], errors[0].message if errors else ""
    assert log["version"] == "2.1.0"


def test_sarif_schema_catches_a_broken_log(tree: Path) -> None:
    """The vendored schema is live: a log it should refuse is refused."""
    log = json.loads(report(tree, "sarif"))
    log["runs"][0]["results"][0]["level"] = "fatal"
    assert not sarif_validator().is_valid(log)


def test_sarif_rules_come_from_the_catalogue(tree: Path) -> None:
    log = json.loads(report(tree, "sarif"))
    driver = log["runs"][0]["tool"]["driver"]
    listed = run_suite("rules").stdout.splitlines()
    catalogue = {line.split()[0]: line.split()[2] for line in listed}
    assert {r["id"] for r in driver["rules"]} == set(catalogue)
    level = {"error": "error", "warning": "warning", "info": "note"}
    for r in driver["rules"]:
        assert r["defaultConfiguration"]["level"] == level[catalogue[r["id"]]]
        assert r["shortDescription"]["text"]
        assert r["fullDescription"]["text"]
    explained = run_suite("explain", "schema-invalid").stdout
    rule = next(r for r in driver["rules"] if r["id"] == "schema-invalid")
    assert rule["shortDescription"]["text"] in explained
    assert rule["fullDescription"]["text"] in explained


def test_sarif_results_carry_rule_level_file_line_column_message(
    tree: Path, findings: list[dict[str, Any]]
) -> None:
    run = json.loads(report(tree, "sarif"))["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    level = {"error": "error", "warning": "warning", "info": "note"}
    got = []
    for res in run["results"]:
        assert rules[res["ruleIndex"]]["id"] == res["ruleId"]
        loc = res["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
        got.append((res["ruleId"], res["level"], unquote(loc["artifactLocation"]["uri"]),
                    loc["region"]["startLine"], loc["region"]["startColumn"], res["message"]["text"]))
    want = [(f["rule"], level[f["severity"]], f["file"], f["line"], f["column"],
             f["message"] + (f"\nhint: {f['hint']}" if f.get("hint") else "")) for f in findings]
    assert got == want
    odd = next(r for r in run["results"] if r["ruleId"] == "schema-invalid")
    uri = odd["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "apps/we%2Cird%3A%20100%25.yaml"


# ---------------------------------------------------------------------------- junit

def test_junit_parses_and_counts(tree: Path, findings: list[dict[str, Any]]) -> None:
    root = ET.fromstring(report(tree, "junit"))
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "2", "0")
    [suite] = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == int(suite.get("tests", "")) == 3
    for case, f in zip(cases, findings, strict=True):
        assert (case.get("file"), case.get("line")) == (f["file"], str(f["line"]))
        assert case.get("name") == f"{f['rule']} at {f['file']}:{f['line']}:{f['column']}"
        failure = case.find("failure")
        if f["severity"] == "error":
            assert failure is not None
            assert failure.get("type") == f["rule"]
            assert failure.get("message") == f["message"]
            assert f"{f['file']}:{f['line']}:{f['column']}: error [{f['rule']}]" in (failure.text or "")
        else:
            assert failure is None
            out = case.find("system-out")
            assert out is not None and f"warning [{f['rule']}]" in (out.text or "")


def test_junit_of_a_clean_tree_has_one_passing_case(tmp_path: Path) -> None:
    (tmp_path / "ns.yaml").write_text(NAMESPACE, encoding="utf-8")
    root = ET.fromstring(report(tmp_path, "junit", code=0))
    assert (root.get("tests"), root.get("failures")) == ("1", "0")
    assert root.find("testsuite/testcase/failure") is None


# ---------------------------------------------------------------------------- github

def unescape(text: str) -> str:
    """As GitHub's runner decodes workflow commands: %0D, %0A, %3A, %2C, then %25."""
    for code, char in (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")):
        text = text.replace(code, char)
    return text


def parse_command(line: str) -> tuple[str, dict[str, str], str]:
    assert line.startswith("::")
    head, _, data = line[2:].partition("::")
    command, _, props_text = head.partition(" ")
    props = {}
    for pair in props_text.split(","):
        key, _, value = pair.partition("=")
        props[key] = unescape(value)
    return command, props, unescape(data)


def test_github_annotations_carry_every_field(tree: Path, findings: list[dict[str, Any]]) -> None:
    lines = report(tree, "github").splitlines()
    commands = [parse_command(line) for line in lines if line.startswith("::")]
    assert len(commands) == len(findings)
    command_of = {"error": "error", "warning": "warning", "info": "notice"}
    for (command, props, message), f in zip(commands, findings, strict=True):
        assert command == command_of[f["severity"]]
        assert props == {"file": f["file"], "line": str(f["line"]), "col": str(f["column"]),
                         "title": f"{f['rule']} ({f['severity']})"}
        assert message == f["message"] + (f"\nhint: {f['hint']}" if f.get("hint") else "")
    assert lines[-1].endswith("2 errors, 1 warning")
    odd = next(line for line in lines if "schema-invalid" in line)
    assert odd.startswith("::error file=apps/we%2Cird%3A 100%25.yaml,line=7,col=13,")


def test_github_escaping_rules() -> None:
    assert escape_data("100% done\r\nnext: a,b") == "100%25 done%0D%0Anext: a,b"
    assert escape_property("a:b,c%d\ne") == "a%3Ab%2Cc%25d%0Ae"
    assert escape_property("%3A") == "%253A"  # an already escaped-looking value stays itself
