"""The direct backend: staged server-side apply, the inventory, and prune after every apply succeeded.

    read inventory ─► list live members (one LIST per kind and namespace) ─► record the union of old and
    new kinds in the inventory ─► apply stage by stage (CRDs and Namespaces first, wait until the CRDs are
    established, then the fixed kind order), bounded concurrency within a stage ─► if every apply
    succeeded: prune members that left git (reverse order), then record exactly the new kinds.

A stage with a failure stops the run: later stages are skipped and nothing is pruned.

Every apply forces ownership of the fields in git (unless the environment sets `force_conflicts: false`):
a field changed by hand or by another tool is taken back, and the change names the fields and the
manager that had them, read from `managedFields` before (the member LIST) and after (the apply's answer).
Given what was last applied (`memo`), an object whose desired content and live state are unchanged is not
sent at all. `gitops-hooks.io/ssa` (or Flux's `kustomize.toolkit.fluxcd.io/ssa`) `IfNotPresent` creates an
object once and never corrects it; `Ignore` never touches it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from . import inventory as inv
from . import memo
from .changes import Change, ChangeSet
from .desired import Desired, DesiredSet
from .environments import Environment
from .fields import taken_back
from .kube import APPLY, Kube, KubeError, ResourceInfo, preferred_version
from .order import STAGES, sort_key, stage_of
from .redact import Redactor

Key = tuple[str, str, str, str]  # group, kind, namespace, name
IGNORED_META = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp", "selfLink")


@dataclass(frozen=True)
class Target:
    desired: Desired
    obj: dict[str, Any]  # namespace defaulted, member label added
    namespaced: bool
    digest: str = ""  # of obj, when the run compares with what was last applied

    @cached_property
    def memo_key(self) -> str:
        return memo.key_text(*self.key)

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"].get("namespace", ""))

    @cached_property
    def key(self) -> Key:
        return (self.desired.group, self.desired.kind, self.namespace, self.desired.name)

    @cached_property
    def subject(self) -> str:
        d = self.desired
        kind = d.kind.lower()
        return f"{kind}.{d.group}/{d.name}" if d.group else f"{kind}/{d.name}"


LEFT_ALONE = {"Ignore": "left alone (ssa: Ignore)", "IfNotPresent": "left alone: it exists (ssa: IfNotPresent)"}


def subject_of(obj: dict[str, Any]) -> str:
    av, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", "")).lower()
    group = av.rsplit("/", 1)[0] if "/" in av else ""
    name = (obj.get("metadata") or {}).get("name", "")
    return f"{kind}.{group}/{name}" if group else f"{kind}/{name}"


def key_of(obj: dict[str, Any]) -> Key:
    av = str(obj.get("apiVersion", ""))
    meta = obj.get("metadata") or {}
    return (av.rsplit("/", 1)[0] if "/" in av else "", str(obj.get("kind", "")), str(meta.get("namespace") or ""),
            str(meta.get("name", "")))


def normalized(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    if obj is None:
        return None
    out = {k: copy.deepcopy(v) for k, v in obj.items() if k != "status"}
    meta = out.get("metadata") or {}
    for k in IGNORED_META:
        meta.pop(k, None)
    return out


class Applier:
    def __init__(self, kube: Kube, env: Environment, emit: Callable[[str], None], dry_run: bool = False,
                 force: bool = False, known: Mapping[str, memo.Entry] | None = None) -> None:
        self.kube = kube
        self.env = env
        self.emit = emit
        self.dry_run = dry_run
        self.force = force or env.force_conflicts  # a diff forces, to show desired against live in any case
        self.known = known  # what was last applied: objects still in place are skipped; None applies all
        self.applied: dict[str, memo.Entry] = dict(known or {})  # what this run leaves in place, for the next one
        self.redact = Redactor()
        self.live: dict[Key, dict[str, Any]] = {}
        self.targets: list[Target] = []
        self.dry_results: dict[Key, tuple[dict[str, Any] | None, dict[str, Any]]] = {}  # live, would-be

    # -- the run
    def run(self, dset: DesiredSet) -> ChangeSet:
        self.redact.learn(d.obj for d in dset.objects)
        try:
            return self._run(dset)
        except KubeError as exc:
            return ChangeSet(error=self.redact(exc.message))

    def _run(self, dset: DesiredSet) -> ChangeSet:
        env = self.env
        old = inv.read(self.kube, env)
        targets = self.targets = self._targets(dset.objects)
        if self.known is not None:
            self.applied = {t.memo_key: self.known[t.memo_key] for t in targets if t.memo_key in self.known}
        new_kinds = {inv.group_kind(t.desired.api_version, t.desired.kind) for t in targets}
        new_spaces = {t.namespace for t in targets if t.namespaced} | {env.parent_namespace}
        infos = self._member_infos(old.group_kinds | new_kinds, targets)
        members = inv.members(self.kube, old, infos, old.namespaces | new_spaces) if old.exists else []
        self.live = {key_of(m): m for m in members}
        changes = ChangeSet()
        if not self.dry_run:
            changes = self._record_union(old, new_kinds, new_spaces, targets, changes)
            if not changes.ok:
                return changes
        changes = self._apply_stages(targets, changes)
        if not changes.ok:
            return changes.plus(note="nothing was pruned: not every object applied")
        if env.prune:
            changes = self._prune(targets, members, changes)
        if changes.ok and not self.dry_run:
            # Members still there but not wanted (prune off, or opted out) stay in the inventory.
            pruned = {c.subject + "|" + c.namespace for c in changes.of("pruned")}
            wanted = {t.key for t in targets}
            kept = [m for m in members if key_of(m) not in wanted and subject_of(m) + "|" + key_of(m)[2] not in pruned]
            kinds = {inv.group_kind(str(m.get("apiVersion", "")), str(m.get("kind", ""))) for m in kept}
            kinds |= new_kinds
            spaces = new_spaces | {key_of(m)[2] for m in kept}
            if not inv.current(old, env, kinds, spaces):
                inv.write(self.kube, env, kinds, spaces)
        return changes

    def _record_union(self, old: inv.Inventory, kinds: set[str], spaces: set[str], targets: list[Target],
                      changes: ChangeSet) -> ChangeSet:
        """Record old and new kinds before applying, so a crash mid-apply leaves nothing untracked."""
        if inv.current(old, self.env, old.group_kinds | kinds, old.namespaces | spaces):
            return changes  # already recorded: no write
        try:
            inv.write(self.kube, self.env, old.group_kinds | kinds, old.namespaces | spaces)
            return changes
        except KubeError as exc:
            if exc.status != 404:
                raise
        # The inventory's namespace does not exist yet: apply the Namespaces first.
        namespaces = [t for t in targets if t.desired.kind == "Namespace" and not t.desired.group]
        changes = self._apply_batch(namespaces, changes)
        if changes.ok:
            inv.write(self.kube, self.env, old.group_kinds | kinds, old.namespaces | spaces)
        return changes

    # -- preparing
    def _targets(self, objects: Iterable[Desired]) -> list[Target]:
        crd_scopes = self._crd_scopes(objects)
        member = inv.applyset_id(self.env.parent_name, self.env.parent_namespace)
        out = []
        for d in objects:
            namespaced = crd_scopes.get((d.group, d.kind))
            if namespaced is None:
                try:
                    namespaced = self.kube.resource(d.api_version, d.kind).namespaced
                except KubeError as exc:
                    if exc.status != 404:
                        raise
                    namespaced = bool(d.namespace)  # reported as not served when applied
            obj = {k: v for k, v in d.obj.items() if k != "status"}  # nested values are shared, never changed
            meta = obj["metadata"] = dict(obj.get("metadata") or {})
            if namespaced:
                meta["namespace"] = d.namespace or self.env.namespace
            else:
                meta.pop("namespace", None)
            labels = meta.get("labels")
            meta["labels"] = {**(labels if isinstance(labels, dict) else {}), inv.PART_OF: member}
            out.append(Target(d, obj, namespaced, memo.desired_digest(obj) if self.known is not None else ""))
        return sorted(out, key=lambda t: sort_key(t.desired.kind, t.namespace, t.desired.name))

    @staticmethod
    def _crd_scopes(objects: Iterable[Desired]) -> dict[tuple[str, str], bool]:
        out = {}
        for d in objects:
            if d.kind == "CustomResourceDefinition":
                spec = d.obj.get("spec") or {}
                kind = (spec.get("names") or {}).get("kind", "")
                out[(str(spec.get("group", "")), str(kind))] = spec.get("scope", "Namespaced") == "Namespaced"
        return out

    def _member_infos(self, group_kinds: Iterable[str], targets: list[Target]) -> list[ResourceInfo]:
        versions = {(t.desired.group, t.desired.kind): t.desired.api_version for t in targets}
        out = []
        for gk in sorted(group_kinds):
            kind, _, group = gk.partition(".")
            try:
                api_version = versions.get((group, kind)) or preferred_version(self.kube, group)
                out.append(self.kube.resource(api_version, kind))
            except KubeError as exc:
                if exc.status != 404:
                    raise
        return out

    # -- applying
    def _apply_stages(self, targets: list[Target], changes: ChangeSet) -> ChangeSet:
        done = {c.subject + "|" + c.namespace for c in changes.changes}
        for stage, _ in enumerate(STAGES):
            batch = [t for t in targets if stage_of(t.desired.kind) == stage and t.subject + "|" + t.namespace not in done]
            if not batch:
                continue
            changes = self._apply_batch(batch, changes)
            if changes.ok and stage == 0 and not self.dry_run:
                changes = self._wait_established([t for t in batch if t.desired.kind == "CustomResourceDefinition"], changes)
            if not changes.ok:
                rest = [t for t in targets if stage_of(t.desired.kind) > stage]
                return changes.plus(*(Change("skipped", t.subject, t.namespace, "not applied: an earlier stage failed")
                                      for t in rest))
        return changes

    def _apply_batch(self, batch: list[Target], changes: ChangeSet) -> ChangeSet:
        decided = {t.key: self._in_place(t) for t in batch}
        send = [t for t in batch if decided[t.key] is None]
        with ThreadPoolExecutor(max_workers=max(1, min(self.env.concurrency, len(send) or 1))) as pool:
            sent = dict(zip([t.key for t in send], pool.map(self._apply_one, send), strict=True))
        results = [decided[t.key] or sent[t.key] for t in batch]
        for change in results:
            self.emit(change.line())
        return changes.plus(*results)

    def _in_place(self, t: Target) -> Change | None:
        """The change of an object that needs no request (left alone, or in place since the last apply)."""
        policy = t.desired.ssa
        live = self.live.get(t.key)
        if policy == "Ignore":
            return Change("unchanged", t.subject, t.namespace, LEFT_ALONE["Ignore"])
        if policy == "IfNotPresent" and live is not None:
            return Change("unchanged", t.subject, t.namespace, LEFT_ALONE["IfNotPresent"])
        entry = self.known.get(t.memo_key) if self.known is not None else None
        if live is not None and entry is not None and memo.in_place(entry, t.digest, live):
            if memo.version_of(live) != entry.version:
                self.applied[t.memo_key] = memo.Entry(entry.desired, memo.version_of(live), entry.live)
            return Change("unchanged", t.subject, t.namespace)
        return None

    def _apply_one(self, t: Target) -> Change:
        try:
            if t.desired.ssa == "IfNotPresent" and t.key not in self.live and self._get(t) is not None:
                return Change("unchanged", t.subject, t.namespace, LEFT_ALONE["IfNotPresent"])
            info = self.kube.resource(t.desired.api_version, t.desired.kind)
            query = {"fieldManager": inv.FIELD_MANAGER}
            if self.force:
                query["force"] = "true"
            if self.dry_run:
                query["dryRun"] = "All"
            status, result = self.kube.request("PATCH", info.path(t.namespace, t.desired.name), query, t.obj, APPLY)
        except KubeError as exc:
            if self.dry_run and exc.status == 404 and "does not serve" in exc.message:
                return Change("created", t.subject, t.namespace, "after its CustomResourceDefinition is established")
            self.applied.pop(t.memo_key, None)
            return Change("failed", t.subject, t.namespace, self._failure(exc, t))
        action = self._classify(t, status, result)
        if not self.dry_run:
            self.applied[t.memo_key] = memo.entry_for(t.obj, result)
        before = self.live.get(t.key)
        taken = taken_back(before, result, inv.FIELD_MANAGER) if action == "configured" and before else ()
        return Change(action, t.subject, t.namespace, taken=taken)

    def _classify(self, t: Target, status: int, result: dict[str, Any]) -> str:
        live = self.live.get(t.key)
        if self.dry_run:
            if live is None and status != 201:
                live = self._get(t)
            self.dry_results[t.key] = (live, result)
            if status == 201 or live is None:
                return "created"
            return "unchanged" if normalized(live) == normalized(result) else "configured"
        if status == 201:
            return "created"
        version = (live or {}).get("metadata", {}).get("resourceVersion")
        if version is not None and version == result.get("metadata", {}).get("resourceVersion"):
            return "unchanged"
        return "configured"

    def _get(self, t: Target) -> dict[str, Any] | None:
        info = self.kube.resource(t.desired.api_version, t.desired.kind)
        try:
            return self.kube.request("GET", info.path(t.namespace, t.desired.name))[1]
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def _failure(self, exc: KubeError, t: Target) -> str:
        text = exc.message
        if exc.status == 409 and "conflict" in text.lower():
            text += (" (another manager owns these fields: change them there, or let git win with "
                     "force_conflicts: true, the default)")
        return self.redact(f"{text} [{t.desired.where}]")

    def _wait_established(self, crds: list[Target], changes: ChangeSet) -> ChangeSet:
        deadline = time.monotonic() + max(self.env.health_timeout, 1.0)
        pending = list(crds)
        while pending:
            pending = [t for t in pending if not self._established(t)]
            if not pending:
                break
            if time.monotonic() > deadline:
                return changes.plus(*(Change("failed", t.subject, "", "not established in time") for t in pending))
            time.sleep(0.1)
        for t in crds:
            spec = t.obj.get("spec") or {}
            for v in spec.get("versions") or []:
                self.kube.forget(f"{spec.get('group')}/{v.get('name')}")
        return changes

    def _established(self, t: Target) -> bool:
        _, obj = self.kube.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{t.desired.name}")
        return any(c.get("type") == "Established" and c.get("status") == "True"
                   for c in (obj.get("status") or {}).get("conditions") or [])

    # -- pruning
    def _prune(self, targets: list[Target], members: list[dict[str, Any]], changes: ChangeSet) -> ChangeSet:
        wanted = {t.key for t in targets}
        gone = [m for m in members if key_of(m) not in wanted and not inv.opted_out(m)]
        kept = [m for m in members if key_of(m) not in wanted and inv.opted_out(m)]
        for m in kept:
            self.emit(f"{subject_of(m)} kept: pruning is disabled by annotation")
        if not gone:
            return changes
        if not targets and not self.env.allow_empty_prune:
            return changes.plus(error=f"refusing to prune {len(gone)} objects: the desired set is empty "
                                "(set allow_empty_prune for this environment if that is intended)")
        gone.sort(key=lambda m: sort_key(*key_of(m)[1:]), reverse=True)
        for stage in reversed(range(len(STAGES))):
            batch = [m for m in gone if stage_of(key_of(m)[1]) == stage]
            if not batch:
                continue
            with ThreadPoolExecutor(max_workers=max(1, min(self.env.concurrency, len(batch)))) as pool:
                results = list(pool.map(self._delete_one, batch))
            for change in results:
                self.emit(change.line())
            changes = changes.plus(*results)
            if not changes.ok:
                break
        return changes

    def _delete_one(self, m: dict[str, Any]) -> Change:
        group, kind, ns, name = key_of(m)
        subject = subject_of(m)
        try:
            info = self.kube.resource(str(m.get("apiVersion", "")), kind)
            query = {"propagationPolicy": "Background"}
            if self.dry_run:
                query["dryRun"] = "All"
            self.kube.request("DELETE", info.path(ns, name), query)
        except KubeError as exc:
            if exc.status != 404:
                return Change("failed", subject, ns, f"prune failed: {self.redact(exc.message)}")
        return Change("pruned", subject, ns)
