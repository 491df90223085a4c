"""A reference point: a straightforward Python validator of a folder of manifests.

    python bench/baseline.py FOLDER [KUBERNETES_VERSION]

It uses PyYAML's C loader and compiled jsonschema-rs validators, and reuses nothing between runs. On the
reference machine (2 cores) it took 2.2 s on the 10,000-object generated corpus, beside kubeconform's
1.8 s, and the cold-push target of 0.9 s was set beside those figures. Machines of this class run at
speeds that differ by half between hours (other guests share the cores), so bench_push.py times this
script between its cold pushes (`--only cold-push,baseline`): the ratio of the two, taken minutes apart,
says what the machine's speed of the moment does not.

It reads every .yaml, .yml and .json file under FOLDER (hidden folders such as .git left out), in path
order, with yaml.CSafeLoader, and checks each object against the schema of its apiVersion and kind in
kubernetes-validate's `-local` folder of the Kubernetes version (the newest bundled when none is given),
compiling each kind's validator once.
It prints one line: files, objects, objects with schema errors, kinds without a schema. It exits 1 when
a file cannot be read (PyYAML refuses one CRD of kube-prometheus), after the line.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

import jsonschema_rs
import yaml


def schema_folder(version: str) -> Path:
    spec = importlib.util.find_spec("kubernetes_validate")
    assert spec is not None and spec.submodule_search_locations, "kubernetes-validate is not installed"
    root = Path(list(spec.submodule_search_locations)[0]) / "kubernetes-json-schema"
    found = sorted((p for p in root.iterdir() if re.fullmatch(r"v\d+\.\d+\.\d+-local", p.name)),
                   key=lambda p: tuple(int(x) for x in re.findall(r"\d+", p.name)))
    if version:
        found = [p for p in found if p.name.startswith(f"v{version}.")]
    assert found, f"no schemas for Kubernetes {version or '(any)'}"
    return found[-1]


def main(folder: Path, version: str) -> int:
    defs = json.loads((schema_folder(version) / "_definitions.json").read_text())["$defs"]
    names = {(g["group"], g["version"], g["kind"]): name
             for name, d in defs.items() for g in d.get("x-kubernetes-group-version-kind", ())}
    validators: dict[tuple[str, str, str], Any] = {}
    files = objects = invalid = 0
    unknown: set[tuple[str, str, str]] = set()
    failed = ""
    for path in sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml", ".json") and p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(folder).parts)):
        files += 1
        try:
            docs = list(yaml.load_all(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            failed = failed or f"{path.relative_to(folder)}: {str(exc).splitlines()[0]}"
            continue
        for doc in docs:
            if not isinstance(doc, dict) or "kind" not in doc:
                continue
            objects += 1
            group, _, ver = str(doc.get("apiVersion", "")).rpartition("/")
            gvk = (group, ver, str(doc["kind"]))
            if gvk not in validators:
                name = names.get(gvk)
                validators[gvk] = None if name is None else jsonschema_rs.validator_for(
                    {"$ref": f"#/$defs/{name}", "$defs": defs})
            validator = validators[gvk]
            if validator is None:
                unknown.add(gvk)
            elif not validator.is_valid(doc):
                invalid += 1
    print(f"{files} files, {objects} objects, {invalid} with schema errors, {len(unknown)} kinds without a schema")
    if failed:
        print(f"cannot read {failed}")
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.split("\n\n")[1])
    sys.exit(main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) == 3 else ""))
