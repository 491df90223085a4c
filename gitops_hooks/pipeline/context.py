"""What the checks are given: the Kubernetes schemas of the version (compiled once per process), the
custom schemas (bundled CRDs, the administrator's folders) and the configured limits."""

from __future__ import annotations

from pathlib import Path

from ..checks import CheckContext
from ..config import Policy
from ..documents import parse
from ..schemas import CustomSchemas, KubernetesSchemas, definition_closure, load_bundled

_KUBE_CACHE: dict[tuple[str, bool], KubernetesSchemas] = {}


def kubernetes_schemas(version: str, strict: bool) -> KubernetesSchemas:
    key = (version, strict)
    if key not in _KUBE_CACHE:
        _KUBE_CACHE[key] = KubernetesSchemas(version, strict)
    return _KUBE_CACHE[key]


def make_context(policy: Policy, ref: str = "") -> CheckContext:
    kube = kubernetes_schemas(policy.kubernetes_version, policy.strict)
    meta_name = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    custom = CustomSchemas(policy.strict, lambda: definition_closure(kube.defs, meta_name), "tree", kube.version)
    load_bundled(custom)
    for folder in policy.config.get("schema_dirs", []):
        _load_schema_dir(Path(folder), custom)
    return CheckContext(policy=policy, kube=kube, custom=custom, ref=ref)


def _load_schema_dir(folder: Path, custom: CustomSchemas) -> None:
    if not folder.is_dir():
        raise FileNotFoundError(f"schema_dirs: {folder} is not a folder")
    for path in sorted(folder.rglob("*")):
        if path.suffix not in (".yaml", ".yml", ".json") or not path.is_file():
            continue
        pf = parse(str(path), path.read_bytes())
        for doc in pf.documents:
            if doc.kind == "CustomResourceDefinition":
                custom.add_crd(doc.obj, f"{path}", pin=True)
