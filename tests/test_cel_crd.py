"""CRD validation rules (x-kubernetes-validations) at push: real CRDs, real bare repository, real git push."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import CRDS, Clone, Server

HTTPROUTE_CRD = "gateway.networking.k8s.io_httproutes.yaml"
ISSUER_CRD = "cert-manager.io_issuers.yaml"
GATEWAYCLASS_CRD = "gateway.networking.k8s.io_gatewayclasses.yaml"

ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web
  namespace: apps
spec:
  parentRefs:
    - name: gateway
  hostnames: ["shop.example.com"]
  rules:
    - matches:
        - path:
            type: PathPrefix
            value: /shop
      backendRefs:
        - name: web
          port: 8080
"""

ISSUER = """\
apiVersion: cert-manager.io/v1
kind: Issuer
metadata:
  name: venafi
  namespace: apps
spec:
  venafi:
    zone: "DevOps\\\\Default"
    tpp:
      url: https://tpp.example.com/vedsdk
      credentialsRef:
        name: tpp-secret
"""

GATEWAYCLASS = """\
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: internet
spec:
  controllerName: example.net/gateway-controller
"""


@pytest.fixture(autouse=True)
def _need_crds() -> None:
    if not CRDS.is_dir():
        pytest.skip(f"the shared CRDs are not at {CRDS}")


def _with_crd(clone: Clone, name: str) -> None:
    (clone.path / "crds").mkdir(parents=True, exist_ok=True)
    shutil.copy(CRDS / name, clone.path / "crds" / name)


def test_httproute_that_follows_the_rules_is_accepted(server: Server, clone: Clone) -> None:
    _with_crd(clone, HTTPROUTE_CRD)
    clone.write("apps/route.yaml", ROUTE)
    sha = clone.commit("route")
    push = clone.push()
    assert push.accepted, push.output
    assert server.rev() == sha
    assert not any("crd-rule" in line or "cel-not-evaluated" in line for line in push.remote_lines())


def test_httproute_breaking_rules_is_refused_with_the_rules_messages_and_lines(server: Server, clone: Clone) -> None:
    _with_crd(clone, HTTPROUTE_CRD)
    bad = ROUTE.replace("value: /shop", "value: shop//x").replace("          port: 8080\n", "")
    clone.write("apps/route.yaml", bad)
    clone.commit("broken route")
    push = clone.push()
    assert not push.accepted
    lines = push.remote_lines()
    # Rule on spec.rules[].matches[].path, evaluated with the default `type` applied; the line of `path:`.
    assert ("apps/route.yaml:13:13: error [crd-rule] httproute.gateway.networking.k8s.io/web: "
            "spec.rules[0].matches[0].path: Invalid value: value must be an absolute path and start with '/' "
            "when type one of ['Exact', 'PathPrefix']") in lines
    assert ("apps/route.yaml:13:13: error [crd-rule] httproute.gateway.networking.k8s.io/web: "
            "spec.rules[0].matches[0].path: Invalid value: must not contain '//' when type one of "
            "['Exact', 'PathPrefix']") in lines
    # Rule on backendRefs items: `kind` defaults to Service and `group` to "", so the port is required.
    assert ("apps/route.yaml:16:11: error [crd-rule] httproute.gateway.networking.k8s.io/web: "
            "spec.rules[0].backendRefs[0]: Invalid value: Must have port for Service reference") in lines
    assert server.rev() is None


def test_httproute_rules_of_the_bundled_crd_apply_without_the_crd_in_the_tree(server: Server, clone: Clone) -> None:
    route = ROUTE.replace("""      backendRefs:""", """      filters:
        - type: RequestRedirect
          requestRedirect: {scheme: https}
        - type: URLRewrite
          urlRewrite: {hostname: shop.internal}
      backendRefs:""")
    clone.write("apps/route.yaml", route)
    clone.commit("two exclusive filters")
    push = clone.push()
    if any("schema-unknown-kind" in line for line in push.remote_lines()):
        pytest.skip("no bundled Gateway API CRDs in this checkout")
    assert not push.accepted
    text = "\n".join(push.remote_lines())
    assert ("apps/route.yaml:16:9: error [crd-rule] httproute.gateway.networking.k8s.io/web: spec.rules[0].filters: "
            "Invalid value: May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, "
            "but not both") in text
    assert "RequestRedirect filter must not be used together with backendRefs" in text


def test_cert_manager_issuer_rule(server: Server, clone: Clone) -> None:
    _with_crd(clone, ISSUER_CRD)
    clone.write("apps/issuer.yaml", ISSUER)
    clone.commit("issuer")
    push = clone.push()
    assert push.accepted, push.output

    both = ISSUER + "    cloud:\n      apiTokenSecretRef:\n        name: cloud-token\n        key: token\n"
    clone.write("apps/issuer.yaml", both)
    clone.commit("two venafi backends")
    push = clone.push()
    assert not push.accepted
    assert ("apps/issuer.yaml:8:5: error [crd-rule] issuer.cert-manager.io/venafi: spec.venafi: Invalid value: "
            "exactly one of tpp, cloud, or ngts must be configured") in push.remote_lines()


