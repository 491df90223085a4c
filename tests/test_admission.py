"""ValidatingAdmissionPolicy at push: policies and bindings from the tree or the administrator's folder."""

from __future__ import annotations

from pathlib import Path

from conftest import Clone, Server
from test_gate_server import served_pushes, wait_for_server

POLICY = """\
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: require-limits
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: ["apps"]
        apiVersions: ["v1"]
        operations: ["CREATE", "UPDATE"]
        resources: ["deployments"]
  validations:
    - expression: >-
        object.spec.template.spec.containers.all(c,
          has(c.resources) && has(c.resources.limits) && 'memory' in c.resources.limits)
      messageExpression: "'every container needs a memory limit (' + object.metadata.name + ')'"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: require-limits-prod
spec:
  policyName: require-limits
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {environment: prod}
"""

NAMESPACES = """\
apiVersion: v1
kind: Namespace
metadata:
  name: prod
  labels: {environment: prod}
---
apiVersion: v1
kind: Namespace
metadata:
  name: lab
  labels: {environment: lab}
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {ns}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: web
          image: nginx:1.27
{resources}"""

LIMITS = """\
          resources:
            limits: {memory: 256Mi, cpu: 500m}
"""


POLICY_EVERYWHERE = POLICY.replace("""  matchResources:
    namespaceSelector:
      matchLabels: {environment: prod}
""", "")  # require-limits in every namespace


def deployment(ns: str = "prod", resources: str = "", replicas: int = 2) -> str:
    return DEPLOYMENT.format(ns=ns, resources=resources, replicas=replicas)


def test_policy_in_the_tree_refuses_a_deployment_without_limits(server: Server, clone: Clone) -> None:
    clone.write("policies/limits.yaml", POLICY)
    clone.write("namespaces.yaml", NAMESPACES)
    clone.write("prod/web.yaml", deployment())
    clone.commit("web without limits")
    push = clone.push()
    assert not push.accepted
    assert ("prod/web.yaml:1:1: error [admission-denied] deployment.apps/web: ValidatingAdmissionPolicy "
            "'require-limits' with binding 'require-limits-prod' denied request: every container needs a memory "
            "limit (web)") in push.remote_lines()
    assert server.rev() is None


def test_deployment_with_limits_or_outside_the_selected_namespaces_is_accepted(server: Server, clone: Clone) -> None:
    clone.write("policies/limits.yaml", POLICY)
    clone.write("namespaces.yaml", NAMESPACES)
    clone.write("prod/web.yaml", deployment(resources=LIMITS))
    clone.write("lab/web.yaml", deployment(ns="lab"))  # the binding selects namespaces labelled environment=prod
    sha = clone.commit("limits in prod")
    push = clone.push()
    assert push.accepted, push.output
    assert server.rev() == sha
    assert not any("admission" in line for line in push.remote_lines())


def test_unknown_namespace_labels_are_reported_not_guessed(server: Server, clone: Clone) -> None:
    clone.write("policies/limits.yaml", POLICY)
    clone.write("prod/web.yaml", deployment())  # no Namespace object: its labels are not known
    clone.commit("no namespaces")
    push = clone.push()
    assert push.accepted, push.output
    assert ("prod/web.yaml:1:1: warning [admission-not-evaluated] deployment.apps/web: ValidatingAdmissionPolicy "
            "'require-limits' with binding 'require-limits-prod' not evaluated: namespace prod: its labels are not "
            "known from the repository") in push.remote_lines()


PARAM_POLICY = """\
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: max-replicas
spec:
  paramKind: {apiVersion: v1, kind: ConfigMap}
  matchConstraints:
    resourceRules:
      - apiGroups: ["apps"]
        apiVersions: ["v1"]
        operations: ["UPDATE"]
        resources: ["deployments"]
  validations:
    - expression: "object.spec.replicas <= int(params.data.maxReplicas)"
      message: too many replicas for an update
    - expression: "object.spec.replicas >= oldObject.spec.replicas"
      message: scaling down is done by the autoscaler
      reason: Forbidden
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: max-replicas
spec:
  policyName: max-replicas
  validationActions: [Warn]
  paramRef: {name: replica-limits, namespace: policy, parameterNotFoundAction: Deny}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: replica-limits
  namespace: policy
data:
  maxReplicas: "5"
"""


