#!/usr/bin/env python3
"""Derive the bundled CRD schemas in schemas/crds/ from upstream CustomResourceDefinition files.

Input: a folder of CRD YAML files as published upstream, with a README.md whose table names, for each
group of files, the repository, the folder in it and the commit they were copied from:

    | `source.toolkit.fluxcd.io_*` | fluxcd/source-controller `config/crd/bases` | 39b711b |

Output, in schemas/crds/ (what `gitops_hooks.schemas.load_bundled` reads):

- one `<crd name>.json` per CRD: {"name", "group", "kind", "scope", "source", "versions": [{"name",
  "openAPIV3Schema"}]} with the served versions only; the schemas are kept as published, Kubernetes
  extensions (x-kubernetes-validations included) untouched;
- `index.json`: {"kinds": [{"group", "version", "kind", "file"}]}, one entry per served version;
- `PROVENANCE.md`: what was derived, from where, at which commit, under which licence, how to regenerate.

The output depends only on the input files: running the script again reproduces it byte for byte.

    python scripts/bundle_crds.py [--crds ../shared/crds] [--out schemas/crds] [--check]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CRDS = REPO_ROOT.parent / "shared" / "crds"
DEFAULT_OUT = REPO_ROOT / "schemas" / "crds"
LICENCE = "Apache-2.0"

# | `glob`, `glob` | owner/repo `folder` | commit |
_ROW = re.compile(
    r"^\|\s*(?P<globs>[^|]+?)\s*\|\s*(?P<repo>[\w.-]+/[\w.-]+)\s+`(?P<folder>[^`]+)`\s*\|"
    r"\s*(?P<commit>[0-9a-f]{6,40})\s*\|\s*$"
)


class BundleError(Exception):
    """The input cannot be bundled; the message says which file and why."""


@dataclass(frozen=True)
class Origin:
    globs: tuple[str, ...]
    repository: str
    folder: str
    commit: str

    def covers(self, filename: str) -> bool:
        return any(fnmatch.fnmatchcase(filename, g) for g in self.globs)

    def source(self, filename: str) -> str:
        return f"{self.repository}@{self.commit} {self.folder}/{filename}"


@dataclass(frozen=True)
class BundledCRD:
    filename: str  # upstream file name
    name: str
    group: str
    kind: str
    scope: str
    source: str
    versions: tuple[tuple[str, dict[str, Any]], ...]  # (version, openAPIV3Schema), served only

    @property
    def out_file(self) -> str:
        return f"{self.name}.json"

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group": self.group,
            "kind": self.kind,
            "scope": self.scope,
            "source": self.source,
            "versions": [{"name": v, "openAPIV3Schema": s} for v, s in self.versions],
        }


def read_origins(readme: Path) -> list[Origin]:
    """The provenance table of the input folder's README.md."""
    if not readme.is_file():
        raise BundleError(f"{readme}: missing; it must say where each CRD file comes from")
    origins = []
    for line in readme.read_text(encoding="utf-8").splitlines():
        m = _ROW.match(line.strip())
        if m:
            globs = tuple(re.findall(r"`([^`]+)`", m["globs"]))
            origins.append(Origin(globs, m["repo"], m["folder"].strip("/"), m["commit"]))
    if not origins:
        raise BundleError(f"{readme}: no provenance table rows (| `files` | owner/repo `folder` | commit |)")
    return origins


def origin_of(filename: str, origins: list[Origin]) -> Origin:
    found = [o for o in origins if o.covers(filename)]
    if len(found) != 1:
        raise BundleError(f"{filename}: {len(found)} rows of the provenance table match this file "
                          "(exactly one must say where it comes from)")
    return found[0]


def load_crds(path: Path) -> list[dict[str, Any]]:
    """The CustomResourceDefinitions in one file, read as kubectl reads YAML (the suite's own parser)."""
    from gitops_hooks.documents import parse

    parsed = parse(path.name, path.read_bytes())
    if parsed.findings:
        f = parsed.findings[0]
        raise BundleError(f"{path}:{f.line}:{f.column}: {f.message}")
    crds = [d.obj for d in parsed.documents if d.kind == "CustomResourceDefinition"]
    if not crds:
        raise BundleError(f"{path}: no CustomResourceDefinition in this file")
    return crds


def bundle_one(crd: dict[str, Any], filename: str, origin: Origin) -> BundledCRD:
    where = f"{filename}: {crd.get('metadata', {}).get('name', '?')}"
    if crd.get("apiVersion") != "apiextensions.k8s.io/v1":
        raise BundleError(
            f"{where}: apiVersion {crd.get('apiVersion')!r}; only apiextensions.k8s.io/v1 is bundled"
        )
    spec = crd["spec"]
    versions = []
    for v in spec["versions"]:
        if not v.get("served", False):
            continue
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        if not isinstance(schema, dict):
            raise BundleError(f"{where}: served version {v['name']} has no openAPIV3Schema")
        versions.append((str(v["name"]), schema))
    if not versions:
        raise BundleError(f"{where}: no served version")
    return BundledCRD(
        filename,
        str(crd["metadata"]["name"]),
        str(spec["group"]),
        str(spec["names"]["kind"]),
        str(spec.get("scope", "Namespaced")),
        origin.source(filename),
        tuple(versions),
    )


