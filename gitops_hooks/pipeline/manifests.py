"""Listing and choosing manifests: which files of the tree are read as manifests, which are listed
only (charts, submodules, links, files over the size limit)."""

from __future__ import annotations

from ..config import matcher
from ..findings import Finding, finding
from ..gitrepo import MODE_GITLINK, MODE_LINK, Entry
from ..render.helm_gate import chart_dirs  # noqa: F401  (re-exported: the pipeline's charts step)
from .state import RunState


def _in_dirs(path: str, dirs: list[str]) -> bool:
    return bool(dirs) and any(d == "" or path.startswith(d + "/") for d in dirs)


class ChoosingManifests(RunState):

    def manifests(self, charts: list[str], out: list[Finding]) -> list[Entry]:
        included, excluded = matcher(self.policy.include), matcher(self.policy.manifest_exclude)
        chosen = []
        largest = self.limits.max_file_bytes
        for e in self.entries:  # (a pass over every path of the tree, push after push: kept tight)
            path, mode = e.path, e.mode
            if mode == MODE_GITLINK:
                out.append(finding("tree-submodule", path, 1, 1, f"submodule {path} ({e.oid[:12]}): not checked"))
                continue
            if included(path) is None or excluded(path) is not None:
                continue
            if charts and _in_dirs(path, charts) or path == ".gitops-hooks.yaml":
                continue
            if mode == MODE_LINK:
                out.append(finding("tree-symlink", path, 1, 1, f"{path} is a symbolic link: not followed, not checked"))
                continue
            if e.size > largest:
                out.append(finding("file-too-large", path, 1, 1, f"{e.size} bytes is over the limit of {largest} bytes"))
                continue
            chosen.append(e)
        self.by_manifest = {e.path for e in chosen}
        return chosen