def test_immutable_field_changed_in_git_is_refused_at_the_second_push(server: Server, clone: Clone) -> None:
    _with_crd(clone, GATEWAYCLASS_CRD)
    clone.write("infra/gatewayclass.yaml", GATEWAYCLASS)
    first = clone.commit("gateway class")
    push = clone.push()
    assert push.accepted, push.output

    clone.write("infra/gatewayclass.yaml", GATEWAYCLASS.replace("example.net/gateway-controller", "example.net/other"))
    clone.commit("change the controller")
    push = clone.push()
    assert not push.accepted
    assert ("infra/gatewayclass.yaml:6:19: error [crd-rule-transition] gatewayclass.gateway.networking.k8s.io/internet: "
            "spec.controllerName: Invalid value: field is immutable") in push.remote_lines()
    assert server.rev() == first

    # Other fields may change: the transition rule compares only the field it sits on.
    clone.write("infra/gatewayclass.yaml", GATEWAYCLASS + "  description: public traffic\n")
    clone.commit("describe it, controller as before")
    assert clone.push().accepted


TREE_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: quotas.example.com
spec:
  group: example.com
  names: {kind: Quota, plural: quotas, singular: quota, listKind: QuotaList}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              x-kubernetes-validations:
                - rule: "!quantity(self.limit).isLessThan(quantity(self.request))"
                  messageExpression: "'limit ' + self.limit + ' is below request ' + self.request"
                  fieldPath: .limit
                  reason: FieldValueForbidden
                - rule: "!format.dns1123Label().validate(self.owner).hasValue()"
                  messageExpression: "'owner: ' + format.dns1123Label().validate(self.owner).value()[0]"
                - rule: self.endpoints.lastIndexOf('https://legacy.example.com') == -1
                  message: the legacy endpoint is gone
              properties:
                limit: {type: string}
                request: {type: string}
                owner: {type: string}
                endpoints:
                  type: array
                  items:
                    type: string
                    x-kubernetes-validations:
                      - rule: isURL(self) && url(self).getScheme() == 'https'
                        message: endpoints must be https URLs
"""

QUOTA = """\
apiVersion: example.com/v1
kind: Quota
metadata:
  name: team-a
  namespace: apps
spec:
  limit: 2Gi
  request: 1024Mi
  owner: team-a
  endpoints:
    - https://quota.example.com/a
"""


def test_kubernetes_libraries_and_message_expression_field_path_and_reason(server: Server, clone: Clone) -> None:
    clone.write("crds/quota.yaml", TREE_CRD)
    clone.write("apps/quota.yaml", QUOTA)
    clone.commit("quota")
    push = clone.push()
    assert push.accepted, push.output
    lines = push.remote_lines()
    # List lastIndexOf is not provided (the strings library owns the name here): not evaluated, named.
    assert ("apps/quota.yaml:7:3: warning [cel-not-evaluated] quota.example.com/team-a: spec: validation rule not "
            "evaluated: it calls lastIndexOf() on a list with arguments this gate has no overload for") in lines

    clone.write("apps/quota.yaml", QUOTA.replace("limit: 2Gi", "limit: 500Mi").replace("https://quota", "http://quota")
                .replace("owner: team-a", "owner: Team_A"))
    clone.commit("limit below request")
    push = clone.push()
    assert not push.accepted
    lines = push.remote_lines()
    assert ("apps/quota.yaml:7:10: error [crd-rule] quota.example.com/team-a: spec.limit: Forbidden: limit 500Mi is "
            "below request 1024Mi") in lines
    assert ("apps/quota.yaml:11:7: error [crd-rule] quota.example.com/team-a: spec.endpoints[0]: Invalid value: "
            "endpoints must be https URLs") in lines
    # The format library: validate() gives Kubernetes' own error text.
    assert ("apps/quota.yaml:7:3: error [crd-rule] quota.example.com/team-a: spec: Invalid value: owner: a lowercase "
            "RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an "
            "alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')") in lines


def test_rules_of_a_crd_in_the_administrators_schema_dirs(server: Server, clone: Clone, tmp_path: Path) -> None:
    folder = tmp_path / "crds"
    folder.mkdir()
    (folder / "quota.yaml").write_text(TREE_CRD, encoding="utf-8")
    server.configure(f"schema_dirs: [{folder}]\n")
    clone.write("apps/quota.yaml", QUOTA.replace("limit: 2Gi", "limit: 100m"))
    clone.commit("quota without its CRD in the tree")
    push = clone.push()
    assert not push.accepted
    assert ("apps/quota.yaml:7:10: error [crd-rule] quota.example.com/team-a: spec.limit: Forbidden: limit 100m is "
            "below request 1024Mi") in push.remote_lines()


COUNTER_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: counters.example.com
spec:
  group: example.com
  names: {kind: Counter, plural: counters, singular: counter, listKind: CounterList}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                epoch:
                  type: integer
                  x-kubernetes-validations:
                    - rule: oldSelf.hasValue() || self == 1
                      optionalOldSelf: true
                      message: a new counter starts at epoch 1
                    - rule: self >= oldSelf.orValue(0)
                      optionalOldSelf: true
                      messageExpression: "'epoch may only grow (was ' + string(oldSelf.value()) + ')'"
"""

