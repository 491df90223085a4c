"""Deterministic benchmark corpus: N Kubernetes objects in ceil(N/5) files, spread over folders.

The objects are the plain ones of ../shared/corpus (built-in API groups only: no CustomResourceDefinitions,
no Secrets, no kustomization or Component files, no custom resources, no `*List` kinds, no kustomize
patches), each taken once per identity, then replicated under new names: copy `c` of an object named
`web` is named `web-c<c>`. References that name another object of the same copy (RBAC role refs and
subjects, service accounts, ConfigMap volumes, APIService services) are renamed with it; label
selectors are left as they are, so every Deployment still selects its own pod template.

Same source and same N give byte-identical output: no randomness, no dates, sorted inputs.

    python bench/make_corpus.py /tmp/corpus-10000 --objects 10000
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_SOURCE = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
DEFAULT_OBJECTS = 10_000
PER_FILE = 5
FILES_PER_FOLDER = 100

# API groups served by Kubernetes itself ("" is the core group).
BUILTIN_GROUPS = frozenset({
    "", "apps", "batch", "policy", "autoscaling", "rbac.authorization.k8s.io", "networking.k8s.io",
    "apiregistration.k8s.io", "storage.k8s.io", "scheduling.k8s.io", "coordination.k8s.io",
    "node.k8s.io", "discovery.k8s.io", "admissionregistration.k8s.io", "certificates.k8s.io",
})
EXCLUDED_KINDS = frozenset({"CustomResourceDefinition", "Secret"})
KUSTOMIZE_FILES = frozenset({"kustomization.yaml", "kustomization.yml", "Kustomization"})


@dataclass(frozen=True)
class SourceObject:
    origin: str  # relative path of the source file, for reporting
    obj: dict[str, Any]

    @property
    def identity(self) -> tuple[str, str, str, str]:
        meta = self.obj["metadata"]
        return (self.obj["apiVersion"], self.obj["kind"], str(meta.get("namespace", "")), meta["name"])


@dataclass(frozen=True)
class Summary:
    objects: int
    files: int
    folders: int
    bytes: int
    pool: int


# ---------------------------------------------------------------------------- source pool

def _group(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def _has_patch_marker(value: Any) -> bool:
    if isinstance(value, dict):
        return any(str(k).startswith("$patch") or _has_patch_marker(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_patch_marker(v) for v in value)
    return False


def is_plain_object(doc: Any) -> bool:
    """A whole object of a built-in kind that the generator may replicate."""
    if not isinstance(doc, dict):
        return False
    api_version, kind, meta = doc.get("apiVersion"), doc.get("kind"), doc.get("metadata")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not isinstance(meta, dict):
        return False
    if not isinstance(meta.get("name"), str) or kind in EXCLUDED_KINDS or kind.endswith("List"):
        return False
    if _group(api_version) not in BUILTIN_GROUPS or _has_patch_marker(doc):
        return False
    return kind in ("Namespace", "ServiceAccount", "ConfigMap") or "spec" in doc or "rules" in doc \
        or "roleRef" in doc or "data" in doc


def _source_files(source: Path) -> Iterator[Path]:
    for path in sorted(source.rglob("*")):
        if path.suffix in (".yaml", ".yml") and path.is_file() and path.name not in KUSTOMIZE_FILES:
            yield path


def load_pool(source: Path) -> list[SourceObject]:
    """Plain objects of the source corpus, first occurrence of each identity, in sorted path order."""
    pool: list[SourceObject] = []
    seen: set[tuple[str, str, str, str]] = set()
    for path in _source_files(source):
        try:
            docs = list(yaml.load_all(path.read_bytes(), Loader=yaml.CSafeLoader))
        except yaml.YAMLError:
            continue  # e.g. CRDs with a plain `=` scalar, which PyYAML cannot construct: not wanted anyway
        for doc in docs:
            if not is_plain_object(doc):
                continue
            item = SourceObject(path.relative_to(source).as_posix(), doc)
            if item.identity not in seen:
                seen.add(item.identity)
                pool.append(item)
    if not pool:
        raise SystemExit(f"make_corpus: no plain Kubernetes objects found under {source}")
    return pool


# ---------------------------------------------------------------------------- renaming

def _rename(names: dict[tuple[str, str], str], kind: str, name: Any) -> Any:
    return names.get((kind, name), name) if isinstance(name, str) else name


def _rename_pod_spec(spec: Any, names: dict[tuple[str, str], str]) -> None:
    if not isinstance(spec, dict):
        return
    for key in ("serviceAccountName", "serviceAccount"):
        if key in spec:
            spec[key] = _rename(names, "ServiceAccount", spec[key])
    for volume in spec.get("volumes") or []:
        if isinstance(volume, dict) and isinstance(volume.get("configMap"), dict):
            cm = volume["configMap"]
            cm["name"] = _rename(names, "ConfigMap", cm.get("name"))


def _rename_references(obj: dict[str, Any], names: dict[tuple[str, str], str]) -> None:
    role_ref = obj.get("roleRef")
    if isinstance(role_ref, dict):
        role_ref["name"] = _rename(names, str(role_ref.get("kind")), role_ref.get("name"))
    for subject in obj.get("subjects") or []:
        if isinstance(subject, dict) and subject.get("kind") == "ServiceAccount":
            subject["name"] = _rename(names, "ServiceAccount", subject.get("name"))
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    template = spec.get("template")
    if isinstance(template, dict):
        _rename_pod_spec(template.get("spec"), names)
    service = spec.get("service")
    if obj.get("kind") == "APIService" and isinstance(service, dict):
        service["name"] = _rename(names, "Service", service.get("name"))


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def copy_names(pool: list[SourceObject], copy: int) -> dict[tuple[str, str], str]:
    """(kind, original name) → name in copy number `copy`."""
    return {(s.obj["kind"], s.obj["metadata"]["name"]): f"{s.obj['metadata']['name']}-c{copy}" for s in pool}


Names = dict[tuple[str, str], str]


def replica(pool: list[SourceObject], index: int, names: Names | None = None) -> dict[str, Any]:
    """Object number `index` of the corpus: pool entry index % len(pool), copy index // len(pool)."""
    source = pool[index % len(pool)]
    names = names if names is not None else copy_names(pool, index // len(pool))
    obj: dict[str, Any] = _copy(source.obj)
    obj["metadata"]["name"] = names[(obj["kind"], obj["metadata"]["name"])]
    _rename_references(obj, names)
    return obj


# ---------------------------------------------------------------------------- output

class _Dumper(yaml.CSafeDumper):
    pass


def _str_representer(dumper: yaml.CSafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def render(objs: list[dict[str, Any]]) -> bytes:
    text = yaml.dump_all(objs, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                         explicit_start=True, width=120, allow_unicode=True)
    return text.encode("utf-8")


def file_path(number: int, first: dict[str, Any], files_per_folder: int = FILES_PER_FOLDER) -> str:
    folder = f"team-{number // files_per_folder:03d}"
    return f"{folder}/{number:05d}-{first['kind'].lower()}-{first['metadata']['name']}.yaml"


def build(pool: list[SourceObject], objects: int = DEFAULT_OBJECTS,
          files_per_folder: int = FILES_PER_FOLDER) -> dict[str, bytes]:
    """The corpus as {relative path: bytes}, without touching the disk."""
    if objects < 1 or files_per_folder < 1:
        raise ValueError("objects and files_per_folder must be at least 1")
    names = [copy_names(pool, c) for c in range((objects - 1) // len(pool) + 1)]
    files: dict[str, bytes] = {}
    for number, start in enumerate(range(0, objects, PER_FILE)):
        objs = [replica(pool, i, names[i // len(pool)]) for i in range(start, min(start + PER_FILE, objects))]
        files[file_path(number, objs[0], files_per_folder)] = render(objs)
    return files


def write(files: dict[str, bytes], target: Path) -> None:
    if target.exists() and any(target.iterdir()):
        raise SystemExit(f"make_corpus: {target} is not empty; give an empty or new folder")
    for rel, data in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def generate(source: Path, target: Path, objects: int = DEFAULT_OBJECTS) -> Summary:
    pool = load_pool(source)
    files = build(pool, objects)
    write(files, target)
    return Summary(objects, len(files), len({p.split("/")[0] for p in files}),
                   sum(len(d) for d in files.values()), len(pool))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path, help="empty or new folder to write the corpus into")
    parser.add_argument("--objects", type=int, default=DEFAULT_OBJECTS, help="number of objects (10000)")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help=f"from ({DEFAULT_SOURCE})")
    args = parser.parse_args(argv)
    if not args.source.is_dir():
        parser.error(f"source corpus {args.source} is not a folder")
    if args.objects < 1:
        parser.error("--objects must be at least 1")
    s = generate(args.source, args.target, args.objects)
    print(f"{args.target}: {s.objects} objects in {s.files} files, {s.folders} folders, "
          f"{s.bytes / 1e6:.1f} MB (from {s.pool} distinct source objects)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
