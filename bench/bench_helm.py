"""Helm at push: a repository with the podinfo chart and three environments' HelmReleases.

    python bench/bench_helm.py [--runs 3]

The repository: ../shared/corpus/charts/podinfo under charts/podinfo (with values.yaml and
values-prod.yaml beside it), Flux's GitRepository flux-system, and envs/{dev,staging,prod}/podinfo.yaml,
a HelmRelease each with values of its own: three releases rendered (the chart is referenced, so it is not
also rendered alone). Figures, median of --runs, wall time of `git push` to a bare repository guarded by
`gitops-hooks install` (the gate in the hook's own process: GITOPS_HOOKS_NO_SERVER=1):

  cold       first push into a new repository (empty result cache): three renders, one engine process
  readme     a push that changes README.md only: every render comes from the cache
  one-env    a push that changes one environment's values: that release alone is rendered again
  no-chart   the same repository without the chart and its HelmReleases (what Helm adds to a push)

and, once, the engine alone in this process: loading Helm's library, and a render of podinfo.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PODINFO = HERE.parent.parent / "shared" / "corpus" / "charts" / "podinfo"
EXE = str(Path(sys.executable).parent / "gitops-hooks")
ENV = {**os.environ, "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
       "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.com", "GIT_CONFIG_NOSYSTEM": "1",
       "GITOPS_HOOKS_NO_SERVER": "1"}

SYNC = """apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: flux-system, namespace: flux-system}
spec: {interval: 1m, url: 'ssh://git@git.example.com/fleet', ref: {branch: main}}
"""
RELEASE = """apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {{name: podinfo, namespace: {env}}}
spec:
  interval: 10m
  chart:
    spec:
      chart: ./charts/podinfo
      sourceRef: {{kind: GitRepository, name: flux-system, namespace: flux-system}}
  values:
    replicaCount: {replicas}
    ui: {{message: "{env}"}}
"""
ENVS = {"dev": 1, "staging": 2, "prod": 3}


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True)


def push(work: Path) -> float:
    git("add", "-A", cwd=work)
    git("commit", "-q", "--allow-empty", "-m", "change", cwd=work)
    started = time.perf_counter()
    proc = subprocess.run(["git", "push", "-q", "origin", "HEAD:refs/heads/main"], cwd=work, env=ENV,
                          capture_output=True, text=True, check=False)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"push refused:\n{proc.stderr}")
    return took


def repository(base: Path, with_chart: bool) -> Path:
    bare, work = base / "repo.git", base / "work"
    subprocess.run([EXE, "install", str(bare)], check=True, capture_output=True)
    git("init", "-q", "--initial-branch=main", str(work), cwd=base)
    git("remote", "add", "origin", str(bare), cwd=work)
    (work / "clusters").mkdir()
    (work / "clusters" / "gotk-sync.yaml").write_text(SYNC)
    if with_chart:
        shutil.copytree(PODINFO, work / "charts" / "podinfo")
        for env, replicas in ENVS.items():
            (work / "envs" / env).mkdir(parents=True)
            (work / "envs" / env / "podinfo.yaml").write_text(RELEASE.format(env=env, replicas=replicas))
    return work


def one_run(with_chart: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-helm-") as tmp:
        work = repository(Path(tmp), with_chart)
        figures = {"cold": push(work)}
        (work / "README.md").write_text("fleet\n")
        figures["readme"] = push(work)
        if with_chart:
            (work / "envs" / "prod" / "podinfo.yaml").write_text(RELEASE.format(env="prod", replicas=4))
            figures["one-env"] = push(work)
        return figures


def engine_alone() -> str:
    started = time.perf_counter()
    import helm_python

    loaded = time.perf_counter()
    with helm_python.Chart.load(str(PODINFO)) as chart:
        chart.render({}, name="podinfo", namespace="apps")
        t0 = time.perf_counter()
        out = chart.render({}, name="podinfo", namespace="apps")
        rendered = time.perf_counter() - t0
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return (f"engine: Helm {helm_python.helm_sdk_version()} (helm-python-sdk, libhelm_c {helm_python.helm_c_version()}): "
            f"library loaded in {loaded - started:.2f} s, podinfo rendered in {rendered * 1000:.1f} ms "
            f"({len(out)} templates), peak RSS {rss:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not PODINFO.is_dir():
        raise SystemExit(f"the podinfo chart is not at {PODINFO}")
    print(f"$ python bench/bench_helm.py --runs {args.runs}   ({os.cpu_count()} cores)")
    for with_chart in (True, False):
        runs = [one_run(with_chart) for _ in range(args.runs)]
        label = "podinfo + 3 envs" if with_chart else "no-chart"
        for name in runs[0]:
            values = [r[name] for r in runs]
            print(f"{label:17} {name:8} {statistics.median(values):6.2f} s  (runs: "
                  + ", ".join(f"{v:.2f}" for v in values) + ")")
    print(engine_alone())


if __name__ == "__main__":
    main()