COUNTER = """\
apiVersion: example.com/v1
kind: Counter
metadata:
  name: jobs
  namespace: apps
spec:
  epoch: {epoch}
"""


def test_optional_old_self_rules_run_on_create_and_on_update(server: Server, clone: Clone) -> None:
    clone.write("crds/counter.yaml", COUNTER_CRD)
    clone.write("apps/counter.yaml", COUNTER.format(epoch=3))
    clone.commit("counter at 3")
    push = clone.push()
    assert not push.accepted
    assert ("apps/counter.yaml:7:10: error [crd-rule-transition] counter.example.com/jobs: spec.epoch: Invalid value: "
            "a new counter starts at epoch 1") in push.remote_lines()

    clone.write("apps/counter.yaml", COUNTER.format(epoch=1))
    clone.commit("counter at 1")
    assert clone.push().accepted

    clone.write("apps/counter.yaml", COUNTER.format(epoch=0))
    clone.commit("counter back to 0")
    push = clone.push()
    assert not push.accepted
    assert ("apps/counter.yaml:7:10: error [crd-rule-transition] counter.example.com/jobs: spec.epoch: Invalid value: "
            "epoch may only grow (was 1)") in push.remote_lines()


PROFILE_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: profiles.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Profile, plural: profiles, singular: profile}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          description: the old profile (oldSelf, in a description only) is not compared
          properties:
            spec:
              type: object
              properties:
                default:
                  type: object
                  properties:
                    cpu: {type: integer}
                  x-kubernetes-validations:
                    - rule: self.cpu <= 8
                      message: the default profile gets at most 8 CPUs
"""

PROFILE = """\
apiVersion: example.com/v1
kind: Profile
metadata:
  name: batch
  namespace: apps
spec:
  default:
    cpu: {cpu}
"""


def test_rules_under_a_property_named_like_a_schema_keyword_are_evaluated(server: Server, clone: Clone) -> None:
    """`default`, `example` and `enum` hold values in a schema, but under `properties` they are field names
    whose schemas carry rules like any other."""
    clone.write("crds/profile.yaml", PROFILE_CRD)
    clone.write("apps/profile.yaml", PROFILE.format(cpu=16))
    clone.commit("a profile of 16 CPUs")
    push = clone.push()
    assert not push.accepted
    assert ("apps/profile.yaml:8:5: error [crd-rule] profile.example.com/batch: spec.default: Invalid value: "
            "the default profile gets at most 8 CPUs") in push.remote_lines(), push.output
    clone.write("apps/profile.yaml", PROFILE.format(cpu=4))
    clone.commit("4 CPUs")
    assert clone.push().accepted


def test_the_rule_traits_of_a_schema() -> None:
    """What the gate reads from a CRD schema before it evaluates anything: whether it has rules at all,
    and whether some compare with oldSelf (transition rules), on create too (optionalOldSelf)."""
    from gitops_hooks.schemas import validation_rules

    def schema(*rules: dict[str, object], where: str = "spec") -> dict[str, object]:
        inner: dict[str, object] = {"type": "object", "x-kubernetes-validations": list(rules)}
        node: dict[str, object] = {"type": "object", "description": "oldSelf is named here, in prose",
                                   "properties": {where: inner}}
        return {"type": "object", "properties": {"spec": node}} if where != "spec" else node

    assert validation_rules({"type": "object", "description": "oldSelf"}) == ""
    assert validation_rules(schema({"rule": "self.a > 0"})) == "rules"
    assert validation_rules(schema({"rule": "self == oldSelf", "message": "immutable"})) == "plain"
    assert validation_rules(schema({"rule": "self.a > 0", "messageExpression": "'was ' + string(oldSelf.a)"})) == "plain"
    assert validation_rules(schema({"rule": "self.a >= oldSelf.a", "optionalOldSelf": True},
                                   {"rule": "self.b > 0"})) == "optional"
    assert validation_rules(schema({"rule": "self.a > 0"}, where="enum")) == "rules"
    in_a_value = {"type": "object", "properties": {"spec": {"type": "object", "default": {
        "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}}}}
    assert validation_rules(in_a_value) == ""
    under_items = {"type": "array", "items": {"type": "object", "additionalProperties": {
        "type": "object", "x-kubernetes-validations": [{"rule": "self.size() < 3"}]}}}
    assert validation_rules(under_items) == "rules"
