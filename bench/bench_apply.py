"""Apply time and API requests per object: 100 and 1,000 objects against the loopback test API server.

For each size: a first apply (everything created) and a reconcile where nothing changed, through the
same Applier the post-receive hook uses (real `kubernetes` client, real HTTP on 127.0.0.1, default
concurrency of the environment). Prints one line per run.

    python bench/bench_apply.py [--sizes 100,1000] [--concurrency 8] [--latency 0]

`--latency` adds a delay (seconds) to every API request, to see what concurrency buys against a remote
API server; with 0 the figures are dominated by the client and the test server's own CPU cost.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from gitops_hooks.reconcile.apply import Applier  # noqa: E402
from gitops_hooks.reconcile.desired import Desired, DesiredSet  # noqa: E402
from gitops_hooks.reconcile.environments import from_config  # noqa: E402
from gitops_hooks.reconcile.kube import Kube  # noqa: E402


def objects(n: int) -> DesiredSet:
    out = [Desired({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}, "ns.yaml", 1)]
    for i in range(n - 1):
        if i % 4 == 0:
            obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"app-{i}"},
                   "spec": {"replicas": 1, "selector": {"matchLabels": {"app": f"app-{i}"}},
                            "template": {"metadata": {"labels": {"app": f"app-{i}"}},
                                         "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}}
        elif i % 4 == 1:
            obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc-{i}"},
                   "spec": {"selector": {"app": f"app-{i}"}, "ports": [{"port": 80}]}}
        else:
            obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{i}"},
                   "data": {"key": f"value-{i}", "other": "x" * 200}}
        out.append(Desired(obj, f"o{i}.yaml", 1))
    return DesiredSet(tuple(out), ())


SERVER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from kubeapi import KubeAPI
api = KubeAPI().start()
api.slow(float(sys.argv[3]))
api.write_kubeconfig(Path(sys.argv[2]))
print("ready", flush=True)
sys.stdin.read()
"""


def run(n: int, concurrency: int, latency: float) -> None:
    """The test server runs in its own process, as a real API server would, so it does not share our GIL."""
    with tempfile.TemporaryDirectory() as tmp:
        kc = Path(tmp) / "kc"
        server = subprocess.Popen([sys.executable, "-c", SERVER, str(ROOT / "tests"), str(kc), str(latency)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            env = from_config("bench", {"ref": "main", "cluster": {"kubeconfig": str(kc)}, "namespace": "bench",
                                        "concurrency": concurrency})
            dset = objects(n)
            for label in ("first apply", "no-change reconcile"):
                kube = Kube(env)
                started = time.perf_counter()
                cs = Applier(kube, env, lambda _: None).run(dset)
                seconds = time.perf_counter() - started
                assert cs.ok, cs.error or [c.line() for c in cs.of("failed")][:3]
                counts = {a: len(cs.of(a)) for a in ("created", "configured", "unchanged")}
                requests = kube.requests
                print(f"{n:5} objects  {label:20} {seconds:7.2f} s  {n / seconds:7.0f} objects/s  "
                      f"{requests:5} requests  {requests / n:5.2f} requests/object  "
                      f"(created {counts['created']}, configured {counts['configured']}, "
                      f"unchanged {counts['unchanged']}; concurrency {concurrency}, latency {latency * 1000:.0f} ms)")
                kube.close()
        finally:
            server.communicate("")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    for n in (int(x) for x in args.sizes.split(",")):
        run(n, args.concurrency, args.latency)


if __name__ == "__main__":
    main()
