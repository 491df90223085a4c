"""Policy end to end: severities, path excludes, per-ref policies, tighten-only repository policy,
suppression by annotation, allow entries, and push options (explain; none disables a check)."""

from __future__ import annotations

from conftest import Clone, Push, Server

HOOK_JOB = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: db-migrate
  namespace: apps
  annotations:
    helm.sh/hook: pre-upgrade{extra}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: migrate
          image: registry.example.com/web-migrate:1.4.2
"""

SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: settings
  namespace: apps{extra}
stringData:
  mode: fast
"""


def push_files(clone: Clone, files: dict[str, str], *args: str, ref: str = "HEAD:refs/heads/main") -> Push:
    for path, text in files.items():
        clone.write(path, text)
    clone.commit("change")
    return clone.push(*args, ref=ref)


def rule_lines(push: Push, rule: str) -> list[str]:
    return [line for line in push.remote_lines()
            if any(f": {sev} [{rule}] " in line for sev in ("error", "warning", "info"))]


def test_administrator_sets_the_severity_of_a_rule(server: Server, clone: Clone) -> None:
    server.configure("rules:\n  imperative-script: warning\n")
    push = push_files(clone, {"tools/check.sh": "echo ok\n"})
    assert push.accepted, push.output
    assert rule_lines(push, "imperative-script") == [
        "tools/check.sh:1:1: warning [imperative-script] tools/check.sh is a script (its extension is .sh)"]


def test_path_excludes_skip_files_everywhere_else_is_checked(server: Server, clone: Clone) -> None:
    server.configure("paths:\n  exclude: ['docs/**']\n")
    push = push_files(clone, {"docs/howto/setup.sh": "kubectl apply -f .\n", "docs/Makefile": "all:\n"})
    assert push.accepted, push.output
    assert rule_lines(push, "imperative-script") == []
    push = push_files(clone, {"tools/setup.sh": "kubectl apply -f .\n"})
    assert not push.accepted
    assert [x.split(":")[0] for x in rule_lines(push, "imperative-script")] == ["tools/setup.sh"]


def test_policies_per_ref_are_stricter_on_main(server: Server, clone: Clone) -> None:
    server.configure("ref_policies:\n  main:\n    rules:\n      imperative-hook: error\n")
    clone.write("apps/job.yaml", HOOK_JOB.format(extra=""))
    clone.commit("hook job")
    on_branch = clone.push(ref="HEAD:refs/heads/dev")
    assert on_branch.accepted, on_branch.output
    assert rule_lines(on_branch, "imperative-hook")[0].startswith("apps/job.yaml:7:5: warning [imperative-hook]")
    on_main = clone.push(ref="HEAD:refs/heads/main")
    assert not on_main.accepted
    assert rule_lines(on_main, "imperative-hook")[0].startswith("apps/job.yaml:7:5: error [imperative-hook]")
    assert server.rev() is None and server.rev("refs/heads/dev") is not None


def test_repository_policy_can_tighten(server: Server, clone: Clone) -> None:
    push = push_files(clone, {".gitops-hooks.yaml": "rules:\n  imperative-hook: error\n",
                              "apps/job.yaml": HOOK_JOB.format(extra="")})
    assert not push.accepted
    assert rule_lines(push, "imperative-hook")[0].startswith("apps/job.yaml:7:5: error [imperative-hook]")


def test_repository_policy_cannot_loosen_and_says_so(server: Server, clone: Clone) -> None:
    loosen = ("rules:\n  secret-plaintext: 'off'\n  imperative-script: warning\npaths:\n  exclude: ['**']\n"
              "suppressible: [secret-plaintext]\nallow:\n  - {rule: secret-plaintext}\n")
    push = push_files(clone, {".gitops-hooks.yaml": loosen, "apps/settings.yaml": SECRET.format(extra=""),
                              "tools/x.sh": "echo\n"})
    assert not push.accepted
    assert sorted(x.split(" [policy-loosening-ignored] ")[1] for x in rule_lines(push, "policy-loosening-ignored")) == [
        "allow: this setting belongs to the server's configuration; the server's setting stands",
        "paths: this setting belongs to the server's configuration; the server's setting stands",
        "rules.imperative-script: warning is looser than error; the server's setting stands",
        "rules.secret-plaintext: off is looser than error; the server's setting stands",
        "suppressible: this setting belongs to the server's configuration; the server's setting stands",
    ]
    assert rule_lines(push, "secret-plaintext")[0].startswith("apps/settings.yaml:7:3: error")
    assert rule_lines(push, "imperative-script")[0].startswith("tools/x.sh:1:1: error")


