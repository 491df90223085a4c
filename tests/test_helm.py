"""Helm charts rendered at push: the real podinfo chart, pushed with real git into a guarded repository."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import CORPUS, Clone, Push, Server, need_corpus

from gitops_hooks import config, pipeline
from gitops_hooks.gitrepo import FolderTree
from gitops_hooks.render import helm

PODINFO = CORPUS / "charts" / "podinfo"
CHART = "charts/podinfo"
URL = "https://git.example.com/platform/fleet.git"

SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {"replicaCount": {"type": "integer", "minimum": 0}},
}

FLUX_SYNC = """\
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: flux-system
  namespace: flux-system
spec:
  interval: 1m
  url: ssh://git@git.example.com/platform/fleet
  ref:
    branch: main
"""

HELM_RELEASE = """\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: podinfo
  namespace: apps
spec:
  interval: 10m
  chart:
    spec:
      chart: ./charts/podinfo
      sourceRef:
        kind: GitRepository
        name: flux-system
        namespace: flux-system
  valuesFrom:
    - kind: ConfigMap
      name: podinfo-values
    - kind: Secret
      name: podinfo-secret-values
  values:
    replicaCount: {replicas}
"""

VALUES_CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: podinfo-values
  namespace: apps
data:
  values.yaml: |
    ui:
      message: from the ConfigMap
"""

APPLICATION = f"""\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: podinfo-prod
  namespace: argocd
spec:
  project: default
  source:
    repoURL: {URL}
    targetRevision: main
    path: charts/podinfo
    helm:
      valueFiles:
        - values-prod.yaml
      parameters:
        - name: replicaCount
          value: "{{replicas}}"
  destination:
    server: https://kubernetes.default.svc
    namespace: prod
"""

APPLICATION_SET = f"""\
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: podinfo
  namespace: argocd
spec:
  generators:
    - list:
        elements:
          - env: staging
          - env: qa
  template:
    metadata:
      name: 'podinfo-{{{{env}}}}'
    spec:
      project: default
      source:
        repoURL: {URL}
        path: charts/podinfo
      destination:
        server: https://kubernetes.default.svc
        namespace: '{{{{env}}}}'
"""


@pytest.fixture
def podinfo(server: Server, clone: Clone) -> Clone:
    need_corpus()
    clone.copy_tree(PODINFO, CHART)
    return clone


def lines(push: Push, rule: str) -> list[str]:
    return [x for x in push.remote_lines() if f"[{rule}]" in x]


def test_podinfo_renders_with_its_defaults_and_values_prod(podinfo: Clone) -> None:
    podinfo.commit()
    push = podinfo.push()
    assert push.accepted, push.output
    assert lines(push, "helm-chart") == [
        f"{CHART}/Chart.yaml:1:1: info [helm-chart] Helm chart {CHART}: rendered as release podinfo of {CHART} "
        f"(default values); release podinfo of {CHART} ({CHART}/values-prod.yaml)"]
    # the test hooks were rendered and checked, at the template's line of the hook annotation
    hooks = lines(push, "imperative-hook")
    assert any(x.startswith(f"{CHART}/templates/tests/jwt.yaml:9:5: warning") and "(default values)]" in x for x in hooks)
    # values-prod.yaml turns Redis on: its objects exist only in that release (14 objects in all)
    assert "0 manifests, 14 objects: 0 errors" in push.output


def test_a_wrong_type_in_a_values_file_is_refused_at_its_line(podinfo: Clone) -> None:
    podinfo.write(f"{CHART}/values-staging.yaml", "# staging\nreplicaCount: \"two\"\n")
    podinfo.commit()
    push = podinfo.push()
    assert not push.accepted
    # no values.schema.json: the rendered Deployment is refused, at the template's line
    assert [x for x in lines(push, "schema-invalid")] == [
        f"{CHART}/templates/deployment.yaml:10:13: error [schema-invalid] deployment.apps/podinfo [release podinfo of "
        f"{CHART} ({CHART}/values-staging.yaml)]: spec.replicas: 'two' is not of type integer"]
    # with a values.schema.json, the values file itself is refused at its line, as Helm would
    podinfo.write(f"{CHART}/values.schema.json", json.dumps(SCHEMA, indent=2))
    podinfo.commit()
    push = podinfo.push()
    assert not push.accepted
    assert lines(push, "helm-values") == [
        f"{CHART}/values-staging.yaml:2:1: error [helm-values] release podinfo of {CHART} "
        f"({CHART}/values-staging.yaml): replicaCount: 'two' is not of type 'integer' (values.schema.json)"]


