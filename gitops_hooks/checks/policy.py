"""Rules about the policy itself: suppressions asked for by annotation on an object."""

from __future__ import annotations

from ..findings import Rule, Severity, register

SUPPRESS_ANNOTATION = "gitops-hooks.io/suppress"

register(
    Rule("policy-suppressed", "policy", Severity.INFO,
         "A finding was suppressed on one object by its gitops-hooks.io/suppress annotation.",
         "An object may carry `gitops-hooks.io/suppress: rule-id[,rule-id]` to silence those rules on "
         "itself, but only for rules the administrator lists under `suppressible` in the server's "
         "configuration. Every suppression is listed in the push output so that it stays visible.",
         "metadata:\n  name: legacy-config\n  annotations:\n    gitops-hooks.io/suppress: imperative-hook\n"),
    Rule("policy-suppress-refused", "policy", Severity.WARNING,
         "An object asks to suppress a rule that the administrator has not made suppressible.",
         "Only rules listed under `suppressible` in the server's configuration can be suppressed by an "
         "annotation; the findings stand. Fix the object, or ask the administrator.",
         "# server configuration (gitops-hooks/config.yaml in the bare repository):\n"
         "suppressible: [imperative-hook]\n"),
)