def test_params_from_the_tree_update_from_the_old_commit_and_warn_action(server: Server, clone: Clone) -> None:
    clone.write("policies/replicas.yaml", PARAM_POLICY)
    clone.write("lab/web.yaml", deployment(ns="lab", replicas=8))
    clone.commit("create with 8 replicas")
    push = clone.push()
    # operations: [UPDATE] only; the Deployment is new in this push, so the policy does not apply.
    assert push.accepted, push.output
    assert not any("admission" in line for line in push.remote_lines())

    clone.write("lab/web.yaml", deployment(ns="lab", replicas=6))
    clone.commit("scale down to 6")
    push = clone.push()
    assert push.accepted, push.output  # validationActions: [Warn]
    lines = push.remote_lines()
    assert ("lab/web.yaml:1:1: warning [admission-warning] deployment.apps/web: Validation failed for "
            "ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas': too many replicas for an update"
            ) in lines
    assert ("lab/web.yaml:1:1: warning [admission-warning] deployment.apps/web: Validation failed for "
            "ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas': scaling down is done by the "
            "autoscaler") in lines


def test_missing_params_with_deny_action_refuse(server: Server, clone: Clone) -> None:
    clone.write("lab/web.yaml", deployment(ns="lab", replicas=1))
    assert clone.commit("first") and clone.push().accepted
    policy = PARAM_POLICY.split("---\napiVersion: v1\nkind: ConfigMap")[0]
    clone.write("policies/replicas.yaml", policy)
    clone.write("lab/web.yaml", deployment(ns="lab", replicas=2))
    clone.commit("policy without its params")
    push = clone.push()
    assert not push.accepted
    assert ("lab/web.yaml:1:1: error [admission-denied] deployment.apps/web: ValidatingAdmissionPolicy "
            "'max-replicas' with binding 'max-replicas' denied request: no params found for policy binding with "
            "`Deny` parameterNotFoundAction") in push.remote_lines()


def test_policies_from_the_administrators_folder(server: Server, clone: Clone, tmp_path: Path) -> None:
    folder = tmp_path / "admission"
    folder.mkdir()
    (folder / "limits.yaml").write_text(POLICY_EVERYWHERE, encoding="utf-8")
    server.configure(f"admission_policy_dirs: [{folder}]\n")
    clone.write("lab/web.yaml", deployment(ns="lab"))
    clone.commit("no limits")
    refused_until_limits_are_set(clone)


def test_an_edit_in_the_administrators_folder_counts_at_the_next_push(server: Server, clone: Clone,
                                                                     tmp_path: Path) -> None:
    # The resident gate server reads the folder again when a file there changes, not only at its start.
    folder = tmp_path / "admission"
    folder.mkdir()
    server.configure(f"admission_policy_dirs: [{folder}]\n")
    wait_for_server(server)
    before = served_pushes(server)
    clone.write("lab/web.yaml", deployment(ns="lab"))
    clone.commit("no limits, no policy")
    assert clone.push().accepted
    (folder / "limits.yaml").write_text(POLICY_EVERYWHERE, encoding="utf-8")
    clone.write("lab/web.yaml", deployment(ns="lab", replicas=3))
    clone.commit("three replicas, still no limits")
    refused_until_limits_are_set(clone)
    assert served_pushes(server) == before + 3  # all by the one server


def refused_until_limits_are_set(clone: Clone) -> None:
    """Push what the clone has (lab/web.yaml without limits): refused by POLICY_EVERYWHERE; then with limits."""
    push = clone.push()
    assert not push.accepted
    assert any("[admission-denied] deployment.apps/web: ValidatingAdmissionPolicy 'require-limits'" in line
               for line in push.remote_lines())
    clone.write("lab/web.yaml", deployment(ns="lab", resources=LIMITS))
    clone.commit("limits")
    assert clone.push().accepted


