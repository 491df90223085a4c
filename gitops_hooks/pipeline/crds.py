"""CRD discovery: the kinds the tree's CRDs define, registered (as loaders: a CRD's schema is read only
when an object of its kinds is validated) with the blob that defines each, for the cache keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..cache import fingerprint
from ..documents import Document
from ..gitrepo import Entry
from ..schemas import GVK, CustomSchemas, crd_versions
from .renders import KustomizePlan


class CrdDiscovery(KustomizePlan):

    def register_crds(self, manifests: list[Entry]) -> dict[GVK, str]:
        """Add the CRDs of the tree to the custom schemas; which blob defines each kind (for cache keys)."""
        # The first definition of a kind counts, for the loader and for `source` alike: a cache key that
        # names a CRD blob always means that blob's schema. A kind the custom schemas have already (the
        # administrator's, bundled) keeps its schema and names no blob.
        source: dict[GVK, str] = {}
        for e in manifests:
            rows = self.summary(e)["defines"]
            if not rows:
                continue
            traits: dict[GVK, tuple[str, str]] = {}
            for g, v, k, rules, scope in rows:
                traits.setdefault((g, v, k), (rules, scope))
            for gvk in traits:
                if gvk not in source and gvk not in self.ctx.custom:
                    source[gvk] = e.oid
            self.ctx.custom.add_loader(list(traits), self._crd_loader(e), f"{e.oid}:{e.path}", traits)
        return source

    def register_rendered_crds(self, rendered: list[Document], source: dict[GVK, str]) -> None:
        for doc in rendered:
            if doc.kind == "CustomResourceDefinition" and doc.api_version.startswith("apiextensions.k8s.io/"):
                for gvk in self.ctx.custom.add_crd(doc.obj, f"{doc.path}:{doc.line}"):
                    source[gvk] = fingerprint(doc.obj)

    def register_all_crds(self, manifests: list[Entry], rendered: list[Document],
                          base: CustomSchemas | None = None) -> None:
        """The CRDs of every summary known so far, then those that only a kustomize build yields; with
        `base` (the custom schemas before any CRD of the tree), registered anew over a copy of it."""
        if base is not None:
            self.ctx.custom = base.copy()
        self.crd_source = self.register_crds([e for e in manifests if e.path in self.summaries])
        self.register_rendered_crds(rendered, self.crd_source)

    def _crd_loader(self, e: Entry) -> Callable[[GVK], tuple[dict[str, Any], str, str]]:
        """Read a CRD blob's schemas only when an object of one of its kinds must be validated."""
        def load(gvk: GVK) -> tuple[dict[str, Any], str, str]:
            key = f"crd:{e.oid}"
            crds = self.cache.get(key)
            if crds is None:
                crds = [[d.obj, d.line] for d in self.parse(e.path).documents
                        if d.kind == "CustomResourceDefinition" and d.api_version.startswith("apiextensions.k8s.io/")]
                self.cache.put(key, crds)
            for obj, line in crds:
                for found, schema, scope in crd_versions(obj):
                    if found == gvk:
                        return schema, f"{e.path}:{line}", scope
            raise KeyError(gvk)
        return load
