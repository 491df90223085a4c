"""One pipeline for every entry point: a snapshot of files in, findings out.

snapshot ─► classify entries ─► parse manifests ─► kustomize plan and renders ─► schemas (CRDs of the
tree, the administrator's folders, bundled) ─► document, file and tree checks ─► policy ─► Result
"""

from __future__ import annotations

import functools
import hashlib
import os
import posixpath
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__, kustomize
from .cache import NullCache, fingerprint, row_name
from .checks import DOCUMENT_CHECKS, FILE_CHECKS, PARSED_CHECKS, TREE_CHECKS, CheckContext, TreeView, document_checks
from .config import Policy, folder_stamp, matcher
from .documents import Document, Limits, ParsedFile, Pointer, parse
from .findings import Finding, Severity, finding
from .gitrepo import Entry, Snapshot
from .schemas import (
    GVK,
    CustomSchemas,
    KubernetesSchemas,
    crd_versions,
    definition_closure,
    load_bundled,
    split_api_version,
    validation_rules,
)
from .workers import Channel, Queue, WorkerError, Workers


@dataclass
class Stats:
    files: int = 0
    manifests: int = 0
    objects: int = 0
    rendered: int = 0
    seconds: float = 0.0


@dataclass
class Result:
    label: str
    findings: list[Finding]
    stats: Stats = field(default_factory=Stats)

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.severity is Severity.ERROR)

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.severity is Severity.WARNING)

    @property
    def ok(self) -> bool:
        return self.errors == 0


_KUBE_CACHE: dict[tuple[str, bool], KubernetesSchemas] = {}


def kubernetes_schemas(version: str, strict: bool) -> KubernetesSchemas:
    key = (version, strict)
    if key not in _KUBE_CACHE:
        _KUBE_CACHE[key] = KubernetesSchemas(version, strict)
    return _KUBE_CACHE[key]


def limits_of(policy: Policy) -> Limits:
    lim = policy.limits
    return Limits(
        max_file_bytes=lim["max_file_bytes"],
        max_documents=lim["max_documents_per_file"],
        max_nodes=lim["max_alias_expansion"],
    )


def chart_dirs(entries: list[Entry]) -> list[str]:
    return sorted(posixpath.dirname(e.path) for e in entries
                  if e.path.endswith("Chart.yaml") and posixpath.basename(e.path) == "Chart.yaml")


def _in_dirs(path: str, dirs: list[str]) -> bool:
    return bool(dirs) and any(d == "" or path.startswith(d + "/") for d in dirs)


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


def check_snapshot(
    snapshot: Snapshot,
    policy: Policy,
    ref: str = "",
    progress: Callable[[int, int], None] | None = None,
    context: CheckContext | None = None,
    cache: NullCache | None = None,
) -> Result:
    """`progress(done, total)` is called as files are read (done < total: files taken so far of those
    the cache does not answer), then once with done == total, the number of manifests, when every file
    is read and what is left checks them."""
    started = time.perf_counter()
    ctx = context or make_context(policy, ref)
    run = _Run(snapshot, policy, ctx, cache or NullCache(), progress)
    findings = run.findings()
    run.cache.flush()
    run.stats.seconds = time.perf_counter() - started
    return Result(snapshot.label, findings, run.stats)


class DocRef:
    """An object known by its identity, from a cached summary; the full document is parsed on demand."""

    __slots__ = ("path", "index", "line", "column", "api_version", "kind", "namespace", "name", "prefix", "_load")

    def __init__(self, path: str, row: list[Any], load: Callable[[str, int, Pointer], Document]) -> None:
        self.path = path
        self.index, self.line, self.column, self.api_version, self.kind, self.namespace, self.name, prefix = row
        self.prefix: Pointer = tuple(prefix)
        self._load = load

    is_object = True
    from_blob = True  # the object is exactly what its file's blob says (not a kustomize render)
    group = Document.group
    subject = Document.subject
    describe = Document.describe

    @property
    def document(self) -> Document:
        return self._load(self.path, self.index, self.prefix)

    @property
    def obj(self) -> dict[str, Any]:
        return self.document.obj

    @property
    def metadata(self) -> dict[str, Any]:
        return self.document.metadata

    def locate(self, pointer: tuple[str | int, ...], key: bool = False) -> tuple[int, int]:
        return self.document.locate(pointer, key)


