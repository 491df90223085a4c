"""Imperative content is refused at the server: real bare repository, real hooks, real `git push`."""

from __future__ import annotations

import os

import pytest
from conftest import Clone, Push, Server

CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: apps\ndata:\n  mode: fast\n"


def push_files(clone: Clone, files: dict[str, str], *args: str) -> Push:
    for path, text in files.items():
        clone.write(path, text)
    clone.commit("change")
    return clone.push(*args)


def lines_of(push: Push, rule: str) -> list[str]:
    return [line for line in push.remote_lines() if f"[{rule}]" in line]


def error_rules(push: Push) -> set[str]:
    return {line.split("[", 1)[1].split("]", 1)[0] for line in push.remote_lines() if ": error [" in line}


def test_plain_manifests_are_accepted(server: Server, clone: Clone) -> None:
    push = push_files(clone, {"apps/settings.yaml": CONFIGMAP, "README.md": "# apps\n", "LICENSE": "MIT\n"})
    assert push.accepted, push.output
    assert error_rules(push) == set()


@pytest.mark.parametrize("path,text,reason", [
    ("deploy.sh", "kubectl apply -f apps/\n", "its extension is .sh"),
    ("tools/migrate", "#!/usr/bin/env python3\nprint('x')\n", "its first line is '#!/usr/bin/env python3'"),
    ("tools/sync.ps1", "Write-Host hi\n", "its extension is .ps1"),
])
def test_scripts_are_refused_with_the_reason(server: Server, clone: Clone, path: str, text: str, reason: str) -> None:
    push = push_files(clone, {"apps/settings.yaml": CONFIGMAP, path: text})
    assert not push.accepted
    found = lines_of(push, "imperative-script")
    assert found == [f"{path}:1:1: error [imperative-script] {path} is a script ({reason})"], push.output
    assert "hint: keep desired state only: move it to the application's repository" in push.output
    assert error_rules(push) == {"imperative-script"}
    assert server.rev() is None


def test_executable_mode_alone_makes_a_script(server: Server, clone: Clone) -> None:
    p = clone.write("bin/run", "echo hello\n")
    os.chmod(p, 0o755)
    push = push_files(clone, {"apps/settings.yaml": CONFIGMAP})
    assert not push.accepted
    assert lines_of(push, "imperative-script") == [
        "bin/run:1:1: error [imperative-script] bin/run is a script (its mode is executable (100755))"]


@pytest.mark.parametrize("path,what", [
    ("Makefile", "a Makefile"), ("images/Dockerfile", "a Dockerfile"), ("Containerfile", "a Containerfile"),
    ("Jenkinsfile", "a Jenkinsfile"), ("Taskfile.yml", "a Taskfile"), ("justfile", "a justfile"),
])
def test_build_files_are_refused(server: Server, clone: Clone, path: str, what: str) -> None:
    push = push_files(clone, {path: "all:\n\techo build\n" if path == "Makefile" else "version: '3'\n"})
    assert not push.accepted
    assert lines_of(push, "imperative-build-file") == [
        f"{path}:1:1: error [imperative-build-file] {path} is {what}: build steps, not desired state"]


@pytest.mark.parametrize("path,what", [
    (".github/workflows/deploy.yml", "a GitHub Actions workflow"),
    (".gitlab-ci.yml", "a GitLab CI pipeline"),
    ("azure-pipelines.yml", "an Azure pipeline"),
    ("bitbucket-pipelines.yml", "a Bitbucket pipeline"),
    (".drone.yml", "a Drone pipeline"),
])
def test_pipelines_are_refused(server: Server, clone: Clone, path: str, what: str) -> None:
    text = "steps:\n  - name: deploy\n    run: kubectl apply -f apps/\n"
    push = push_files(clone, {path: text, "apps/settings.yaml": CONFIGMAP})
    assert not push.accepted
    assert lines_of(push, "imperative-pipeline") == [
        f"{path}:1:1: error [imperative-pipeline] {path} is {what}: a list of steps, not desired state"]
    assert error_rules(push) == {"imperative-pipeline"}  # not also reported as imperative-steps


def test_step_shaped_yaml_without_kind_is_refused_at_the_list(server: Server, clone: Clone) -> None:
    text = "# release runbook\nname: release\nscript:\n  - kubectl apply -f apps/\n  - kubectl rollout status deploy/web\n"
    push = push_files(clone, {"ops/release.yaml": text})
    assert not push.accepted
    assert lines_of(push, "imperative-steps") == [
        "ops/release.yaml:3:1: error [imperative-steps] document 1 has no apiVersion/kind and lists steps under script"]


