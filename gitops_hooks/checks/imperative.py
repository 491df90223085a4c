"""Imperative content: steps that produce a state instead of the state itself.

Files: scripts (by shebang, executable mode or extension), build files (Makefile, Dockerfile, ...),
CI pipeline definitions, and YAML documents without apiVersion/kind whose shape is a list of steps.
Objects: workloads whose containers run cluster-mutating commands, and Helm / Argo CD lifecycle hooks.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..documents import Document, ParsedFile, Pointer
from ..findings import Finding, Rule, Severity, finding, register
from ..gitrepo import Entry
from .base import CheckContext, document_check, file_check, only_for, parsed_check

E, W = Severity.ERROR, Severity.WARNING

INSTEAD = ("keep desired state only: move it to the application's repository or its CI, express its result "
           "as resources in git, or let an operator do it")

register(
    Rule("imperative-script", "imperative", E, "A script (shebang, executable mode or script extension).",
         "A GitOps repository holds the desired state, not the steps that produce it. A script in it is "
         "either run by hand (so the cluster drifts from git) or by something outside the reconciler. "
         "Move it to the application's repository or its CI, commit what it would generate, or let an "
         "operator or a controller do the work. Scripts are recognised by a `#!` first line, by the "
         "executable mode 100755, or by extension (.sh .bash .zsh .ksh .fish .ps1 .bat .cmd .py .rb .pl "
         "...).",
         "# instead of deploy.sh running `kubectl apply -f app/`, commit app/ and let the\n"
         "# reconciler apply it:\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n"),
    Rule("imperative-build-file", "imperative", E,
         "A build or task file (Makefile, Jenkinsfile, Dockerfile/Containerfile, Taskfile, justfile).",
         "Build and task files describe how to make things, which belongs with the application's source. "
         "The GitOps repository should only name the result (an image tag, a chart version).",
         "image: registry.example.com/web:1.4.2\n"),
    Rule("imperative-pipeline", "imperative", E,
         "A CI pipeline definition (GitHub Actions, GitLab CI, Azure, Bitbucket, Drone, ...).",
         "Pipelines list steps to run. In a GitOps repository the reconciler applies what is committed; "
         "a pipeline that also applies changes races it. Keep pipelines in the application's repository; "
         "if this repository needs checks before merge, run `gitops-hooks validate` from the CI that "
         "lives elsewhere or rely on this gate.",
         "# .github/workflows/ belongs to the application's repository; here, only the result:\n"
         "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n"),
    Rule("imperative-steps", "imperative", E,
         "A YAML document without apiVersion/kind that is a list of steps or commands.",
         "Documents shaped like `steps:`, `script:`, `commands:` or `tasks:` lists are instructions for a "
         "runner, not objects for the API server. Express the outcome as Kubernetes objects.",
         "# instead of `script: [kubectl create namespace shop]`:\n"
         "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n"),
    Rule("imperative-workload", "imperative", E,
         "A Job, CronJob, Pod or pod template runs cluster-mutating commands (kubectl apply, ...).",
         "A container that runs `kubectl apply|create|delete|patch|replace|scale|rollout|annotate|label|set`,"
         " "
         "`helm install|upgrade|uninstall` or pipes a download into a shell changes the cluster behind the "
         "reconciler's back: what runs is not what git says. Commit the objects it would create or change, "
         "or use an operator that owns them.",
         "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\nspec:\n  template:\n    spec:\n"
         "      restartPolicy: Never\n      containers:\n        - name: migrate\n"
         "          image: registry.example.com/web-migrate:1.4.2\n          args: [\"--to\", \"latest\"]\n"),
    Rule("imperative-hook", "imperative", W,
         "An object is a Helm or Argo CD lifecycle hook (helm.sh/hook, argocd.argoproj.io/hook).",
         "Hooks run steps around a sync instead of declaring state; their effects are not visible in git "
         "and they are not re-run by a plain reconciliation. Prefer plain objects (with ordering by "
         "dependencies or sync waves) or an operator. Make this an error with "
         "`rules: {imperative-hook: error}`.", "metadata:\n  name: web\n  annotations: {}\n"),
)

# ---------------------------------------------------------------------------- files

SCRIPT_EXTENSIONS = frozenset(
    ".sh .bash .zsh .ksh .csh .tcsh .fish .ps1 .psm1 .psd1 .bat .cmd .py .rb .pl .pm .php .lua .groovy"
    .split()
)

BUILD_FILES = {
    "makefile": "Makefile", "gnumakefile": "Makefile", "jenkinsfile": "Jenkinsfile",
    "dockerfile": "Dockerfile", "containerfile": "Containerfile", "justfile": "justfile",
    "taskfile.yml": "Taskfile", "taskfile.yaml": "Taskfile", "taskfile.dist.yml": "Taskfile",
    "taskfile.dist.yaml": "Taskfile", "rakefile": "Rakefile", "vagrantfile": "Vagrantfile",
}

# (pattern, what it is, a literal every match holds: most paths hold none, and `in` says so at once)
PIPELINES: tuple[tuple[re.Pattern[str], str, str], ...] = tuple(
    (re.compile(p), name, literal) for p, name, literal in (
        (r"(?:^|/)\.github/workflows/[^/]+\.ya?ml$", "a GitHub Actions workflow", ".github/workflows/"),
        (r"(?:^|/)\.gitlab-ci\.ya?ml$|\.gitlab-ci\.ya?ml$", "a GitLab CI pipeline", ".gitlab-ci."),
        (r"(?:^|/)azure-pipelines[^/]*\.ya?ml$|(?:^|/)\.azure-pipelines/[^/]+\.ya?ml$", "an Azure pipeline",
         "azure-pipelines"),
        (r"(?:^|/)bitbucket-pipelines\.ya?ml$", "a Bitbucket pipeline", "bitbucket-pipelines."),
        (r"(?:^|/)\.drone\.ya?ml$", "a Drone pipeline", ".drone."),
        (r"(?:^|/)\.woodpecker(?:\.ya?ml|/[^/]+\.ya?ml)$", "a Woodpecker pipeline", ".woodpecker"),
        (r"(?:^|/)\.circleci/config\.ya?ml$", "a CircleCI pipeline", ".circleci/config."),
        (r"(?:^|/)\.travis\.ya?ml$", "a Travis CI pipeline", ".travis."),
        (r"(?:^|/)\.buildkite/[^/]*pipeline[^/]*\.ya?ml$", "a Buildkite pipeline", ".buildkite/"),
    )
)


def _name_kind(path: str) -> str | None:
    base = posixpath.basename(path).lower()
    if base in BUILD_FILES:
        return BUILD_FILES[base]
    if base.startswith(("dockerfile.", "containerfile.")) or base.endswith((".dockerfile", ".containerfile")):
        return "Dockerfile"
    if base.endswith((".mk", ".mak")):
        return "Makefile"
    return None


def pipeline_kind(path: str) -> str | None:
    for pattern, name, literal in PIPELINES:
        if literal in path and pattern.search(path):
            return name
    return None


def script_reasons(entry: Entry, data: bytes | None) -> list[str]:
    reasons = []
    if data is not None and data.startswith(b"#!"):
        first = data[:120].split(b"\n", 1)[0].decode("utf-8", "replace").strip()
        reasons.append(f"its first line is {first!r}")
    if entry.is_executable:
        reasons.append("its mode is executable (100755)")
    ext = posixpath.splitext(entry.path)[1].lower()
    if ext in SCRIPT_EXTENSIONS:
        reasons.append(f"its extension is {ext}")
    return reasons


@file_check
def imperative_files(entry: Entry, data: bytes | None, ctx: CheckContext) -> Iterator[Finding]:
    if entry.is_link or entry.is_submodule:
        return
    pipeline = pipeline_kind(entry.path)
    if pipeline is not None:
        yield finding("imperative-pipeline", entry.path, 1, 1,
                      f"{entry.path} is {pipeline}: a list of steps, not desired state", INSTEAD)
        return
    build = _name_kind(entry.path)
    if build is not None:
        yield finding("imperative-build-file", entry.path, 1, 1,
                      f"{entry.path} is a {build}: build steps, not desired state",
                      "move it to the application's repository; reference only the result here "
                      "(an image tag or chart version)")
        return
    reasons = script_reasons(entry, data)
    if reasons:
        yield finding("imperative-script", entry.path, 1, 1,
                      f"{entry.path} is a script ({'; '.join(reasons)})", INSTEAD)


# ---------------------------------------------------------------------------- step-shaped YAML

STEP_KEYS = frozenset("steps script scripts before_script after_script commands cmds tasks pipeline".split())
STEP_ITEM_KEYS = frozenset("run script shell uses commands cmds cmd exec task".split())


def _is_step_item(item: Any) -> bool:
    if isinstance(item, str):
        return bool(item.strip())
    if isinstance(item, dict):
        if STEP_ITEM_KEYS & item.keys():
            return True
        return "command" in item and "image" not in item  # a container has an image; a step does not
    return False


def _step_list(value: Any) -> bool:
    if not isinstance(value, list) or not value or not all(_is_step_item(i) for i in value):
        return False
    # A list of plain words (e.g. flags) is not a list of commands; a command line has a space.
    return any(isinstance(i, dict) or " " in i.strip() for i in value)


def find_steps(obj: Any, path: Pointer = (), depth: int = 0) -> Pointer | None:
    """The pointer of the first list of steps in a document (searched a few levels deep)."""
    if depth > 4:
        return None
    if isinstance(obj, dict):
        for key, value in obj.items():
            if str(key) in STEP_KEYS and _step_list(value):
                return path + (str(key),)
        for key, value in obj.items():
            found = find_steps(value, path + (str(key),), depth + 1)
            if found is not None:
                return found
    return None


@parsed_check
def step_documents(parsed: ParsedFile, ctx: CheckContext) -> Iterator[Finding]:
    path = parsed.path
    if pipeline_kind(path) is None and _name_kind(path) is None:  # else the file itself is reported
        for doc in parsed.documents:
            if doc.is_object:
                continue
            pointer = find_steps(doc.obj)
            if pointer is None:
                continue
            line, col = doc.locate(pointer, key=True)
            where = ".".join(str(p) for p in pointer)
            yield finding("imperative-steps", path, line, col,
                          f"document {doc.index + 1} has no apiVersion/kind and lists steps under {where}",
                          INSTEAD)
        yield from _step_lists(parsed)


def _plain(node: Any, depth: int = 0) -> Any:
    """A YAML node as plain values, a few levels deep and a few items wide (enough to see a shape)."""
    from yaml.nodes import MappingNode, ScalarNode, SequenceNode

    if isinstance(node, ScalarNode) or depth > 5:
        return node.value if isinstance(node, ScalarNode) else None
    if isinstance(node, SequenceNode):
        return [_plain(n, depth + 1) for n in node.value[:50]]
    if isinstance(node, MappingNode):
        return {str(k.value): _plain(v, depth + 1) for k, v in node.value[:50] if isinstance(k, ScalarNode)}
    return None


def _step_lists(parsed: ParsedFile) -> Iterator[Finding]:
    """Documents that are a list (refused as yaml-not-mapping) and whose items are steps, e.g. a playbook."""
    if parsed.source is None or not any(f.rule == "yaml-not-mapping" for f in parsed.findings):
        return
    from yaml.nodes import SequenceNode

    for index, node in enumerate(parsed.source._nodes()):
        if not isinstance(node, SequenceNode):
            continue
        value = _plain(node)
        if _step_list(value) or any(find_steps(item) is not None for item in value if isinstance(item, dict)):
            yield finding("imperative-steps", parsed.path, node.start_mark.line + 1, node.start_mark.column + 1,
                          f"document {index + 1} is a list of steps (a playbook or a runner's script), "
                          "not Kubernetes objects", INSTEAD)


# ---------------------------------------------------------------------------- workloads

KUBECTL_VERBS = frozenset("apply create delete patch replace scale rollout annotate label set edit".split())
HELM_VERBS = frozenset("install upgrade uninstall delete rollback".split())
KUBECTL_VALUE_FLAGS = frozenset(
    "-n --namespace --context --kubeconfig --cluster --user -s --server --token --as --as-group "
    "--request-timeout --certificate-authority --client-certificate --client-key -v".split()
)
PIPE_TO_SHELL = re.compile(r"\b(curl|wget)\b[^|;&\n]*\|\s*(?:sudo\s+)?(?:ba|z|k|da)?sh\b")
SEPARATORS = re.compile(r"&&|\|\||[;|\n()`]|\$\(")

POD_SPECS: dict[str, Pointer] = {
    "Pod": ("spec",),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "PodTemplate": ("template", "spec"),
}


@dataclass(frozen=True)
class Mutation:
    command: str  # e.g. "kubectl apply"
    field: str  # command or args


def _verb(tool: str, words: list[str]) -> str | None:
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        if word.startswith("-"):
            skip = tool == "kubectl" and "=" not in word and word in KUBECTL_VALUE_FLAGS
            continue
        return word
    return None


def mutating_commands(text: str) -> list[str]:
    """Cluster-mutating commands in a command line or inline script, e.g. ['kubectl apply']."""
    found: list[str] = []
    if "kubectl" not in text and "helm" not in text and "curl" not in text and "wget" not in text:
        return found  # the common case, without tokenizing anything
    for segment in SEPARATORS.split(text):
        if "kubectl" not in segment and "helm" not in segment:
            continue
        try:
            words = shlex.split(segment, comments=True)
        except ValueError:
            words = segment.split()
        for i, word in enumerate(words):
            tool = posixpath.basename(word)
            if tool not in ("kubectl", "helm"):
                continue
            verb = _verb(tool, words[i + 1:])
            verbs = KUBECTL_VERBS if tool == "kubectl" else HELM_VERBS
            if verb in verbs:
                found.append(f"{tool} {verb}")
            break
    for m in PIPE_TO_SHELL.finditer(text):
        found.append(f"{m.group(1)} … | sh")
    return list(dict.fromkeys(found))


def _get(obj: Any, pointer: Pointer) -> Any:
    for part in pointer:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _containers(pod_spec: dict[str, Any]) -> Iterator[tuple[str, int, dict[str, Any]]]:
    for group in ("initContainers", "containers", "ephemeralContainers"):
        items = pod_spec.get(group)
        if isinstance(items, list):
            for i, c in enumerate(items):
                if isinstance(c, dict):
                    yield group, i, c


def _words(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value if isinstance(v, (str, int, float)))
    return str(value) if isinstance(value, str) else ""


@document_check
@only_for(kinds=POD_SPECS)
def imperative_workloads(doc: Document, ctx: CheckContext) -> Iterator[Finding]:
    spec_path = POD_SPECS.get(doc.kind)
    if spec_path is None:
        return
    pod_spec = _get(doc.obj, spec_path)
    if not isinstance(pod_spec, dict):
        return
    for group, i, container in _containers(pod_spec):
        command, args = _words(container.get("command")), _words(container.get("args"))
        found = mutating_commands(f"{command} {args}")
        if not found:
            continue
        fieldname = "command" if mutating_commands(command) else "args"
        pointer = spec_path + (group, i, fieldname)
        line, col = doc.locate(pointer, key=True)
        name = container.get("name", f"#{i}")
        yield finding(
            "imperative-workload", doc.path, line, col,
            f"{doc.describe()}: container {name!r} runs {', '.join(f'`{c}`' for c in found)} "
            f"in its {fieldname}: it changes the cluster behind the reconciler's back",
            "commit the objects it would create or change, or use an operator that owns them",
            subject=doc.subject(),
        )


HOOK_ANNOTATIONS = {"helm.sh/hook": "Helm", "argocd.argoproj.io/hook": "Argo CD"}


@document_check
def lifecycle_hooks(doc: Document, ctx: CheckContext) -> Iterator[Finding]:
    annotations = doc.metadata.get("annotations")
    if not isinstance(annotations, dict):
        return
    for key, tool in HOOK_ANNOTATIONS.items():
        value = annotations.get(key)
        if not isinstance(value, str) or not value.strip() or value.strip() == "Skip":
            continue
        line, col = doc.locate(("metadata", "annotations", key), key=True)
        yield finding(
            "imperative-hook", doc.path, line, col,
            f"{doc.describe()} is a lifecycle hook ({key}: {value}): {tool} runs it as a step around a sync",
            "prefer plain objects ordered by their dependencies, or an operator",
            subject=doc.subject(),
        )
