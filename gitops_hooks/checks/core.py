"""Rules for reading the tree itself: YAML, files, kustomize, refs, policy and the gate's own health."""

from __future__ import annotations

from ..findings import Rule, Severity, register

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

register(
    Rule("yaml-syntax", "yaml", E, "The file is not valid YAML (or JSON).",
         "kubectl cannot read a manifest that does not parse; nothing in the file can be applied.",
         "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n"),
    Rule("yaml-duplicate-key", "yaml", E, "A map has the same key twice.",
         "kubectl's strict decoding refuses duplicate keys; other tools silently keep the last one, "
         "so what you reviewed may not be what gets applied.",
         "metadata:\n  labels:\n    app: web\n"),
    Rule("yaml-not-mapping", "yaml", E, "A YAML document is a list or a scalar, not an object.",
         "Every document of a manifest file must be one Kubernetes object: a map with apiVersion, kind "
         "and metadata. So must every item of a `kind: List` (or any `...List` kind with items), which "
         "kubectl applies item by item; an empty List is valid.", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n"),
    Rule("yaml-tag", "yaml", E, "The document uses a YAML tag kubectl does not understand.",
         "Tags such as !!python/object construct program objects in some YAML libraries; kubectl refuses "
         "them and so do we.", "value: plain-string\n"),
    Rule("yaml-alias", "yaml", E, "YAML aliases expand too far or loop.",
         "Anchors and aliases can multiply a small file into billions of values (a 'billion laughs' "
         "attack). The expansion is bounded by limits.max_alias_expansion.", ""),
    Rule("yaml-limits", "yaml", E, "The file goes past a configured limit (documents, nesting, key size).",
         "Limits keep the gate fast and safe; see the limits section of the configuration.", ""),
    Rule("file-binary", "file", E, "A file named like a manifest holds binary content.",
         "Manifests are text. Move binary files out of the manifest paths or exclude them.", ""),
    Rule("file-encoding", "file", E, "A manifest file is not valid UTF-8.",
         "kubectl reads UTF-8 (a BOM is accepted). Save the file as UTF-8.", ""),
    Rule("file-too-large", "file", E, "A file is larger than limits.max_file_bytes.",
         "Very large files are refused by size before they are read.", ""),
    Rule("template-unrendered", "template", E, "A manifest file holds template syntax ({{ }} or {% %}).",
         "Helm or Jinja templates are not desired state until rendered. Commit the rendered manifests, "
         "or keep the chart in a folder with Chart.yaml (it is then recognised as a chart).",
         "image: registry.example.com/web:1.4.2\n"),
    Rule("helm-chart", "helm", INFO, "A Helm chart folder: which releases of it were rendered and checked.",
         "Charts are rendered with Helm's own engine, offline: for each HelmRelease (Flux) and Application "
         "(Argo CD) of this repository that points at the chart, and for a chart nothing points at, with its "
         "default values and each values-*.yaml or ci/*-values.yaml beside it. Their objects are checked like "
         "any manifest. Without an engine installed (pip install 'gitops-hooks[helm]') the chart is not rendered.",
         ""),
    Rule("helm-render", "helm", E, "A chart does not render: a template fails, or a dependency is not vendored.",
         "The gate renders the chart as `helm template` would, offline: templates must render with the release's "
         "values, and every dependency of Chart.yaml must be committed under charts/ (nothing is downloaded at "
         "push). The message names the release and its values.", ""),
    Rule("helm-values", "helm", E, "A release's values do not fit the chart's values.schema.json, or cannot be read.",
         "Helm validates the merged values against values.schema.json before it renders; so does the gate, "
         "at the line of the values file (or HelmRelease, Application) that sets the value.", "replicaCount: 2\n"),
    Rule("helm-not-rendered", "helm", INFO, "A release whose chart is not in this repository, or whose values are not in git.",
         "Charts from a HelmRepository, an OCI registry or another repository are never downloaded at push, "
         "and values from a ConfigMap or Secret that is not in git are unknown: the gate says what it did not "
         "render instead of guessing.", ""),
    Rule("tree-symlink", "tree", INFO, "A symbolic link where a manifest would be: listed, never followed.",
         "The gate never follows links, so their targets are not checked; kubectl and kustomize would "
         "read the target. Replace the link with the file itself.", ""),
    Rule("tree-submodule", "tree", INFO, "A submodule: listed, never followed.",
         "Submodule contents live in another repository and are not checked by this push.", ""),
    Rule("kustomize-build", "kustomize", E, "A kustomization does not build.",
         "The folder's kustomization.yaml is rendered with `kubectl kustomize` (or read directly when it "
         "only lists local files); its errors are reported here.", ""),
    Rule("kustomize-unsafe", "kustomize", E,
         "A kustomization needs remote resources, plugins, exec functions or Helm inflation.",
         "The gate renders kustomizations with everything that reaches outside the repository switched "
         "off. Vendor remote bases into the repository, and render Helm charts with a HelmRelease.",
         "resources:\n  - ../base\n  - deployment.yaml\n"),
    Rule("ref-protected", "refs", E, "A protected ref may not be deleted, and the audit notes ref not changed, by a push.",
         "The administrator lists refs that may not be deleted under refs.protect. refs/notes/gitops holds the "
         "audit trail that reconciliation writes: no push may change or delete it.", ""),
    Rule("policy-loosening-ignored", "policy", W,
         "The repository's .gitops-hooks.yaml tried to loosen the server's policy; that part is ignored.",
         "A pushed repository may only tighten the server's policy (raise severities, check more files).",
         "rules:\n  schema-unknown-kind: error\n"),
    Rule("internal-error", "gate", E, "The gate failed internally and refuses the push (fail closed).",
         "The traceback is in the log inside the bare repository (gitops-hooks/log/). Tell the administrator.",
         ""),
    Rule("config-error", "gate", E, "The server configuration is broken; the gate refuses pushes until fixed.",
         "Run `gitops-hooks config check <repo>` on the server.", ""),
)
