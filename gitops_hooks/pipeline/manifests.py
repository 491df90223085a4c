"""Listing and choosing manifests: which files of the tree are read as manifests, which are listed
only (charts, submodules, links, files over the size limit)."""

from __future__ import annotations

from ..config import matcher
from ..findings import Finding, finding
from ..gitrepo import Entry
from ..render.helm_gate import chart_dirs  # noqa: F401  (re-exported: the pipeline's charts step)
from .state import RunState


def _in_dirs(path: str, dirs: list[str]) -> bool:
    return bool(dirs) and any(d == "" or path.startswith(d + "/") for d in dirs)


class ChoosingManifests(RunState):

    def manifests(self, charts: list[str], out: list[Finding]) -> list[Entry]:
        included, excluded = matcher(self.policy.include), matcher(self.policy.manifest_exclude)
        chosen = []
        for e in self.entries:
            if e.is_submodule:
                out.append(finding("tree-submodule", e.path, 1, 1, f"submodule {e.path} ({e.oid[:12]}): not checked"))
                continue
            if included(e.path) is None or excluded(e.path) is not None:
                continue
            if _in_dirs(e.path, charts) or e.path == ".gitops-hooks.yaml":
                continue
            if e.is_link:
                out.append(finding("tree-symlink", e.path, 1, 1, f"{e.path} is a symbolic link: not followed, not checked"))
                continue
            if e.size > self.limits.max_file_bytes:
                out.append(finding("file-too-large", e.path, 1, 1,
                                   f"{e.size} bytes is over the limit of {self.limits.max_file_bytes} bytes"))
                continue
            chosen.append(e)
        self.by_manifest = {e.path for e in chosen}
        return chosen