def test_a_template_producing_an_unknown_field_is_refused_at_the_template_line(podinfo: Clone) -> None:
    path = podinfo.path / CHART / "templates" / "deployment.yaml"
    path.write_text(path.read_text().replace("terminationGracePeriodSeconds:", "terminationGracePeriodSecond:"))
    podinfo.commit()
    push = podinfo.push()
    assert not push.accepted
    found = [x for x in push.remote_lines() if x.startswith(f"{CHART}/templates/deployment.yaml:30:")]
    assert len(found) == 2, push.output  # one per release: defaults and values-prod.yaml
    assert all("terminationGracePeriodSecond" in x and "error [schema-" in x for x in found), found


def test_a_plaintext_secret_from_values_is_refused_without_its_value(podinfo: Clone) -> None:
    podinfo.write(f"{CHART}/templates/db-secret.yaml",
                  'apiVersion: v1\nkind: Secret\nmetadata:\n  name: {{ include "podinfo.fullname" . }}-db\n'
                  "type: Opaque\nstringData:\n  password: {{ .Values.db.password | quote }}\n")
    podinfo.write(f"{CHART}/values.yaml", (PODINFO / "values.yaml").read_text() + "db:\n  password: \"\"\n")
    podinfo.write(f"{CHART}/values-prod.yaml", (PODINFO / "values-prod.yaml").read_text()
                  + "db:\n  password: Xq7-vR2pL9-wT4mZ8-kB3nY6\n")
    podinfo.commit()
    push = podinfo.push()
    assert not push.accepted
    secret = [x for x in push.remote_lines() if x.startswith(f"{CHART}/templates/db-secret.yaml:7:")]
    assert any(f": error [secret-plaintext] secret/podinfo-db [release podinfo of {CHART} ({CHART}/values-prod.yaml)] "
               "holds plaintext values: stringData.password" in x for x in secret), push.output
    assert "Xq7-vR2pL9" not in push.output


def test_a_helm_release_of_this_repository_is_rendered_with_its_values(podinfo: Clone) -> None:
    podinfo.write("clusters/prod/flux-system/gotk-sync.yaml", FLUX_SYNC)
    podinfo.write("apps/podinfo-values.yaml", VALUES_CONFIGMAP)
    podinfo.write("apps/podinfo.yaml", HELM_RELEASE.format(replicas='"two"'))
    podinfo.commit()
    push = podinfo.push()
    assert not push.accepted
    label = f"release podinfo of {CHART} (ConfigMap podinfo-values (apps/podinfo-values.yaml), apps/podinfo.yaml spec.values)"
    assert f"{CHART}/templates/deployment.yaml:10:13: error [schema-invalid] deployment.apps/podinfo [{label}]: " \
        "spec.replicas: 'two' is not of type integer" in push.remote_lines()
    # the Secret's values are not in git: said, not invented
    assert "apps/podinfo.yaml:18:7: info [helm-not-rendered] HelmRelease apps/podinfo: values from Secret " \
        "podinfo-secret-values (key values.yaml) are not in this commit: unknown at push, rendered without them" \
        in push.remote_lines()
    # the chart is rendered for the release, not also alone
    assert lines(push, "helm-chart") == [f"{CHART}/Chart.yaml:1:1: info [helm-chart] Helm chart {CHART}: rendered as {label}"]
    podinfo.write("apps/podinfo.yaml", HELM_RELEASE.format(replicas="2"))
    podinfo.commit()
    assert podinfo.push().accepted


