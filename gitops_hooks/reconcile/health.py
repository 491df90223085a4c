"""Health after apply, by the rules of kstatus: rollouts, Jobs, CRDs, and generic status.conditions.

Each object is Current (healthy), InProgress (wait more) or Failed. The wait is bounded; what is not
Current by then is reported as timed out with the reason last seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .kube import Kube, KubeError

CURRENT, IN_PROGRESS, FAILED = "healthy", "in progress", "failed"


@dataclass(frozen=True)
class Health:
    subject: str
    namespace: str
    state: str  # healthy, in progress, failed, timed out
    message: str = ""

    def line(self) -> str:
        return f"{self.subject} {self.state}" + (f": {self.message}" if self.message else "")


def _conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    status = obj.get("status") or {}
    conds = status.get("conditions") if isinstance(status, dict) else None
    return {str(c.get("type")): c for c in conds or [] if isinstance(c, dict)}


def _observed(obj: Mapping[str, Any]) -> bool:
    status = obj.get("status") or {}
    gen = (obj.get("metadata") or {}).get("generation")
    seen = status.get("observedGeneration") if isinstance(status, dict) else None
    return gen is None or seen is None or int(seen) >= int(gen)


def status_of(obj: Mapping[str, Any]) -> tuple[str, str]:
    kind = obj.get("kind")
    checker = CHECKERS.get(str(kind), _generic)
    if kind in CHECKERS and not _observed(obj):
        return IN_PROGRESS, "the controller has not observed the latest generation yet"
    return checker(obj)


def _deployment(obj: Mapping[str, Any]) -> tuple[str, str]:
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    want = int(spec.get("replicas", 1))
    prog = _conditions(obj).get("Progressing")
    if prog and prog.get("reason") == "ProgressDeadlineExceeded":
        return FAILED, "progress deadline exceeded"
    for field in ("updatedReplicas", "readyReplicas", "availableReplicas"):
        if int(st.get(field, 0)) < want:
            return IN_PROGRESS, f"{st.get(field, 0)}/{want} {field[:-8]} replicas"
    if int(st.get("replicas", 0)) > want:
        return IN_PROGRESS, "old replicas are being terminated"
    return CURRENT, ""


def _statefulset(obj: Mapping[str, Any]) -> tuple[str, str]:
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    want = int(spec.get("replicas", 1))
    if int(st.get("readyReplicas", 0)) < want:
        return IN_PROGRESS, f"{st.get('readyReplicas', 0)}/{want} ready replicas"
    strategy = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate")
    if strategy == "RollingUpdate" and st.get("updateRevision") != st.get("currentRevision"):
        return IN_PROGRESS, "rolling update in progress"
    return CURRENT, ""


def _daemonset(obj: Mapping[str, Any]) -> tuple[str, str]:
    st = obj.get("status") or {}
    want = int(st.get("desiredNumberScheduled", 0))
    for field in ("updatedNumberScheduled", "numberAvailable"):
        if int(st.get(field, 0)) < want:
            return IN_PROGRESS, f"{st.get(field, 0)}/{want} {field}"
    return CURRENT, ""


def _job(obj: Mapping[str, Any]) -> tuple[str, str]:
    conds = _conditions(obj)
    if conds.get("Failed", {}).get("status") == "True":
        return FAILED, str(conds["Failed"].get("message") or conds["Failed"].get("reason") or "job failed")
    if conds.get("Complete", {}).get("status") == "True":
        return CURRENT, ""
    return IN_PROGRESS, "job not complete"


def _crd(obj: Mapping[str, Any]) -> tuple[str, str]:
    conds = _conditions(obj)
    if conds.get("Established", {}).get("status") == "True":
        return CURRENT, ""
    if conds.get("NamesAccepted", {}).get("status") == "False":
        return FAILED, str(conds["NamesAccepted"].get("message") or "names not accepted")
    return IN_PROGRESS, "not established"


def _generic(obj: Mapping[str, Any]) -> tuple[str, str]:
    conds = _conditions(obj)
    if not _observed(obj):
        return IN_PROGRESS, "the controller has not observed the latest generation yet"
    if conds.get("Stalled", {}).get("status") == "True":
        return FAILED, str(conds["Stalled"].get("message") or "stalled")
    if conds.get("Reconciling", {}).get("status") == "True":
        return IN_PROGRESS, str(conds["Reconciling"].get("message") or "reconciling")
    ready = conds.get("Ready")
    if ready is not None and ready.get("status") != "True":
        return IN_PROGRESS, str(ready.get("message") or ready.get("reason") or "not ready")
    return CURRENT, ""


CHECKERS: dict[str, Callable[[Mapping[str, Any]], tuple[str, str]]] = {
    "Deployment": _deployment, "StatefulSet": _statefulset, "DaemonSet": _daemonset, "Job": _job,
    "CustomResourceDefinition": _crd,
}


@dataclass(frozen=True)
class Watched:
    subject: str
    namespace: str
    path: str  # API path of the object


def wait(kube: Kube, objects: Iterable[Watched], timeout: float, emit: Callable[[str], None],
         interval: float = 0.5, concurrency: int = 8) -> list[Health]:
    pending = {w.path: w for w in objects}
    last: dict[str, tuple[str, str]] = {}
    done: list[Health] = []
    deadline = time.monotonic() + timeout
    while pending:
        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(pending)))) as pool:
            states = dict(zip(pending, pool.map(lambda w: _probe(kube, w), pending.values()), strict=True))
        for path, (state, message) in states.items():
            last[path] = (state, message)
            if state != IN_PROGRESS:
                w = pending.pop(path)
                h = Health(w.subject, w.namespace, state, message)
                emit(h.line())
                done.append(h)
        if not pending:
            break
        if time.monotonic() + interval > deadline:
            for path, w in sorted(pending.items()):
                h = Health(w.subject, w.namespace, "timed out", last.get(path, ("", "no status"))[1])
                emit(h.line())
                done.append(h)
            break
        time.sleep(interval)
    return done


def _probe(kube: Kube, w: Watched) -> tuple[str, str]:
    try:
        _, obj = kube.request("GET", w.path)
    except KubeError as exc:
        return IN_PROGRESS, exc.message
    return status_of(obj)


def verdict(results: Iterable[Health]) -> str:
    states = {h.state for h in results}
    if "failed" in states:
        return "failed"
    if "timed out" in states:
        return "timed out"
    return "healthy"
