"""Backends: apply directly, or ask an operator (Flux, Argo CD) to reconcile now.

The operator backends only annotate the operator's object, as `flux reconcile` and `argocd app get
--refresh` do: `reconcile.fluxcd.io/requestedAt` on a Flux GitRepository or Kustomization, or
`argocd.argoproj.io/refresh` on an Argo CD Application. Or they call a Flux Receiver's webhook URL; with a
token file the body is signed for a `generic-hmac` Receiver (`X-Signature: sha256=<hex HMAC>`). The note
records the trigger; the token never leaves this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .apply import Applier
from .audit import now
from .changes import Change, ChangeSet
from .desired import DesiredSet
from .environments import Environment
from .inventory import FIELD_MANAGER
from .kube import MERGE, Kube, KubeError, preferred_version
from .memo import Entry

FLUX_GROUPS = {"GitRepository": "source.toolkit.fluxcd.io", "Kustomization": "kustomize.toolkit.fluxcd.io"}


def needs_cluster(env: Environment) -> bool:
    return not (env.backend == "flux" and env.flux.get("receiver_url"))


def run(kube: Kube | None, env: Environment, dset: DesiredSet, emit: Callable[[str], None],
        dry_run: bool = False, known: Mapping[str, Entry] | None = None) -> tuple[ChangeSet, Applier | None]:
    if kube is None:
        return _receiver(env, emit, dry_run), None
    if env.backend == "flux":
        return _annotate(kube, FLUX_GROUPS[str(env.flux["kind"])], str(env.flux["kind"]), str(env.flux["name"]),
                         str(env.flux.get("namespace") or "flux-system"), "reconcile.fluxcd.io/requestedAt", now(),
                         emit, dry_run), None
    if env.backend == "argocd":
        return _annotate(kube, "argoproj.io", "Application", str(env.argocd["application"]),
                         str(env.argocd.get("namespace") or "argocd"), "argocd.argoproj.io/refresh",
                         str(env.argocd.get("refresh") or "normal"), emit, dry_run), None
    applier = Applier(kube, env, emit, dry_run, known=known)
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


def _receiver(env: Environment, emit: Callable[[str], None], dry_run: bool) -> ChangeSet:
    import hashlib
    import hmac
    import json
    import urllib.error
    import urllib.request
    from pathlib import Path
    from urllib.parse import urlsplit

    url = str(env.flux["receiver_url"])
    shown = f"receiver {urlsplit(url).netloc}"  # the path holds the Receiver's secret digest: never shown
    if dry_run:
        change = Change("triggered", shown, "", "would call the Flux Receiver")
        emit(change.line())
        return ChangeSet((change,))
    body = json.dumps({"source": "gitops-hooks", "environment": env.name, "ref": env.ref}).encode()
    headers = {"Content-Type": "application/json"}
    try:
        if env.flux.get("token_file"):
            token = Path(str(env.flux["token_file"])).read_bytes().strip()
            headers["X-Signature"] = "sha256=" + hmac.new(token, body, hashlib.sha256).hexdigest()
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=env.request_timeout) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        change = Change("failed", shown, "", f"the Flux Receiver answered HTTP {exc.code}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        change = Change("failed", shown, "", f"cannot call the Flux Receiver: {type(reason).__name__}")
    else:
        change = Change("triggered", shown, "", f"Flux Receiver called (HTTP {status})")
    emit(change.line())
    return ChangeSet((change,))
