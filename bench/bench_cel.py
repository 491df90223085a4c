"""CEL cost: CRD validation rules per object on a corpus with many rules, and the engine comparison.

    python bench/bench_cel.py                      # 300 HTTPRoutes, 100 Gateways, 100 GRPCRoutes
    python bench/bench_cel.py --objects 1000 --engines

Prints one line per figure. The corpus: Gateway API objects (the kinds with the most rules in
../shared/crds: HTTPRoute v1 has 89 rule sites counted over the schema, GRPCRoute 33, Gateway 16) built
in memory with several rules, matches, filters and listeners each, all valid, so every rule runs to a
result. The objects are checked the way the gate checks them (defaults applied, rules at every level).

--engines also compiles and evaluates every distinct rule of ../shared/crds with each CEL engine that is
installed (cel-expr-python, the gate's; cel-python; common-expression-language), each in a child process
limited to 2 GB of memory and 120 s, on deliberately mistyped input (a map where rules expect a list),
which is what a pusher controls.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CRDS = ROOT.parent / "shared" / "crds"


def load_schemas() -> dict[str, dict[str, Any]]:
    out = {}
    for name in ("httproutes", "grpcroutes", "gateways"):
        crd = yaml.safe_load((CRDS / f"gateway.networking.k8s.io_{name}.yaml").read_text())
        version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        out[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return out


def http_route(i: int) -> dict[str, Any]:
    rules = []
    for r in range(4):
        rules.append({
            "matches": [{"path": {"type": "PathPrefix", "value": f"/app{i}/r{r}/m{m}"},
                         "headers": [{"name": "x-team", "value": "a"}]} for m in range(3)],
            "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-r", "value": str(r)}]}},
                        {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/"}}}],
            "backendRefs": [{"name": f"svc-{i}-{b}", "port": 8080, "weight": 1} for b in range(2)],
        })
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": f"route-{i}", "namespace": "apps"},
            "spec": {"parentRefs": [{"name": "gw", "sectionName": "https"}],
                     "hostnames": [f"app{i}.example.com", f"*.app{i}.example.com"], "rules": rules}}


def grpc_route(i: int) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute",
            "metadata": {"name": f"grpc-{i}", "namespace": "apps"},
            "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [f"grpc{i}.example.com"],
                     "rules": [{"matches": [{"method": {"service": f"pkg.Service{m}", "method": "Get"}}
                                            for m in range(3)],
                                "backendRefs": [{"name": f"grpc-{i}", "port": 9000}]} for _ in range(3)]}}


def gateway(i: int) -> dict[str, Any]:
    listeners = [{"name": f"https-{n}", "port": 443, "protocol": "HTTPS", "hostname": f"h{n}.gw{i}.example.com",
                  "tls": {"mode": "Terminate", "certificateRefs": [{"name": f"cert-{n}"}]}} for n in range(6)]
    listeners.append({"name": "http", "port": 80, "protocol": "HTTP"})
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": f"gw-{i}", "namespace": "infra"},
            "spec": {"gatewayClassName": "internet", "listeners": listeners}}


class Doc:
    """What the check needs of a document: its object and a position."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj, self.path, self.line, self.column = obj, "bench.yaml", 1, 1
        self.kind, self.name = obj["kind"], obj["metadata"]["name"]

    def describe(self) -> str:
        return f"{self.kind.lower()}/{self.name}"

    def subject(self) -> tuple[str, str, str, str]:
        return (self.obj["apiVersion"], self.kind, "apps", self.name)

    def locate(self, pointer: tuple[Any, ...]) -> tuple[int, int]:
        return 1, 1