def test_an_argo_application_and_application_set_of_this_repository_are_rendered(server: Server, podinfo: Clone) -> None:
    server.configure(f"helm:\n  repository_urls: [{URL}]\n")
    podinfo.write("argocd/podinfo-prod.yaml", APPLICATION.replace("{replicas}", "2"))
    podinfo.write("argocd/podinfo-envs.yaml", APPLICATION_SET)
    podinfo.commit()
    push = podinfo.push()
    assert push.accepted, push.output
    assert lines(push, "helm-chart") == [
        f"{CHART}/Chart.yaml:1:1: info [helm-chart] Helm chart {CHART}: rendered as "
        f"release podinfo-staging of {CHART} (default values); release podinfo-qa of {CHART} (default values); "
        f"release podinfo-prod of {CHART} ({CHART}/values-prod.yaml, argocd/podinfo-prod.yaml helm.parameters)"]
    podinfo.write("argocd/podinfo-prod.yaml", APPLICATION.replace("{replicas}", "two"))
    podinfo.commit()
    push = podinfo.push()
    assert not push.accepted
    # values-prod.yaml turns the HorizontalPodAutoscaler on: the replica count goes there
    assert lines(push, "schema-invalid") == [
        f"{CHART}/templates/hpa.yaml:14:16: error [schema-invalid] horizontalpodautoscaler.autoscaling/podinfo-prod "
        f"[release podinfo-prod of {CHART} ({CHART}/values-prod.yaml, argocd/podinfo-prod.yaml helm.parameters)]: "
        "spec.minReplicas: 'two' is not of type integer"]


def test_missing_dependency_and_remote_charts_are_reported_not_fetched(podinfo: Clone) -> None:
    chart_yaml = (PODINFO / "Chart.yaml").read_text() + (
        "dependencies:\n  - name: redis\n    version: 20.1.0\n    repository: https://charts.bitnami.com/bitnami\n")
    podinfo.write(f"{CHART}/Chart.yaml", chart_yaml)
    podinfo.write("infra/sources.yaml",
                  "apiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\nmetadata:\n  name: bitnami\n"
                  "  namespace: infra\nspec:\n  url: https://charts.bitnami.com/bitnami\n---\n"
                  "apiVersion: source.toolkit.fluxcd.io/v1\nkind: HelmRepository\nmetadata:\n  name: ghcr\n"
                  "  namespace: infra\nspec:\n  type: oci\n  url: oci://ghcr.io/stefanprodan/charts\n")
    release = ("apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: {name}\n"
               "  namespace: infra\nspec:\n  interval: 1h\n  chart:\n    spec:\n      chart: {name}\n"
               "      sourceRef:\n        kind: HelmRepository\n        name: {source}\n")
    podinfo.write("infra/redis.yaml", release.format(name="redis", source="bitnami"))
    podinfo.write("infra/podinfo-oci.yaml", release.format(name="podinfo", source="ghcr"))
    podinfo.commit()
    push = podinfo.push()
    assert not push.accepted
    assert lines(push, "helm-render") == [
        f"{CHART}/Chart.yaml:14:1: error [helm-render] release podinfo of {CHART} ({CHART}/values-prod.yaml): "
        "dependency redis is not vendored under charts/ (nothing is downloaded at push)",
        f"{CHART}/Chart.yaml:14:1: error [helm-render] release podinfo of {CHART} (default values): dependency redis "
        "is not vendored under charts/ (nothing is downloaded at push)"]
    assert lines(push, "helm-not-rendered") == [
        "infra/podinfo-oci.yaml:12:9: info [helm-not-rendered] HelmRelease infra/podinfo: chart podinfo comes from "
        "an OCI registry: not downloaded at push, not rendered",
        "infra/redis.yaml:12:9: info [helm-not-rendered] HelmRelease infra/redis: chart redis comes from "
        "HelmRepository bitnami: not downloaded at push, not rendered"]


def helm_rows(server: Server) -> int:
    db = server.path / "gitops-hooks" / "cache" / "cache.sqlite"
    return int(sqlite3.connect(db).execute("SELECT count(*) FROM kv WHERE k LIKE 'v1:helm:%'").fetchone()[0])


def test_renders_are_cached_by_chart_and_values(server: Server, podinfo: Clone) -> None:
    podinfo.commit()
    first = podinfo.push()
    assert first.accepted, first.output
    assert helm_rows(server) == 2  # defaults, values-prod.yaml
    podinfo.write("README.md", "fleet\n")
    podinfo.commit()
    again = podinfo.push()
    assert again.accepted and helm_rows(server) == 2  # nothing of the chart changed: no render
    podinfo.write(f"{CHART}/values-prod.yaml", (PODINFO / "values-prod.yaml").read_text() + "podAnnotations: {a: b}\n")
    podinfo.commit()
    assert podinfo.push().accepted
    # a file of the chart's folder changed (`.Files` may read any): its two releases are rendered again
    assert helm_rows(server) == 4