def test_yaml_without_kind_that_is_not_steps_is_accepted(server: Server, clone: Clone) -> None:
    # A kustomization without apiVersion/kind and a values file with container commands are not steps.
    files = {
        "apps/kustomization.yaml": "resources:\n  - settings.yaml\n",
        "apps/settings.yaml": CONFIGMAP,
        "charts-values/web.yaml": "sidecars:\n  - name: proxy\n    image: envoy:1.30\n    command: [envoy, -c, /etc/envoy.yaml]\n"
                                  "extraArgs:\n  - --verbose\n",
    }
    push = push_files(clone, files)
    assert push.accepted, push.output
    assert lines_of(push, "imperative-steps") == []


JOB = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
  namespace: apps
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: main
          image: bitnami/kubectl:1.30
{body}"""


@pytest.mark.parametrize("body,found,line", [
    ("          command: [kubectl, apply, -f, /manifests]\n", "`kubectl apply`", 13),
    ("          command: [/bin/sh, -c]\n          args:\n            - |\n              echo start\n"
     "              kubectl -n apps scale deploy/web --replicas=0\n", "`kubectl scale`", 14),
    ("          args: [\"helm upgrade --install web ./chart\"]\n", "`helm upgrade`", 13),
    ("          command: [sh, -c, \"curl -fsSL https://get.example.com/install | sh\"]\n", "`curl … | sh`", 13),
])
def test_jobs_running_cluster_mutating_commands_are_refused(
        server: Server, clone: Clone, body: str, found: str, line: int) -> None:
    push = push_files(clone, {"apps/job.yaml": JOB.format(name="mutate", body=body)})
    assert not push.accepted
    got = lines_of(push, "imperative-workload")
    assert len(got) == 1, push.output
    assert got[0].startswith(f"apps/job.yaml:{line}:11: error [imperative-workload]")
    assert f"job.batch/mutate: container 'main' runs {found}" in got[0]


def test_cronjob_and_deployment_pod_templates_are_checked(server: Server, clone: Clone) -> None:
    cron = """\
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: apps}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
            - name: sync
              image: bitnami/kubectl:1.30
              command: ["kubectl", "--context=prod", "delete", "pod", "-l", "app=web"]
"""
    push = push_files(clone, {"apps/cron.yaml": cron})
    assert not push.accepted
    assert [x.split(": error")[0] for x in lines_of(push, "imperative-workload")] == ["apps/cron.yaml:14:15"]
    assert "runs `kubectl delete`" in push.output


def test_jobs_that_only_read_are_accepted(server: Server, clone: Clone) -> None:
    body = "          command: [sh, -c, \"kubectl get pods -n apps; kubectl wait --for=condition=ready pod -l app=web\"]\n"
    push = push_files(clone, {"apps/job.yaml": JOB.format(name="check", body=body)})
    assert push.accepted, push.output
    assert lines_of(push, "imperative-workload") == []


HOOK_JOB = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: db-migrate
  namespace: apps
  annotations:
    {annotation}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: migrate
          image: registry.example.com/web-migrate:1.4.2
"""


@pytest.mark.parametrize("annotation,tool", [
    ("helm.sh/hook: pre-upgrade", "Helm"), ("argocd.argoproj.io/hook: PreSync", "Argo CD")])
def test_lifecycle_hooks_are_a_warning_by_default(server: Server, clone: Clone, annotation: str, tool: str) -> None:
    push = push_files(clone, {"apps/job.yaml": HOOK_JOB.format(annotation=annotation)})
    assert push.accepted, push.output
    assert lines_of(push, "imperative-hook") == [
        f"apps/job.yaml:7:5: warning [imperative-hook] job.batch/db-migrate is a lifecycle hook "
        f"({annotation}): {tool} runs it as a step around a sync"]


def test_lifecycle_hooks_refused_when_the_administrator_makes_them_errors(server: Server, clone: Clone) -> None:
    server.configure("rules:\n  imperative-hook: error\n")
    push = push_files(clone, {"apps/job.yaml": HOOK_JOB.format(annotation="helm.sh/hook: post-install")})
    assert not push.accepted
    assert lines_of(push, "imperative-hook")[0].startswith("apps/job.yaml:7:5: error [imperative-hook]")