def bench_objects(count: int) -> None:
    from gitops_hooks.cel import engine
    from gitops_hooks.cel.structural import MISSING, rule_sites, to_cel
    from gitops_hooks.checks.cel_crd import evaluate_rules

    schemas = load_schemas()
    corpus = ([http_route(i) for i in range(count)] + [grpc_route(i) for i in range(count // 3)]
              + [gateway(i) for i in range(count // 3)])
    started = time.perf_counter()
    evaluations = 0
    for obj in corpus[:3] + [corpus[count], corpus[-1]]:  # cold: every rule compiled once
        list(evaluate_rules(Doc(obj), schemas[obj["kind"]], to_cel(obj, schemas[obj["kind"]]), MISSING, False))
    cold = time.perf_counter() - started
    print(f"compile+first-eval   {len(engine._CACHE)} distinct expressions compiled in {cold * 1000:.1f} ms "
          f"({cold / max(len(engine._CACHE), 1) * 1000:.2f} ms per expression, cached afterwards)")
    per_kind: dict[str, list[float]] = {}
    findings = 0
    for obj in corpus:
        schema = schemas[obj["kind"]]
        t = time.perf_counter()
        value = to_cel(obj, schema)
        found = list(evaluate_rules(Doc(obj), schema, value, MISSING, False))
        per_kind.setdefault(obj["kind"], []).append(time.perf_counter() - t)
        findings += len(found)
        evaluations += sum(len(s.rules) for s in rule_sites(schema, value))
    total = sum(sum(v) for v in per_kind.values())
    print(f"objects              {len(corpus)} objects, {evaluations} rule evaluations, {findings} findings (all valid)")
    for kind, times in per_kind.items():
        print(f"per-object {kind:10} median {statistics.median(times) * 1e3:.2f} ms, "
              f"max {max(times) * 1e3:.2f} ms over {len(times)}")
    print(f"per-evaluation       {total / max(evaluations, 1) * 1e6:.1f} us (conversion, walk and eval included)")
    print(f"total                {total:.2f} s for {len(corpus)} objects "
          f"({total / len(corpus) * 1e3:.2f} ms per object); max RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB")


# ---------------------------------------------------------------------------- engines

CHILD = r"""
import json, resource, sys, time, logging
logging.disable(logging.CRITICAL)
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
engine, rules = sys.argv[1], json.loads(sys.stdin.read())
DATA = {"type": "Exact", "value": "/foo", "name": "x", "port": 80, "protocol": "HTTP", "kind": "Service",
        "group": "", "matches": [], "filters": [], "numerator": 1, "denominator": 2, "provider": "generic"}
if engine == "cel-expr-python":
    from cel_expr_python import cel
    from cel_expr_python.ext import ext_strings
    env = cel.NewEnv(variables={"self": cel.Type.DYN, "oldSelf": cel.Type.DYN}, extensions=[ext_strings.ExtStrings()])
    comp = env.compile
    run = lambda p: p.eval(data={"self": DATA, "oldSelf": DATA})
elif engine == "cel-python":
    import celpy
    env = celpy.Environment()
    comp = lambda r: env.program(env.compile(r))
    run = lambda p: p.evaluate({"self": celpy.json_to_cel(DATA), "oldSelf": celpy.json_to_cel(DATA)})
else:
    import cel
    comp = cel.compile
    run = lambda p: p.execute({"self": DATA, "oldSelf": DATA})
t = time.perf_counter(); progs = []; failed = []
for r in rules:
    try: progs.append(comp(r))
    except Exception as e: failed.append(str(e).splitlines()[0][:80])
compile_s = time.perf_counter() - t
t = time.perf_counter(); worst = 0.0
for p in progs:
    t1 = time.perf_counter()
    try: run(p)
    except MemoryError: raise
    except Exception: pass
    worst = max(worst, time.perf_counter() - t1)
eval_s = time.perf_counter() - t
print(json.dumps({"compiled": len(progs), "rules": len(rules), "compile_ms": compile_s * 1e3 / len(rules),
                  "eval_us": eval_s * 1e6 / max(len(progs), 1), "worst_ms": worst * 1e3, "failed": failed[:3],
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
"""


def crd_rules() -> list[str]:
    out: set[str] = set()

    def walk(s: Any) -> None:
        if isinstance(s, dict):
            out.update(r["rule"] for r in s.get("x-kubernetes-validations") or [])
            for v in (s.get("properties") or {}).values():
                walk(v)
            walk(s.get("items"))
            walk(s.get("additionalProperties"))

    for f in sorted(CRDS.glob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            if d and d.get("kind") == "CustomResourceDefinition":
                for v in d["spec"]["versions"]:
                    walk(v["schema"]["openAPIV3Schema"])
    return sorted(out)


def bench_engines() -> None:
    import importlib.util

    rules = crd_rules()
    modules = {"cel-expr-python": "cel_expr_python", "cel-python": "celpy", "common-expression-language": "cel"}
    for name, module in modules.items():
        if importlib.util.find_spec(module) is None:
            print(f"engine {name:28} not installed")
            continue
        try:
            proc = subprocess.run([sys.executable, "-c", CHILD, name], input=json.dumps(rules), text=True,
                                  capture_output=True, timeout=120, check=False)
        except subprocess.TimeoutExpired:
            print(f"engine {name:28} did not finish in 120 s")
            continue
        if proc.returncode != 0:
            why = "ran out of memory (2 GB limit)" if "MemoryError" in proc.stderr else proc.stderr.strip()[-120:]
            print(f"engine {name:28} failed: {why}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"engine {name:28} compiled {r['compiled']}/{r['rules']} ({r['compile_ms']:.2f} ms each), "
              f"eval {r['eval_us']:.0f} us mean, worst {r['worst_ms']:.1f} ms, max RSS {r['rss_mb']} MB"
              + (f"; compile failures e.g. {r['failed'][0]}" if r["failed"] else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=300, help="HTTPRoutes (and a third as many GRPCRoutes, Gateways)")
    parser.add_argument("--engines", action="store_true", help="also compare the installed CEL engines")
    args = parser.parse_args()
    bench_objects(args.objects)
    if args.engines:
        bench_engines()


if __name__ == "__main__":
    main()
