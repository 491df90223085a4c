"""The Helm engine, run in a child process: `python -m gitops_hooks.render.helm_engine`.

Helm's own Go library (helm-python-sdk bundles it as a shared library, called through ctypes) renders
the charts. It runs here, never in the gate's process: a Go panic or a runaway template takes down this
child only, and the parent bounds it in time and memory (see `gitops_hooks.render.helm.run_engine`).

stdin: {"jobs": [{"chart": folder, "values": {...}, "name": release, "namespace": ns}]}
stdout: {"version": "...", "results": [{"manifests": {template: text}} | {"error": "..."}]}

Rendering is what `helm template` does offline: no cluster is contacted and `lookup` returns empty
results; `.Files` reads only the chart's own files, which the parent copied from the pushed tree.
"""

from __future__ import annotations

import json
import sys
from typing import Any

DISTRIBUTION = "helm-python-sdk"
MODULE = "helm_python"


def render_one(helm: Any, job: dict[str, Any]) -> dict[str, Any]:
    try:
        with helm.Chart.load(job["chart"]) as chart:
            manifests = chart.render(job.get("values") or {}, name=job["name"], namespace=job["namespace"],
                                     is_install=True)
    except helm.HelmError as exc:
        return {"error": str(getattr(exc, "detail", "") or exc)}
    return {"manifests": manifests}


def main() -> int:
    request = json.load(sys.stdin)
    import helm_python as helm

    results = [render_one(helm, job) for job in request["jobs"]]
    json.dump({"version": helm.helm_sdk_version(), "results": results}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
