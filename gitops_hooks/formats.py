"""Machine-readable reports: json, junit, sarif and GitHub annotations, beside report.py's text.

Every format carries, for each finding, the rule id, the severity, the file, the line, the column and the
message. The JSON report follows schemas/report.schema.json; the SARIF log follows SARIF 2.1.0 with the
rule metadata taken from the catalogue.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

from . import __version__
from .findings import Finding, Rule, Severity, catalogue
from .pipeline import Result

TOOL = "gitops-hooks"
FORMATS = ("text", "json", "junit", "sarif", "github")
REPORT_FORMAT_VERSION = 1
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
SARIF_LEVEL = {
    Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note", Severity.OFF: "none",
}
GITHUB_COMMAND = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def ordered(findings: Sequence[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (f.path, f.line, f.column, -f.severity, f.rule, f.message))


def full_message(f: Finding) -> str:
    return f"{f.message}\nhint: {f.hint}" if f.hint else f.message


def summary_line(result: Result) -> str:
    s = result.stats
    return (f"{result.label}: {s.files} files, {s.manifests} manifests, {s.objects} objects: "
            f"{result.errors} error{'s' if result.errors != 1 else ''}, "
            f"{result.warnings} warning{'s' if result.warnings != 1 else ''}")


# ---------------------------------------------------------------------------- json

def finding_json(f: Finding) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rule": f.rule, "severity": str(f.severity), "file": f.path,
        "line": f.line, "column": f.column, "message": f.message,
    }
    if f.hint:
        out["hint"] = f.hint
    if f.subject is not None:
        api_version, kind, namespace, name = f.subject
        out["object"] = {"apiVersion": api_version, "kind": kind, "namespace": namespace, "name": name}
    return out


def result_json(result: Result) -> dict[str, Any]:
    s = result.stats
    return {
        "label": result.label,
        "ok": result.ok,
        "errors": result.errors,
        "warnings": result.warnings,
        "stats": {"files": s.files, "manifests": s.manifests, "objects": s.objects,
                  "rendered": s.rendered, "seconds": round(s.seconds, 3)},
        "findings": [finding_json(f) for f in ordered(result.findings)],
    }


def report_json(results: Sequence[Result]) -> dict[str, Any]:
    return {
        "format": "gitops-hooks-report",
        "version": REPORT_FORMAT_VERSION,
        "tool": {"name": TOOL, "version": __version__},
        "ok": all(r.ok for r in results),
        "errors": sum(r.errors for r in results),
        "warnings": sum(r.warnings for r in results),
        "results": [result_json(r) for r in results],
    }


def render_json(results: Sequence[Result]) -> str:
    return json.dumps(report_json(results), indent=2, ensure_ascii=False)


# ---------------------------------------------------------------------------- junit

def _testcase(suite: ET.Element, f: Finding) -> None:
    case = ET.SubElement(suite, "testcase", {
        "classname": f.path, "name": f"{f.rule} at {f.path}:{f.line}:{f.column}",
        "file": f.path, "line": str(f.line), "time": "0",
    })
    detail = f"{f.path}:{f.line}:{f.column}: {f.severity} [{f.rule}] {full_message(f)}"
    if f.severity is Severity.ERROR:
        failure = ET.SubElement(case, "failure", {"message": f.message, "type": f.rule})
        failure.text = detail
    else:
        ET.SubElement(case, "system-out").text = detail


def render_junit(results: Sequence[Result]) -> str:
    """One test suite per checked tree; one test case per finding (errors fail, others pass with output)."""
    root = ET.Element("testsuites", {"name": TOOL})
    total = failures = 0
    for result in results:
        cases = ordered(result.findings)
        suite = ET.SubElement(root, "testsuite", {
            "name": result.label, "tests": str(max(1, len(cases))), "failures": str(result.errors),
            "errors": "0", "skipped": "0", "time": f"{result.stats.seconds:.3f}",
        })
        for f in cases:
            _testcase(suite, f)
        if not cases:
            ET.SubElement(suite, "testcase",
                          {"classname": TOOL, "name": f"{result.label}: no findings", "time": "0"})
        total += max(1, len(cases))
        failures += result.errors
    root.set("tests", str(total))
    root.set("failures", str(failures))
    root.set("errors", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


# ---------------------------------------------------------------------------- sarif

def sarif_rule(r: Rule) -> dict[str, Any]:
    help_text = r.explanation
    markdown = r.explanation
    if r.example:
        help_text += "\n\nCompliant example:\n\n" + r.example
        markdown += "\n\nCompliant example:\n\n```yaml\n" + r.example.rstrip() + "\n```"
    return {
        "id": r.id,
        "name": "".join(part.capitalize() for part in r.id.split("-")),
        "shortDescription": {"text": r.summary},
        "fullDescription": {"text": r.explanation or r.summary},
        "help": {"text": help_text or r.summary, "markdown": markdown or r.summary},
        "defaultConfiguration": {"level": SARIF_LEVEL[r.severity], "enabled": r.severity is not Severity.OFF},
        "properties": {"tags": [r.family], "family": r.family, "source": r.source},
    }


def sarif_location(path: str) -> dict[str, str]:
    """Paths of the tree are relative to the repository root (%SRCROOT%); a path outside it is absolute."""
    if path.startswith("/"):
        return {"uri": "file://" + quote(path, safe="/")}
    return {"uri": quote(path, safe="/"), "uriBaseId": "%SRCROOT%"}


def sarif_result(f: Finding, index: dict[str, int], label: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ruleId": f.rule,
        "level": SARIF_LEVEL[f.severity],
        "message": {"text": full_message(f)},
        "locations": [{"physicalLocation": {
            "artifactLocation": sarif_location(f.path),
            "region": {"startLine": max(1, f.line), "startColumn": max(1, f.column)},
        }}],
        "properties": {"severity": str(f.severity), "snapshot": label},
    }
    if f.rule in index:
        out["ruleIndex"] = index[f.rule]
    return out


def report_sarif(results: Sequence[Result]) -> dict[str, Any]:
    rules = sorted(catalogue().values(), key=lambda r: r.id)
    index = {r.id: i for i, r in enumerate(rules)}
    sarif_results = [sarif_result(f, index, r.label) for r in results for f in ordered(r.findings)]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": TOOL, "version": __version__, "semanticVersion": __version__,
                                "rules": [sarif_rule(r) for r in rules]}},
            "invocations": [{"executionSuccessful": True}],
            "columnKind": "unicodeCodePoints",
            "results": sarif_results,
        }],
    }


def render_sarif(results: Sequence[Result]) -> str:
    return json.dumps(report_sarif(results), indent=2, ensure_ascii=False)


# ---------------------------------------------------------------------------- github

def escape_data(text: str) -> str:
    """A workflow command's message: % and line breaks are encoded."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: as data, and also `:` and `,`."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotation(f: Finding) -> str:
    command = GITHUB_COMMAND.get(f.severity, "notice")
    props = ",".join(f"{k}={escape_property(v)}" for k, v in (
        ("file", f.path), ("line", str(f.line)), ("col", str(f.column)),
        ("title", f"{f.rule} ({f.severity})"),
    ))
    return f"::{command} {props}::{escape_data(full_message(f))}"


def render_github(results: Sequence[Result]) -> str:
    lines = [github_annotation(f) for r in results for f in ordered(r.findings)]
    lines.extend(summary_line(r) for r in results)
    return "\n".join(lines)


# ---------------------------------------------------------------------------- dispatch

def render(results: Sequence[Result], fmt: str) -> str:
    from .report import render_text

    renderers: dict[str, Callable[[Sequence[Result]], str]] = {
        "text": lambda rs: render_text(rs, max_findings=100_000),
        "json": render_json,
        "junit": render_junit,
        "sarif": render_sarif,
        "github": render_github,
    }
    renderer = renderers.get(fmt)
    if renderer is None:
        raise ValueError(f"unknown output format {fmt!r} (use {', '.join(FORMATS)})")
    return renderer(results)
