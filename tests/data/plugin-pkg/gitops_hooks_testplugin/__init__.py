"""A rule plugin for the gitops-hooks tests: objects that opt in must name their owner.

Only objects annotated `testplugin.gitops-hooks.invalid/check` are looked at: "true" asks for the check,
"raise" makes the plugin raise (to test that a failing plugin refuses the push).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gitops_hooks.findings import Finding, Rule, Severity, finding

MARK = "testplugin.gitops-hooks.invalid/check"

RULES = [
    Rule("testplugin-owner", "testplugin", Severity.ERROR, "Objects that opt in name their owner.",
         "Add the annotation `owner` with the team's name.",
         "metadata:\n  annotations:\n    owner: team-a\n"),
]


def check_document(doc: Any, ctx: Any) -> Iterator[Finding]:
    annotations = doc.metadata.get("annotations") or {}
    mark = annotations.get(MARK)
    if mark == "raise":
        raise RuntimeError("the plugin was asked to fail")
    if mark == "true" and not annotations.get("owner"):
        line, col = doc.locate(("metadata", "annotations"))
        yield finding("testplugin-owner", doc.path, line, col, f"{doc.describe()}: no owner annotation",
                      "add metadata.annotations.owner")