def test_suppression_works_for_suppressible_rules_and_is_listed(server: Server, clone: Clone) -> None:
    server.configure("rules:\n  imperative-hook: error\nsuppressible: [imperative-hook]\n")
    job = HOOK_JOB.format(extra="\n    gitops-hooks.io/suppress: imperative-hook")
    push = push_files(clone, {"apps/job.yaml": job})
    assert push.accepted, push.output
    assert rule_lines(push, "imperative-hook") == []
    assert rule_lines(push, "policy-suppressed") == [
        "apps/job.yaml:8:5: info [policy-suppressed] job.batch/db-migrate: 1 [imperative-hook] finding suppressed "
        "by its gitops-hooks.io/suppress annotation"]


def test_suppression_of_a_rule_not_suppressible_is_refused_and_listed(server: Server, clone: Clone) -> None:
    server.configure("suppressible: [imperative-hook]\n")
    push = push_files(clone, {"apps/settings.yaml": SECRET.format(
        extra="\n  annotations:\n    gitops-hooks.io/suppress: secret-plaintext")})
    assert not push.accepted
    assert rule_lines(push, "secret-plaintext")[0].startswith("apps/settings.yaml:9:3: error [secret-plaintext]")
    assert rule_lines(push, "policy-suppress-refused") == [
        "apps/settings.yaml:7:5: warning [policy-suppress-refused] secret/settings: gitops-hooks.io/suppress asks "
        "to suppress [secret-plaintext], which the administrator has not made suppressible; the finding stands"]


def test_suppression_applies_to_the_annotated_object_only(server: Server, clone: Clone) -> None:
    server.configure("rules:\n  imperative-hook: error\nsuppressible: [imperative-hook]\n")
    other = HOOK_JOB.format(extra="").replace("db-migrate", "seed")
    push = push_files(clone, {"apps/job.yaml": HOOK_JOB.format(extra="\n    gitops-hooks.io/suppress: imperative-hook"),
                              "apps/seed.yaml": other})
    assert not push.accepted
    assert [x.split(":")[0] for x in rule_lines(push, "imperative-hook")] == ["apps/seed.yaml"]


def test_allow_entries_in_the_server_policy(server: Server, clone: Clone) -> None:
    server.configure("allow:\n  - {rule: imperative-script, path: 'tools/*.sh'}\n"
                     "  - {rule: secret-plaintext, kind: Secret, namespace: apps, name: settings}\n")
    push = push_files(clone, {"tools/x.sh": "echo\n", "apps/settings.yaml": SECRET.format(extra="")})
    assert push.accepted, push.output
    push = push_files(clone, {"apps/other.yaml": SECRET.format(extra="").replace("name: settings", "name: other")})
    assert not push.accepted
    assert [x.split(":")[0] for x in rule_lines(push, "secret-plaintext")] == ["apps/other.yaml"]


def test_explain_push_option_prints_each_failing_rules_explanation(server: Server, clone: Clone) -> None:
    files = {"tools/x.sh": "echo\n", "apps/settings.yaml": SECRET.format(extra="")}
    plain = push_files(clone, files)
    assert not plain.accepted
    assert not [x for x in plain.remote_lines() if x.startswith("    | ")]
    explained = clone.push("-o", "gitops.explain")
    assert not explained.accepted
    lines = explained.remote_lines()
    assert "    | A GitOps repository holds the desired state, not the steps that produce it. A script in it is " \
           "either run by hand (so the cluster drifts from git) or by something outside the reconciler. Move it " \
           "to the application's repository or its CI, commit what it would generate, or let an operator or a " \
           "controller do the work. Scripts are recognised by a `#!` first line, by the executable mode 100755, " \
           "or by extension (.sh .bash .zsh .ksh .fish .ps1 .bat .cmd .py .rb .pl ...)." in lines
    assert any(x.startswith("    | Whatever is committed stays in git history for ever") for x in lines)
    assert "    | compliant example:" in lines
    assert "    |     sops:" in lines


def test_no_push_option_disables_a_check(server: Server, clone: Clone) -> None:
    push = push_files(clone, {"tools/x.sh": "echo\n"}, "-o", "gitops.skip", "-o", "ci.skip",
                      "-o", "gitops.disable=imperative-script", "-o", "gitops.rules.imperative-script=off")
    assert not push.accepted
    assert rule_lines(push, "imperative-script")[0].startswith("tools/x.sh:1:1: error")
    assert server.rev() is None