def _summary(pf: ParsedFile) -> dict[str, Any]:
    """What later pushes need of a parsed blob without parsing it again (no paths: blobs move)."""
    from . import suppress

    docs = [d for d in pf.documents if d.is_object]
    return {
        "findings": [[f.rule, f.line, f.column, f.message, f.hint] for f in pf.findings],
        "docs": [[d.index, d.line, d.column, d.api_version, d.kind, d.namespace, d.name, list(d.prefix)]
                 for d in docs],
        "crd": any(d.kind == "CustomResourceDefinition" for d in docs),
        # kinds the blob's CRDs define, with their traits (validation_rules, scope): [group, version, kind,
        # rules, scope]. A later run knows which kinds need their schema for rules without reading it.
        "defines": [[*gvk, validation_rules(schema), scope] for d in docs if d.kind == "CustomResourceDefinition"
                    and d.api_version.startswith("apiextensions.k8s.io/")
                    for gvk, schema, scope in crd_versions(d.obj)],
        "suppress": [[list(k), [r.line, r.column, r.label, sorted(r.rules)]] for k, r in suppress.requests(docs).items()],
    }


def _findings_json(findings: list[Finding]) -> list[Any]:
    return [[f.path, f.line, f.column, f.rule, int(f.severity), f.message, f.hint,
             list(f.subject) if f.subject else None] for f in findings]


def _findings_from(rows: list[Any]) -> list[Finding]:
    return [Finding(r[0], r[1], r[2], r[3], Severity(r[4]), r[5], r[6], tuple(r[7]) if r[7] else None)
            for r in rows]