def test_without_an_engine_the_chart_is_said_not_rendered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need_corpus()
    shutil.copytree(PODINFO, tmp_path / CHART)
    monkeypatch.setattr(helm, "engine_version", lambda: None)
    result = pipeline.check_snapshot(FolderTree(tmp_path), config.Policy(config.checked({}, "test")))
    assert [(f.path, f.line, str(f.severity), f.message, f.hint) for f in result.findings] == [
        (f"{CHART}/Chart.yaml", 1, "info", f"Helm chart {CHART}: not rendered, no Helm engine is installed",
         "install the engine: pip install 'gitops-hooks[helm]' (./install.sh does)")]


def test_a_runaway_template_is_stopped_and_refused(server: Server, clone: Clone) -> None:
    server.configure("limits:\n  timeout_seconds: 6\n")
    clone.write("charts/spin/Chart.yaml", "apiVersion: v2\nname: spin\nversion: 1.0.0\n")
    clone.write("charts/spin/templates/spin.yaml",
                "{{- range $i := until 100000 }}{{- range $j := until 100000 }}{{- end }}{{- end }}\n")
    clone.commit()
    push = clone.push()
    assert not push.accepted
    assert "charts/spin/Chart.yaml:1:1: error [helm-render] release spin of charts/spin (default values): rendering " \
        "took longer than 4 s (its share of limits.timeout_seconds)" in push.remote_lines()


def test_files_functions_stay_inside_the_chart(clone: Clone) -> None:
    clone.write("charts/escape/Chart.yaml", "apiVersion: v2\nname: escape\nversion: 1.0.0\n")
    clone.write("charts/escape/files/greeting.txt", "hello\n")
    clone.write("charts/escape/templates/cm.yaml",
                '{{- if .Files.Get "../../../../../etc/passwd" }}{{ fail "read outside the chart" }}{{ end }}\n'
                '{{- if not (.Files.Get "files/greeting.txt") }}{{ fail "cannot read its own file" }}{{ end }}\n'
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: escape\n  namespace: apps\n"
                "data:\n  files: {{ len (.Files.Glob \"**\") | quote }}\n")
    clone.commit()
    push = clone.push()
    assert push.accepted, push.output
    assert "[helm-render]" not in push.output
    clone.write("charts/escape/files/greeting.txt", "")
    clone.commit()
    push = clone.push()  # (and a template's failure is reported at the template's line)
    assert "charts/escape/templates/cm.yaml:2:1: error [helm-render] release escape of charts/escape (default " \
        "values): execution error at (escape/templates/cm.yaml:2:50): cannot read its own file" in push.remote_lines()


def test_an_environment_applies_what_its_helm_releases_render_only_when_asked(tmp_path: Path) -> None:
    from gitops_hooks.reconcile.desired import describe, desired_set
    from gitops_hooks.reconcile.environments import from_config

    need_corpus()
    shutil.copytree(PODINFO, tmp_path / CHART)
    (tmp_path / "clusters").mkdir()
    (tmp_path / "clusters" / "gotk-sync.yaml").write_text(FLUX_SYNC)
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "podinfo.yaml").write_text(HELM_RELEASE.format(replicas=2).split("  valuesFrom:")[0]
                                                    + "  values:\n    replicaCount: 2\n")
    settings = {"ref": "main", "path": "apps", "cluster": {"in_cluster": True}}
    server_config = config.checked({}, "test")

    plain = desired_set(FolderTree(tmp_path), from_config("prod", settings), server_config)
    assert [describe(d) for d in plain.objects] == ["helmrelease.helm.toolkit.fluxcd.io/podinfo"]

    rendered = desired_set(FolderTree(tmp_path), from_config("prod", {**settings, "helm": "render"}), server_config)
    assert sorted(describe(d) for d in rendered.objects) == ["deployment.apps/podinfo", "service/podinfo"]
    deployment = next(d for d in rendered.objects if d.kind == "Deployment")
    assert deployment.obj["spec"]["replicas"] == 2 and deployment.namespace == "apps"
    assert deployment.where.startswith(f"{CHART}/templates/deployment.yaml:")
    assert rendered.ok, rendered.findings