def test_argocd_skip_is_not_a_hook(server: Server, clone: Clone) -> None:
    push = push_files(clone, {"apps/job.yaml": HOOK_JOB.format(annotation="argocd.argoproj.io/hook: Skip")})
    assert push.accepted, push.output
    assert lines_of(push, "imperative-hook") == []


def test_a_playbook_is_reported_as_steps_not_only_as_a_list(server: Server, clone: Clone) -> None:
    playbook = ("- hosts: k8s\n  tasks:\n    - name: deploy\n      shell: kubectl apply -f /srv/apps\n"
                "    - name: restart\n      command: kubectl rollout restart deploy/web\n")
    push = push_files(clone, {"ops/site.yml": playbook})
    assert not push.accepted
    assert lines_of(push, "imperative-steps") == [
        "ops/site.yml:1:1: error [imperative-steps] document 1 is a list of steps (a playbook or a runner's "
        "script), not Kubernetes objects"]


def test_lookalikes_of_imperative_files_are_accepted(server: Server, clone: Clone) -> None:
    files = {
        ".github/dependabot.yml": "version: 2\nupdates:\n  - package-ecosystem: docker\n    directory: /\n"
                                  "    schedule: {interval: weekly}\n",
        ".github/CODEOWNERS": "* @platform-team\n",
        "docs/makefile-notes.md": "We do not keep a Makefile here.\n",
        "apps/gitlab-ci.yaml": CONFIGMAP.replace("name: settings", "name: gitlab-ci"),
        "apps/shell.yaml": CONFIGMAP.replace("name: settings", "name: shell").replace(
            "mode: fast", "entrypoint.sh: |\n    #!/bin/sh\n    exec /app/server"),
    }
    push = push_files(clone, files)
    assert push.accepted, push.output
    assert [x for x in push.remote_lines() if "[imperative-" in x] == []


def test_mutating_command_detection() -> None:
    from gitops_hooks.checks.imperative import mutating_commands

    assert mutating_commands("kubectl -n apps --context prod apply -f x.yaml") == ["kubectl apply"]
    assert mutating_commands("/usr/local/bin/kubectl --namespace=apps patch deploy web -p '{}'") == ["kubectl patch"]
    assert mutating_commands("set -e; helm upgrade --install web ./chart && kubectl rollout status deploy/web") == [
        "helm upgrade", "kubectl rollout"]
    assert mutating_commands("wget -qO- https://example.com/i.sh | sudo bash") == ["wget … | sh"]
    assert mutating_commands("kubectl get pods -o name; helm list; helm template web ./chart") == []
    assert mutating_commands("echo 'use kubectl apply to deploy'") == []


def test_a_pipeline_path_always_holds_its_patterns_literal() -> None:
    """pipeline_kind tests each pattern's literal with `in` before the regex: over pipeline paths, all their
    near misses (one character inserted, removed or changed) and the corpus' paths, it names what the
    regexes alone name."""
    from conftest import CORPUS

    from gitops_hooks.checks.imperative import PIPELINES, pipeline_kind

    def by_regex(path: str) -> str | None:
        return next((name for pattern, name, _ in PIPELINES if pattern.search(path)), None)

    examples = [".github/workflows/ci.yml", "svc/.github/workflows/a.yaml", ".gitlab-ci.yml", "ops.gitlab-ci.yaml",
                "azure-pipelines.yml", "ci/azure-pipelines-prod.yaml", ".azure-pipelines/build.yml",
                "bitbucket-pipelines.yaml", ".drone.yml", ".woodpecker.yaml", ".woodpecker/deploy.yml",
                ".circleci/config.yaml", ".travis.yml", ".buildkite/pipeline.deploy.yml"]
    assert {by_regex(p) for p in examples} == {name for _, name, _ in PIPELINES}
    paths = examples + [str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*")]
    for path in examples:
        for i in range(len(path) + 1):
            paths.append(path[:i] + path[i + 1:])
            for c in "./-_aceiklmostwxy":
                paths += [path[:i] + c + path[i:], path[:i] + c + path[i + 1:]]
    assert [pipeline_kind(p) for p in paths] == [by_regex(p) for p in paths]
    assert sum(by_regex(p) is not None for p in paths) > 1000  # the near misses are often still pipelines