def _plugins() -> list[str]:
    from .checks import plugins

    return plugins.fingerprint()


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """The suite's own code and bundled schemas: results from other code are never reused."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    from .schemas import bundled_crd_dir

    index = bundled_crd_dir() / "index.json"
    if index.is_file():
        h.update(index.read_bytes())
    return h.hexdigest()[:16]


class _Run:
    """One pass of the pipeline over one snapshot."""

    def __init__(self, snapshot: Snapshot, policy: Policy, ctx: CheckContext, cache: NullCache,
                 progress: Callable[[int, int], None] | None) -> None:
        self.snapshot = snapshot
        self.policy = policy
        self.ctx = ctx
        self.cache = cache
        self.progress = progress
        self.limits = limits_of(policy)
        excluded = matcher(policy.path_exclude)
        self.entries = [e for e in snapshot.entries() if excluded(e.path) is None]
        self.by_path = {e.path: e for e in self.entries}
        self.stats = Stats(files=len(self.entries))
        self.data: dict[str, bytes] = {}
        self.parsed: dict[str, ParsedFile] = {}
        self.summaries: dict[str, dict[str, Any]] = {}
        self.precomputed: dict[str, list[Any]] = {}
        self.crd_source: dict[GVK, str] = {}
        self.by_manifest: set[str] = set()
        self.parse_fp = fingerprint(code_fingerprint(), self.limits)
        self._simple_members: set[str] = set()  # files of kustomizations read directly (see kustomize_units)
        self._simple_units: dict[str, list[str]] = {}
        self.base = fingerprint(__version__, code_fingerprint(), policy.fingerprint(), ctx.kube.version, ctx.kube.strict,
                                [c.__module__ + "." + c.__qualname__ for c in [*DOCUMENT_CHECKS, *FILE_CHECKS, *PARSED_CHECKS]],
                                folder_stamp(policy.config.get("schema_dirs", [])), _plugins())

    def read(self, e: Entry) -> bytes:
        if e.path not in self.data:
            self.data[e.path] = self.snapshot.read(e)
        return self.data[e.path]

    def parse(self, path: str) -> ParsedFile:
        if path not in self.parsed:
            e = self.by_path[path]
            if e.size > self.limits.max_file_bytes:  # refused by its size from the tree, never read
                self.parsed[path] = parse(path, b"", self.limits)
                self.parsed[path].findings.append(finding("file-too-large", path, 1, 1, f"{e.size} bytes is over "
                                                          f"the limit of {self.limits.max_file_bytes} bytes"))
            else:
                self.parsed[path] = parse(path, self.read(e), self.limits)
        return self.parsed[path]

    def document(self, path: str, index: int, prefix: Pointer = ()) -> Document:
        return next(d for d in self.parse(path).documents if d.index == index and d.prefix == prefix)

    def _summary_key(self, e: Entry) -> str:
        return f"parse:{e.oid}:{self.parse_fp}"

    def _cached_summary(self, e: Entry) -> dict[str, Any] | None:
        if e.path not in self.summaries:
            s = self.cache.get(self._summary_key(e))
            if s is not None:
                self.summaries[e.path] = s
        return self.summaries.get(e.path)

    def summary(self, e: Entry) -> dict[str, Any]:
        if self._cached_summary(e) is None:
            s = _summary(self.parse(e.path))
            self.cache.put_later(self._summary_key(e), s)
            self.summaries[e.path] = s
        return self.summaries[e.path]

    def findings(self) -> list[Finding]:
        from . import suppress

        out: list[Finding] = []
        charts = chart_dirs(self.entries)
        for d in charts:
            out.append(finding("helm-chart", posixpath.join(d, "Chart.yaml"), 1, 1,
                               f"Helm chart {d or '.'}: recognised as a chart; its templates are not validated"))
        manifests = self.manifests(charts, out)
        self.stats.manifests = len(manifests)
        units, rendered, consumed = self.kustomize_units(charts, out)
        direct_paths = {e.path for e in manifests if e.path not in consumed} | self._simple_members
        key = self._tree_key(manifests, direct_paths, consumed) if not rendered else None
        remembered = TREE_MEMO.get(key) if key is not None else None
        if remembered is not None:  # the manifests' part as a run on the same manifests found it
            found, wanted, self.stats.objects = remembered
            if self.progress is not None:
                self.progress(len(manifests), len(manifests))
            return self._applied([*out, *found, *self._other_files(direct_paths)], dict(wanted))
        manifest_part = len(out)  # what `out` holds from here on comes from the manifests alone
        self.blob_work(manifests, direct_paths, rendered)
        if self.progress is not None:
            self.progress(len(manifests), len(manifests))  # every file read: what is left checks them
        summaries = [self.summary(e) for e in manifests]  # each looked up once (blob_work made them)
        for e, s in zip(manifests, summaries, strict=True):
            if s["findings"]:
                out.extend(finding(r, e.path, line, col, msg, hint) for r, line, col, msg, hint in s["findings"])
        for unit, paths in self._simple_units.items():
            units[unit] = [DocRef(p, row, self.document) for p in paths for row in self._rows(p)]
        refs: list[DocRef] = []
        load = self.document
        for e, s in zip(manifests, summaries, strict=True):
            if e.path in direct_paths:
                docs = [DocRef(e.path, row, load) for row in s["docs"]]
                refs.extend(docs)
                if e.path not in consumed:  # (a tree's paths have no leading, trailing or double slash)
                    units.setdefault(f"folder {e.path.rpartition('/')[0] or '.'}", []).extend(docs)
        objects: list[Any] = [*refs, *rendered]
        self.stats.objects = len(objects)

        for e in manifests:
            out.extend(self.blob_findings(e, e.path in direct_paths))
        for doc in rendered:
            for check in document_checks(doc.kind, self.ctx):
                out.extend(check(doc, self.ctx))
        if self.policy.config.get("engine") == "kubeconform":  # the schema check is delegated to kubeconform
            from . import kubeconform

            out.extend(kubeconform.check([o.document if isinstance(o, DocRef) else o for o in objects], self.ctx))
        view = TreeView(self.entries, _LazyParsed(self, [e.path for e in manifests]), objects, units)
        for tcheck in TREE_CHECKS:
            out.extend(tcheck(view, self.ctx))

        wanted = suppress.requests(rendered)
        for e, s in zip(manifests, summaries, strict=True):
            if e.path in direct_paths:
                for subject, (line, col, label, rules) in s["suppress"]:
                    wanted[tuple(subject)] = suppress.Request(e.path, line, col, label, frozenset(rules))
        if key is not None:
            remember(key, (tuple(out[manifest_part:]), dict(wanted), self.stats.objects))
        return self._applied([*out, *self._other_files(direct_paths)], wanted)

    def _other_files(self, direct_paths: set[str]) -> list[Finding]:
        """The findings of the files that are not manifests (file checks: secrets, scripts, pipelines)."""
        out: list[Finding] = []
        for e in self.entries:
            if e.path not in self.by_manifest:
                out.extend(self.blob_findings(e, e.path in direct_paths))
        return out

    def _applied(self, found: list[Finding], wanted: dict[Any, Any]) -> list[Finding]:
        """The run's answer: suppression requests, then the policy's severities and allowances."""
        from . import suppress

        return sorted(set(self.policy.apply(suppress.apply_requests(found, wanted, self.policy))))

    def _tree_key(self, manifests: list[Entry], direct_paths: set[str], consumed: set[str]) -> str | None:
        """What the findings of the manifests depend on, beyond the manifests' own blobs: a run with
        the same key finds the same (see TREE_MEMO). None where that cannot be vouched for or is not
        wanted: outside the resident gate server, without a result cache (GITOPS_HOOKS_NO_CACHE=1), with
        kubectl renders, kubeconform or plugins (their checks see the whole tree)."""
        from .cache import MEMO
        from .cel.previous import old_snapshot_manifests
        from .checks.admission import folders_stamp

        where = getattr(self.cache, "path", None)  # per repository: a run that computes it fills its cache
        if not MEMO.enabled or where is None or getattr(self.cache, "db", None) is None \
                or self.policy.config.get("engine") == "kubeconform" or _plugins() \
                or any(not c.__module__.startswith("gitops_hooks.checks.") for c in TREE_CHECKS):
            return None
        digest = hashlib.sha256()
        # (the admission folders are edited in place; the ref matters through its policy, in self.base:
        # no check reads it)
        for part in (str(where), self.base, folders_stamp(self.ctx), repr(sorted(self._simple_units.items()))):
            digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
        digest.update("".join(f"{e.path}\0{e.oid}\0{e.mode}\0{e.path in direct_paths:d}{e.path in consumed:d}\n"
                              for e in manifests).encode("utf-8", "surrogateescape"))
        if self.ctx.old_tree is None:  # (transition rules and admission UPDATE compare with its objects)
            digest.update(b"\1no old tree")
        else:
            try:
                old_entries = old_snapshot_manifests(self.ctx)
            except Exception:  # noqa: BLE001 - an old tree that cannot be listed: no memo
                return None
            digest.update(b"\1old tree\0" + "".join(f"{e.path}\0{e.oid}\n" for e in old_entries).encode(
                "utf-8", "surrogateescape"))
        return digest.hexdigest()

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

    def kustomize_units(self, charts: list[str], out: list[Finding]) -> tuple[dict[str, list[Any]], list[Document], set[str]]:
        """Units of kustomize roots, the objects of kubectl renders, and the files kustomizations read."""
        units: dict[str, list[Any]] = {}
        rendered: list[Document] = []
        if not self.policy.config["kustomize"]["enabled"]:
            return units, rendered, set()
        kfiles = {e.path: self.parse(e.path) for e in self.entries
                  if kustomize.is_kustomization(e.path) and not e.is_link and not e.is_submodule}
        kplan = kustomize.find(self.entries, kfiles, self.read)
        out.extend(kplan.findings)
        files = {e.path for e in self.entries if not e.is_link and not e.is_submodule} if kplan.roots else set()
        broken = {f.path for f in kplan.findings}
        for d in kplan.roots:
            if kustomize.closure(kplan, d) & broken:
                continue  # already reported; kubectl would only repeat it
            unit = f"kustomize build {d or '.'}"
            if kustomize.is_simple(kplan, d, files):
                members = kustomize.simple_members(kplan, d, files)
                self._simple_members |= set(members)
                self._simple_units[unit] = [p for p in members if p in self.by_path]
                continue
            docs, problems = self.render(kplan, d, charts)
            out.extend(problems)
            self.stats.rendered += len(docs)
            units[unit] = list(docs)
            rendered.extend(docs)
        return units, rendered, kplan.consumed

    def _rows(self, path: str) -> list[Any]:
        e = self.by_path[path]
        if e.is_link or e.is_submodule or e.size > self.limits.max_file_bytes:
            return []
        return list(self.summary(e)["docs"])

    def render(self, kplan: kustomize.Plan, d: str, charts: list[str]) -> tuple[list[Document], list[Finding]]:
        """kubectl kustomize output, cached by the ids of every file under the folders the build reads."""
        # Files over the size limit are never read, not even to copy them for kubectl (they are refused anyway).
        entries = [e for e in self.entries if not _in_dirs(e.path, charts) and e.size <= self.limits.max_file_bytes]
        dirs = sorted({posixpath.dirname(p) for p in kustomize.closure(kplan, d)})
        inputs = sorted((e.path, e.oid, e.mode) for e in entries
                        if _in_dirs(e.path, dirs) or e.path in kplan.consumed)
        key = f"render:{fingerprint(d, self.policy.config['kustomize'], inputs)}"
        cached = self.cache.get(key)
        if cached is None:
            text, problems = kustomize.kubectl_build(
                kplan, d, entries, self.read, self.policy.config["kustomize"]["kubectl"],
                float(self.policy.limits["timeout_seconds"]),
            )
            cached = {"text": text, "findings": _findings_json(problems)}
            self.cache.put(key, cached)
        problems = _findings_from(cached["findings"])
        if cached["text"] is None:
            return [], problems
        docs, more = kustomize.documents_of(kplan, d, cached["text"], _LazyParsed(self, list(self.by_path)))
        return docs, problems + more

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

    def blob_work(self, manifests: list[Entry], direct_paths: set[str], rendered: list[Document]) -> None:
        """Parse summaries and per-blob findings that the cache does not have, on every core when there are many.

        Kinds defined by CRDs of the tree are part of the cache keys and of validation, and a CRD is known
        only once its file is parsed. So the work is speculative: every blob is checked with the CRDs
        known beforehand (from cached summaries); when the parse finds new ones, the keys are computed
        again, and only the blobs whose key changed (objects of the new kinds) are checked again."""
        keys = {self._summary_key(e): e.path for e in manifests if e.path not in self.summaries}
        for key, summary in self.cache.get_many(list(keys)).items():
            self.summaries[keys[key]] = summary
        unknown = [e for e in manifests if e.path not in self.summaries]
        base = self.ctx.custom.copy()  # without the tree's CRDs: to start over when phase 1 finds more
        self.register_all_crds(manifests, rendered)
        # path -> key with the CRDs known so far (a blob not parsed yet has none: its objects' kinds
        # are part of its key)
        unparsed = {e.path for e in unknown}
        pending = [e for e in self.entries if e.path not in self.precomputed]
        guessed = self._keys(direct_paths, [e for e in pending if e.path not in unparsed])
        found: dict[str, tuple[str, list[Any]]] = {}
        path_of = {key: path for path, key in guessed.items()}
        for key, rows in self.cache.get_many(list(path_of)).items():
            found[path_of[key]] = (key, rows)
        todo = [(e.path, e.path in direct_paths) for e in self.entries
                if e.path not in found and e.path not in self.precomputed]
        count = min(os.cpu_count() or 1, MAX_WORKERS)
        pool = _Pool.start(self, count, todo, base, manifests, rendered) \
            if len(todo) >= PARALLEL_MIN and count >= 2 else None
        try:
            if pool is not None:
                found.update(pool.phase_one())
            for n, e in enumerate(unknown):  # without workers; a no-op for what they parsed
                if self.progress is not None and e.path not in self.summaries:
                    self.progress(n, len(unknown))
                self.summary(e)
            if any(self.summaries[e.path]["defines"] for e in unknown):  # new kinds: start over with them
                self.register_all_crds(manifests, rendered, base)
                final = self._keys(direct_paths, pending)
            else:
                final = guessed | self._keys(direct_paths, unknown)
            rejected = set()
            for path, (key, rows) in found.items():
                if final[path] == key:
                    self.precomputed[path] = rows
                else:
                    rejected.add(key)
            if pool is not None:
                pool.adopt(rejected)
            rest = {final[path]: path for path in final if path not in self.precomputed}
            asked = set(path_of)  # keys the first lookup already missed are not asked for again
            for key, rows in self.cache.get_many([key for key in rest if key not in asked]).items():
                self.precomputed[rest[key]] = rows
            again = [(path, path in direct_paths, key) for key, path in rest.items() if path not in self.precomputed]
            if pool is not None and not pool.failed and again:
                pool.phase_two(again)  # what it cannot do, blob_findings does here
        finally:
            if pool is not None:
                pool.close()

    def _keys(self, direct_paths: set[str], entries: list[Entry]) -> dict[str, str]:
        """path -> the key of each entry's findings, with the CRDs registered now."""
        return {e.path: self._blob_key(e, e.path in direct_paths) for e in entries}

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

    def _blob_key(self, e: Entry, direct: bool) -> str:
        parts = [self.base, e.path, str(e.mode), "direct" if direct else "consumed"]
        if e.path in self.summaries and self.crd_source:  # the CRD blob defining each object's kind
            crd_source = self.crd_source
            # Only objects whose kind a CRD of the tree defines: a key does not change when a CRD of
            # other kinds comes or goes (blob_work relies on it). The blob id fixes the objects, so
            # their indexes and the CRDs' ids name which CRD defines which.
            for index, row in enumerate(self.summaries[e.path]["docs"]):
                group, version = split_api_version(row[3])
                source = crd_source.get((group, version, row[4]))
                if source:
                    parts.append(f"{index}={source}")
        # NUL cannot occur in a path or in the other parts: the joined text names them unambiguously
        # (a hash of JSON, as `fingerprint` makes, costs three times as much for thousands of blobs).
        digest = hashlib.sha256("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:24]
        return f"checks:{e.oid}:{digest}"

    def _cached_blob(self, e: Entry, direct: bool) -> list[Any] | None:
        if e.path in self.precomputed:
            return self.precomputed[e.path]
        if e.path in self.by_manifest and e.path not in self.summaries:
            return None
        rows = self.cache.get(self._blob_key(e, direct))
        if rows is not None:
            self.precomputed[e.path] = rows
        return rows

    def blob_findings(self, e: Entry, direct: bool) -> list[Finding]:
        """Document checks of a blob's objects (when they stand for themselves) and file checks."""
        cached = self._cached_blob(e, direct)
        if cached is not None:
            return _findings_from(cached)
        key = self._blob_key(e, direct)
        rows = self.compute_blob(e, direct)
        self.cache.put_later(key, rows)
        return _findings_from(rows)

    def compute_blob(self, e: Entry, direct: bool) -> list[Any]:
        readable = not (e.is_link or e.is_submodule) and e.size <= self.limits.max_file_bytes
        out: list[Finding] = []
        if e.path in self.summaries:
            pf = self.parse(e.path)
            for pcheck in PARSED_CHECKS:
                out.extend(pcheck(pf, self.ctx))
            if direct:
                for doc in pf.documents:
                    if doc.is_object:
                        for check in document_checks(doc.kind, self.ctx):
                            out.extend(check(doc, self.ctx))
        data = self.read(e) if readable else None
        for fcheck in FILE_CHECKS:
            out.extend(fcheck(e, data, self.ctx))
        return _findings_json(out)


# The manifests' part of a run's findings (their parse and blob findings, the tree checks' findings and
# their suppression requests, before any is applied) by `_Run._tree_key`, in the resident gate server: a
# push that changes no manifest (a README, a CI file) finds again what the last one found, without
# building thousands of objects and running the tree checks over them. Findings are immutable; the
# requests are copied before use.
TREE_MEMO: dict[str, tuple[tuple[Finding, ...], dict[Any, Any], int]] = {}
TREE_MEMO_SIZE = 8
TREE_MEMO_FINDINGS = 20_000  # a run with more findings is not kept (the server's memory)


def remember(key: str, value: tuple[tuple[Finding, ...], dict[Any, Any], int]) -> None:
    TREE_MEMO.pop(key, None)
    if len(value[0]) > TREE_MEMO_FINDINGS:
        return
    while len(TREE_MEMO) >= TREE_MEMO_SIZE:
        del TREE_MEMO[next(iter(TREE_MEMO))]  # the oldest
    TREE_MEMO[key] = value


PARALLEL_MIN = 64  # blobs to work on before forking pays off
MAX_WORKERS = 4


class _Pool:
    """Forked workers, and the parent as one more, sharing one run's `blob_work` in two phases.

    Phase 1: each process (the parent included: it would only wait) takes the next blob from a shared
    queue, biggest first, until none is left, and checks it with the CRDs known before the fork; the
    workers answer with the summaries, the findings rows under the keys they used, and the cache rows
    they recorded (encoded, or in the gate server the values themselves: the parent encodes them after
    its answer, see cache.defer_writes). Phase 2, only when phase 1 found CRDs: each registers all of
    them as the parent did and checks again the blobs whose key changed (the parse of files with custom
    kinds is kept, so those go back to whoever parsed them). A failed worker's blobs are left to the
    parent's sequential path; nothing a failed worker sent is kept."""

    def __init__(self, run: _Run, workers: Workers, queue: Queue, order: list[tuple[str, bool]]) -> None:
        self.run = run
        self.workers = workers  # worker i is process i + 1; the parent is process 0
        self.queue = queue
        self.order = order
        self.recorded: dict[str, Any] = {}
        self.owner: dict[str, int] = {}
        self.failed = False

    @classmethod
    def start(cls, run: _Run, count: int, todo: list[tuple[str, bool]], base: CustomSchemas,
              manifests: list[Entry], rendered: list[Document]) -> _Pool | None:
        order = sorted(todo, key=lambda item: -run.by_path[item[0]].size)
        try:
            queue = Queue(len(order))
        except OSError:
            return None
        try:
            workers = Workers(count - 1, lambda channel: _worker(run, queue, order, base, manifests, rendered, channel))
        except OSError:
            queue.close()
            return None  # could not fork: the sequential path does the work
        return cls(run, workers, queue, order)

    def phase_one(self) -> dict[str, tuple[str, list[Any]]]:
        """path -> (key, rows) for the blobs of the queue; the summaries are adopted by the run. If a
        worker failed, the workers are stopped and only what the parent did is kept."""
        run = self.run
        saved = run.cache
        run.cache = saved.for_child()  # rows are recorded, and stored once their keys are confirmed
        try:
            found, kept, summaries, recorded = _phase_one(run, self.queue, self.order)
        finally:
            run.cache = saved
        run.summaries.update(summaries)
        self.recorded = dict(recorded)
        self.owner.update((path, 0) for path in kept)
        theirs: list[Any] = []
        try:
            theirs = [self.workers.receive(index) for index in range(len(self.workers.pids))]
        except WorkerError:
            self.close()
            self.failed = True
            return found
        for index, (got, kept, news, recorded) in enumerate(theirs, 1):
            found.update(got)
            run.summaries.update(news)
            self.recorded.update(recorded)
            self.owner.update((path, index) for path in kept)
        return found

    def adopt(self, rejected: set[str]) -> None:
        """Store what phase 1 recorded, but for rows under keys that turned out stale."""
        names = {row_name(key) for key in rejected}
        self.run.cache.adopt({k: v for k, v in self.recorded.items() if k not in names})
        self.recorded = {}

    def phase_two(self, again: list[tuple[str, bool, str]]) -> None:
        run = self.run
        loads = [0] * (len(self.workers.pids) + 1)
        items: list[list[tuple[str, bool, str]]] = [[] for _ in loads]
        # The blobs are grouped by the CRD that defines their first custom kind: one process loads and
        # compiles that schema, for the whole group. Groups go biggest first to the process where they
        # cost least, counting the CRD's size once to compile it, and once more where its parse was not
        # kept (it is read and parsed again there).
        crd_of: dict[GVK, str] = {}
        for path, summary in run.summaries.items():
            for g, v, k, *_ in summary["defines"]:
                crd_of.setdefault((g, v, k), path)
        groups: dict[str, list[tuple[str, bool, str]]] = {}
        for item in again:
            rows = run.summaries[item[0]]["docs"] if item[0] in run.summaries else []
            crd = next((crd_of[gvk] for row in rows if (gvk := (*split_api_version(row[3]), row[4])) in crd_of), "")
            groups.setdefault(crd, []).append(item)
        def weight(group: list[tuple[str, bool, str]]) -> int:
            return sum(run.by_path[path].size + 1 for path, _, _ in group)
        for crd, group in sorted(groups.items(), key=lambda g: -weight(g[1]) - (run.by_path[g[0]].size if g[0] else 0)):
            crd_size = run.by_path[crd].size if crd else 0
            costs = [loads[i] + weight(group) + crd_size * (1 if self.owner.get(crd) == i else 2)
                     for i in range(len(loads))]
            index = costs.index(min(costs))
            loads[index] = costs[index]
            items[index].extend(group)
        defining = {p: s for p, s in run.summaries.items() if s["defines"]}
        try:
            for index, share in enumerate(items[1:], 1):  # with the summaries of the blobs it did not parse
                summaries = defining | {p: run.summaries[p] for p, _, _ in share if p in run.summaries}
                self.workers.send(index - 1, (summaries, share))
        except WorkerError:
            self.failed = True
        for path, direct, key in items[0]:  # the parent's own (its CRDs are registered by blob_work)
            rows = run.compute_blob(run.by_path[path], direct)
            run.cache.put_later(key, rows)
            run.precomputed[path] = rows
        if self.failed:
            return
        try:
            answers = [self.workers.receive(index - 1) for index in range(1, len(items))]
        except WorkerError:
            return
        for rows_of, recorded in answers:
            run.precomputed.update(rows_of)
            run.cache.adopt(recorded)

    def close(self) -> None:
        self.workers.close()
        self.queue.close()


def _phase_one(run: _Run, queue: Queue, order: list[tuple[str, bool]]) -> tuple[
        dict[str, tuple[str, list[Any]]], list[str], dict[str, dict[str, Any]], dict[str, Any]]:
    """Summaries and findings rows of the blobs this process takes from the queue, with the CRDs
    registered so far; what run.cache (a recorder) recorded. Parses are kept only where a CRD found in
    this phase could matter."""
    builtin = run.ctx.kube.index
    found, kept, news = {}, [], {}
    tick = run.progress
    while (taken := queue.take()) is not None:
        if tick is not None:
            tick(taken, len(order))  # files taken so far by every process: the shared counter
        path, direct = order[taken]
        e = run.by_path[path]
        if path in run.by_manifest and path not in run.summaries:
            news[path] = run.summary(e)
        key = run._blob_key(e, direct)
        found[path] = (key, run.compute_blob(e, direct))
        run.cache.put_later(key, found[path][1])
        if path in run.summaries and (run.summaries[path]["defines"] or any(
                (*split_api_version(row[3]), row[4]) not in builtin for row in run.summaries[path]["docs"])):
            kept.append(path)  # a CRD (phase 2 may load it), or objects whose kinds a CRD found now may define
        else:  # nothing found later changes its key; the memory is reused for the next file
            run.parsed.pop(path, None)
            run.data.pop(path, None)
    return found, kept, news, dict(run.cache.recorded())


def _worker(run: _Run, queue: Queue, order: list[tuple[str, bool]], base: CustomSchemas,
            manifests: list[Entry], rendered: list[Document], channel: Channel) -> None:
    """A forked worker's two phases (see `_Pool`). It reads blobs through its own repository handle and
    records cache rows for the parent to store: the parent's SQLite handle is never used here."""
    run.snapshot = run.snapshot.for_child()
    run.cache = run.cache.for_child()
    run.progress = None  # the parent alone reports, from the counter all processes share
    channel.send(_phase_one(run, queue, order))
    run.cache.recorded().clear()
    summaries, items = channel.receive()
    run.summaries.update(summaries)  # every CRD of the tree, registered as the parent did
    run.register_all_crds(manifests, rendered, base)
    rows_of = {}
    for path, direct, key in items:
        rows = run.compute_blob(run.by_path[path], direct)
        run.cache.put_later(key, rows)
        rows_of[path] = rows
    channel.send((rows_of, run.cache.recorded()))


class _LazyParsed(Mapping[str, ParsedFile]):
    """`path -> ParsedFile` for tree checks, parsing a file only when it is looked at."""

    def __init__(self, run: _Run, paths: list[str]) -> None:
        self.run = run
        self.paths = paths

    def __getitem__(self, path: str) -> ParsedFile:
        if path not in self.paths:
            raise KeyError(path)
        return self.run.parse(path)

    def __iter__(self) -> Iterator[str]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)