def test_two_templates_of_one_release_defining_one_object_are_refused(clone: Clone) -> None:
    config_map = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  namespace: apps\ndata:\n  a: \"1\"\n"
    clone.write("charts/web/Chart.yaml", "apiVersion: v2\nname: web\nversion: 1.0.0\n")
    clone.write("charts/web/templates/a.yaml", config_map)
    clone.write("charts/web/templates/b.yaml", config_map)
    clone.write("charts/web/values-prod.yaml", "a: 1\n")
    clone.commit()
    push = clone.push()
    assert not push.accepted
    # once per release; each release is its own unit, so the two releases do not collide with each other
    assert lines(push, "object-duplicate") == [
        f"charts/web/templates/b.yaml:1:1: error [object-duplicate] configmap/web [release web of charts/web ({values})] "
        "in namespace apps is already defined at charts/web/templates/a.yaml:1"
        for values in ("charts/web/values-prod.yaml", "default values")]
    assert "hint: keep one definition (both are part of helm release web of charts/web (default values))" \
        in push.output


def test_admission_policies_judge_what_a_release_renders(podinfo: Clone) -> None:
    from test_admission import POLICY_EVERYWHERE

    podinfo.write("policies/limits.yaml", POLICY_EVERYWHERE)
    podinfo.commit()
    push = podinfo.push()
    assert not push.accepted
    denied = lines(push, "admission-denied")
    # values.yaml leaves the memory limit out; values-prod.yaml sets it for podinfo (its Redis has none)
    assert [x.split(" denied request")[0] for x in denied if "(podinfo)" in x] == [
        f"{CHART}/templates/deployment.yaml:1:1: error [admission-denied] deployment.apps/podinfo [release podinfo of "
        f"{CHART} (default values)]: ValidatingAdmissionPolicy 'require-limits' with binding 'require-limits-prod'"], denied


def test_flux_values_files_and_argo_values_objects_are_merged_in_order(tmp_path: Path) -> None:
    need_corpus()
    shutil.copytree(PODINFO, tmp_path / CHART)
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "qa.yaml").write_text("replicaCount: 1\nui:\n  color: three\n")
    flux = HELM_RELEASE.format(replicas=2).split("  valuesFrom:")[0].replace(
        "      chart: ./charts/podinfo\n", "      chart: ./charts/podinfo\n      valuesFiles: [envs/qa.yaml]\n")
    (tmp_path / "flux.yaml").write_text(FLUX_SYNC + "---\n" + flux + "  values:\n    hpa: {enabled: true, maxReplicas: many}\n")
    argo = APPLICATION.replace("{replicas}", "3").replace(
        "      valueFiles:\n        - values-prod.yaml\n",
        "      values: |\n        service: {httpPort: eighty}\n      valuesObject:\n        service: {externalPort: 80}\n")
    (tmp_path / "argo.yaml").write_text(argo)
    policy = config.Policy(config.checked({"helm": {"repository_urls": [URL]}}, "test"))
    result = pipeline.check_snapshot(FolderTree(tmp_path), policy)
    found = [f"{f.path}:{f.line}: {f.message}" for f in result.findings if f.rule in ("schema-invalid", "helm-chart")]
    flux_label = f"release podinfo of {CHART} (envs/qa.yaml, flux.yaml spec.values)"
    argo_label = f"release podinfo-prod of {CHART} (argo.yaml helm.values, argo.yaml helm.valuesObject, " \
        "argo.yaml helm.parameters)"
    assert found == [
        f"{CHART}/Chart.yaml:1: Helm chart {CHART}: rendered as {argo_label}; {flux_label}",
        f"{CHART}/templates/deployment.yaml:126: deployment.apps/podinfo-prod [{argo_label}]: "
        "spec.template.spec.containers[0].ports[0].containerPort: 'eighty' is not of type integer",
        f"{CHART}/templates/hpa.yaml:15: horizontalpodautoscaler.autoscaling/podinfo [{flux_label}]: "
        "spec.maxReplicas: 'many' is not of type integer",
    ], found
