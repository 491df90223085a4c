"""Backends: apply directly, or ask an operator (Flux, Argo CD) to reconcile now.

The operator backends only annotate the operator's object, as `flux reconcile` and `argocd app get
--refresh` do: `reconcile.fluxcd.io/requestedAt` on a Flux GitRepository or Kustomization, or
`argocd.argoproj.io/refresh` on an Argo CD Application. The note records the trigger.
"""

from __future__ import annotations

from collections.abc import Callable

from .apply import Applier
from .audit import now
from .changes import Change, ChangeSet
from .desired import DesiredSet
from .environments import Environment
from .inventory import FIELD_MANAGER
from .kube import MERGE, Kube, KubeError, preferred_version

FLUX_GROUPS = {"GitRepository": "source.toolkit.fluxcd.io", "Kustomization": "kustomize.toolkit.fluxcd.io"}


def run(kube: Kube, env: Environment, dset: DesiredSet, emit: Callable[[str], None],
        dry_run: bool = False) -> tuple[ChangeSet, Applier | None]:
    if env.backend == "flux":
        return _annotate(kube, FLUX_GROUPS[str(env.flux["kind"])], str(env.flux["kind"]), str(env.flux["name"]),
                         str(env.flux.get("namespace") or "flux-system"), "reconcile.fluxcd.io/requestedAt", now(),
                         emit, dry_run), None
    if env.backend == "argocd":
        return _annotate(kube, "argoproj.io", "Application", str(env.argocd["application"]),
                         str(env.argocd.get("namespace") or "argocd"), "argocd.argoproj.io/refresh",
                         str(env.argocd.get("refresh") or "normal"), emit, dry_run), None
    applier = Applier(kube, env, emit, dry_run)
    return applier.run(dset), applier


def _annotate(kube: Kube, group: str, kind: str, name: str, namespace: str, key: str, value: str,
              emit: Callable[[str], None], dry_run: bool) -> ChangeSet:
    subject = f"{kind.lower()}.{group}/{name}"
    try:
        info = kube.resource(preferred_version(kube, group), kind)
        query = {"fieldManager": FIELD_MANAGER}
        if dry_run:
            query["dryRun"] = "All"
        kube.request("PATCH", info.path(namespace, name), query, {"metadata": {"annotations": {key: value}}}, MERGE)
    except KubeError as exc:
        change = Change("failed", subject, namespace, exc.message)
        emit(change.line())
        return ChangeSet((change,))
    change = Change("triggered", subject, namespace, f"{key}={value}")
    emit(change.line())
    return ChangeSet((change,))