def collect(crds_dir: Path) -> list[BundledCRD]:
    origins = read_origins(crds_dir / "README.md")
    out: list[BundledCRD] = []
    for path in sorted(crds_dir.glob("*.yaml")):
        origin = origin_of(path.name, origins)
        out.extend(bundle_one(crd, path.name, origin) for crd in load_crds(path))
    names = [b.name for b in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BundleError(f"CRDs defined in more than one file: {', '.join(dupes)}")
    return sorted(out, key=lambda b: b.name)


def dump(data: Any) -> str:
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def index_json(bundled: list[BundledCRD]) -> dict[str, Any]:
    kinds = [
        {"group": b.group, "version": v, "kind": b.kind, "file": b.out_file}
        for b in bundled
        for v, _ in b.versions
    ]
    return {"kinds": sorted(kinds, key=lambda k: (k["group"], k["kind"], k["version"]))}


def provenance_md(bundled: list[BundledCRD], origins: list[Origin]) -> str:
    lines = [
        "# Bundled CRD schemas: provenance",
        "",
        "Each `*.json` file here holds the `openAPIV3Schema` of every served version of one upstream",
        "CustomResourceDefinition, unchanged (Kubernetes extensions such as `x-kubernetes-validations`",
        "included), with the CRD's name, group, kind and scope. `index.json` lists (group, version, kind)",
        "→ file. gitops-hooks validates custom resources of these kinds against them when the repository",
        "does not hold the CRD itself.",
        "",
        f"Licence: the upstream CRDs are {LICENCE}; these files are derived from them as data.",
        "",
        "| repository | folder | commit |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {o.repository} | `{o.folder}` | {o.commit} |" for o in origins]
    lines += ["", "| file | kind | versions | source (repository@commit path) |", "| --- | --- | --- | --- |"]
    for b in bundled:
        served = ", ".join(v for v, _ in b.versions)
        lines.append(f"| `{b.out_file}` | {b.kind} ({b.group}) | {served} | {b.source} |")
    lines += [
        "",
        "## Regenerate",
        "",
        "Put the upstream CRD files in one folder with a README.md provenance table",
        "(`| \\`glob\\` | owner/repo \\`folder\\` | commit |`), then run from the project root:",
        "",
        "```",
        "python scripts/bundle_crds.py --crds ../shared/crds --out schemas/crds",
        "```",
        "",
        "`--check` compares instead of writing and exits 1 if the committed files differ.",
        "",
    ]
    return "\n".join(lines)


def render(crds_dir: Path) -> dict[str, str]:
    """File name → content of everything the script writes."""
    bundled = collect(crds_dir)
    files = {b.out_file: dump(b.as_json()) for b in bundled}
    files["index.json"] = dump(index_json(bundled))
    files["PROVENANCE.md"] = provenance_md(bundled, read_origins(crds_dir / "README.md"))
    return files


def write(files: dict[str, str], out: Path) -> list[str]:
    """Write the files; remove stale .json files of an earlier run. Returns what changed."""
    out.mkdir(parents=True, exist_ok=True)
    changed = []
    for stale in sorted(set(p.name for p in out.glob("*.json")) - set(files)):
        (out / stale).unlink()
        changed.append(f"removed {stale}")
    for name, text in sorted(files.items()):
        path = out / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(f"wrote {name}")
    return changed


def differences(files: dict[str, str], out: Path) -> list[str]:
    diffs = [f"stale {p.name}" for p in sorted(out.glob("*.json")) if p.name not in files]
    for name, text in sorted(files.items()):
        path = out / name
        if not path.is_file():
            diffs.append(f"missing {name}")
        elif path.read_text(encoding="utf-8") != text:
            diffs.append(f"differs {name}")
    return diffs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument(
        "--crds", type=Path, default=DEFAULT_CRDS, help="folder of upstream CRD files (default: %(default)s)"
    )
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    ap.add_argument("--check", action="store_true", help="compare with the output folder instead of writing")
    args = ap.parse_args(argv)
    try:
        files = render(args.crds)
    except (BundleError, OSError, KeyError, TypeError) as exc:
        print(f"bundle_crds: {exc}", file=sys.stderr)
        return 2
    if args.check:
        diffs = differences(files, args.out)
        for d in diffs:
            print(f"bundle_crds: {d}", file=sys.stderr)
        return 1 if diffs else 0
    for line in write(files, args.out):
        print(line)
    print(f"bundle_crds: {len(files) - 2} CRDs in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