def test_evaluation_error_follows_failure_policy(server: Server, clone: Clone) -> None:
    broken = POLICY.replace("has(c.resources) && has(c.resources.limits) && 'memory' in c.resources.limits)",
                            "c.resources.limits.memory != '')")
    clone.write("policies/limits.yaml", broken)
    clone.write("namespaces.yaml", NAMESPACES)
    clone.write("prod/web.yaml", deployment())
    clone.commit("error in the expression")
    push = clone.push()
    assert not push.accepted  # no has() guard: no such key, and failurePolicy: Fail
    assert any("denied request: expression" in line and "resulted in error" in line and "failurePolicy Fail" in line
               for line in push.remote_lines())
    clone.write("policies/limits.yaml", broken.replace("failurePolicy: Fail", "failurePolicy: Ignore"))
    clone.commit("ignore errors")
    assert clone.push().accepted


def test_rules_about_who_applies_are_not_evaluated_at_push(server: Server, clone: Clone) -> None:
    who = POLICY.replace("""    - expression: >-
        object.spec.template.spec.containers.all(c,
          has(c.resources) && has(c.resources.limits) && 'memory' in c.resources.limits)""",
                         """    - expression: "request.userInfo.username.startsWith('system:serviceaccount:flux-system:')\"""")
    clone.write("policies/who.yaml", who)
    clone.write("namespaces.yaml", NAMESPACES)
    clone.write("prod/web.yaml", deployment(resources=LIMITS))
    clone.commit("who applies")
    push = clone.push()
    assert push.accepted, push.output  # neither refused nor silently passed: a warning names the reason
    assert any("[admission-not-evaluated] deployment.apps/web: ValidatingAdmissionPolicy 'require-limits'" in line
               and "reads request.userInfo, which is not known at push" in line for line in push.remote_lines())


COMPOSED = """\
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: image-registry
spec:
  matchConstraints:
    resourceRules:
      - apiGroups: ["apps"]
        apiVersions: ["*"]
        operations: ["*"]
        resources: ["*"]
    excludeResourceRules:
      - apiGroups: ["apps"]
        apiVersions: ["v1"]
        operations: ["*"]
        resources: ["daemonsets"]
    objectSelector:
      matchExpressions:
        - {key: registry-check, operator: NotIn, values: ["skip"]}
  matchConditions:
    - name: has-pod-template
      expression: "has(object.spec.template)"
  variables:
    - name: images
      expression: "object.spec.template.spec.containers.map(c, c.image)"
  validations:
    - expression: "variables.images.all(i, i.startsWith('registry.example.com/'))"
      messageExpression: >-
        'images must come from registry.example.com: ' +
        variables.images.filter(i, !i.startsWith('registry.example.com/')).join(', ')
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: image-registry
spec:
  policyName: image-registry
  validationActions: [Deny]
"""


def test_selectors_exclusions_match_conditions_and_variables(server: Server, clone: Clone) -> None:
    clone.write("policies/registry.yaml", COMPOSED)
    clone.write("lab/web.yaml", deployment(ns="lab"))
    skipped = deployment(ns="lab").replace("  name: web\n", "  name: legacy\n  labels: {registry-check: skip}\n")
    clone.write("lab/legacy.yaml", skipped)
    daemonset = deployment(ns="lab").replace("kind: Deployment", "kind: DaemonSet").replace("  replicas: 2\n", "")
    clone.write("lab/agent.yaml", daemonset.replace("name: web", "name: agent", 1))
    clone.commit("images from docker hub")
    push = clone.push()
    assert not push.accepted
    denied = [line for line in push.remote_lines() if "[admission-denied]" in line]
    assert denied == ["lab/web.yaml:1:1: error [admission-denied] deployment.apps/web: ValidatingAdmissionPolicy "
                      "'image-registry' with binding 'image-registry' denied request: images must come from "
                      "registry.example.com: nginx:1.27"]

    clone.write("lab/web.yaml", deployment(ns="lab").replace("image: nginx:1.27", "image: registry.example.com/nginx:1.27"))
    clone.commit("images from our registry")
    assert clone.push().accepted
