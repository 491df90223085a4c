"""Unrendered templates get a message saying so, not a YAML parse error; charts are recognised as charts."""

from __future__ import annotations

import pytest
from conftest import Clone, Push, Server

HELM_TEMPLATE = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
spec:
  replicas: {{ .Values.replicas }}
"""

JINJA_TEMPLATE = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
{% for key, value in settings.items() %}
  {{ key }}: "{{ value }}"
{% endfor %}
"""


def push_files(clone: Clone, files: dict[str, str]) -> Push:
    for path, text in files.items():
        clone.write(path, text)
    clone.commit("change")
    return clone.push()


def rules_at(push: Push, path: str) -> list[str]:
    return [line for line in push.remote_lines() if line.startswith(path + ":")]


@pytest.mark.parametrize("text,line", [(HELM_TEMPLATE, 4), (JINJA_TEMPLATE, 6)])
def test_unrendered_template_is_refused_as_a_template(server: Server, clone: Clone, text: str, line: int) -> None:
    push = push_files(clone, {"apps/web.yaml": text})
    assert not push.accepted
    got = rules_at(push, "apps/web.yaml")
    assert len(got) == 1, push.output
    assert got[0].startswith(f"apps/web.yaml:{line}:")
    assert ": error [template-unrendered] the file holds template syntax ({{ … }} or {% … %}), so it is not YAML yet" \
        in got[0]
    assert "[yaml-syntax]" not in push.output
    assert "hint: commit the rendered manifests, or mark the folder as a Helm chart (Chart.yaml)" in push.output


def test_the_same_template_inside_a_chart_is_rendered_and_checked(server: Server, clone: Clone) -> None:
    push = push_files(clone, {
        "charts/web/Chart.yaml": "apiVersion: v2\nname: web\nversion: 1.0.0\n",
        "charts/web/templates/deployment.yaml": HELM_TEMPLATE,
    })
    assert rules_at(push, "charts/web/Chart.yaml") == [
        "charts/web/Chart.yaml:1:1: info [helm-chart] Helm chart charts/web: rendered as release web of charts/web "
        "(default values)"]
    assert "[template-unrendered]" not in push.output
    # what it renders is checked: a Deployment without selector and pod template, at the template's line
    assert not push.accepted
    assert "charts/web/templates/deployment.yaml:6:3: error [schema-invalid] deployment.apps/web-web [release web of " \
        "charts/web (default values)]: spec: missing required field 'selector'" in push.output


def test_braces_in_plain_yaml_values_are_not_templates(server: Server, clone: Clone) -> None:
    text = ('apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: apps\ndata:\n'
            '  format: "{{ .Name }} is rendered by the application, not by us"\n')
    push = push_files(clone, {"apps/settings.yaml": text})
    assert push.accepted, push.output
