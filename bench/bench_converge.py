"""Reconcile cost on a real API server: first apply, a no-op reconcile and a one-change reconcile of
1,001 objects (a Namespace, 500 ConfigMaps, 500 Deployments in 21 files), beside `kubectl apply
--server-side` of the same files.

    python bench/bench_converge.py                       # starts ../shared/tools/realk8s, stops it at the end
    python bench/bench_converge.py --kubeconfig FILE     # a cluster of yours (namespaces bench-*-<pid>)
    python bench/bench_converge.py --code /tmp/main-src  # time another checkout's source (e.g. `git archive main`)
    python bench/bench_converge.py --runs 5 --kubectl-runs 1  # --kubectl-runs 0: the suite only

The suite's figures are the wall time of `gitops-hooks reconcile ENV --repo BARE` (a new process each
time, as cron or a push would start it), its environment following a bare repository whose folder holds
the 21 files. Where the source has `reconcile.rounds`, `round` is one in-process round of the same
environment (what `gitops-hooks reconcile --every` and the webhook service pay per round). kubectl's are
the wall time of `kubectl apply --server-side -f DIR` into a namespace of its own. Each line gives the
median wall time of its runs, the median CPU time (user + system, kubectl's or the suite's process; the
API server's is not counted), the minimum and maximum wall time, and the commit of the code measured.
On a shared machine the wall time waits for a CPU; the CPU time does not.

The push figures (`push ...`) are what a pusher waits for over plain git: the wall time of `git push` of a
commit into a bare repository guarded by the installed hooks (`gitops-hooks install`, the same environment
and 1,001 objects), minus the same push into a bare repository without hooks, interleaved (medians of
each). A no-op push changes a file outside the environment's folder; a one-change push one ConfigMap.
"own process": post-receive runs `gitops-hooks post-receive` in a process of its own (no rounds process);
"served": `gitops-hooks reconcile --every 1h` of that repository is running and serves the push
(reconcileserver.py); its CPU time per push is given (the hook's is next to nothing). They measure the
suite installed beside the running Python (this checkout), so they are left out with --code elsewhere.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REALK8S = Path(os.environ.get("GITOPS_HOOKS_SHARED") or ROOT.parent / "shared") / "tools" / "realk8s"
FILES = 20  # plus the Namespace's file
PER_FILE = 25  # ConfigMaps and as many Deployments per file

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: cm-{i:03d}
  labels: {{app: bench, part: "{f}"}}
data:
  key: value-{i}
  other: {pad}
---
"""
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{i:03d}
  labels: {{app: bench, part: "{f}"}}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: app-{i:03d}}}
  template:
    metadata:
      labels: {{app: app-{i:03d}}}
    spec:
      containers:
        - name: web
          image: nginx:1.27
          ports: [{{containerPort: 80}}]
          env: [{{name: INDEX, value: "{i}"}}]
---
"""


def write_tree(folder: Path, namespace: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "00-namespace.yaml").write_text(f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n",
                                              encoding="utf-8")
    for f in range(FILES):
        text = ""
        for j in range(PER_FILE):
            i = f * PER_FILE + j
            text += CONFIGMAP.format(i=i, f=f, pad="x" * 100) + DEPLOYMENT.format(i=i, f=f)
        (folder / f"part-{f:02d}.yaml").write_text(text, encoding="utf-8")


def change_one(folder: Path, run: int) -> None:
    p = folder / "part-07.yaml"
    text = p.read_text(encoding="utf-8")
    head, sep, rest = text.partition("key: value-175")
    line, nl, tail = rest.partition("\n")
    p.write_text(head + sep + f"-r{run}" + nl + tail, encoding="utf-8")


def git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}
    env.pop("GIT_DIR", None)
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def suite_command(code: Path) -> list[str]:
    boot = f"import sys; sys.path.insert(0, {str(code)!r}); from gitops_hooks.cli import main; main()"
    return [sys.executable, "-c", boot]


CPU: list[float] = []  # CPU seconds (user + system) of each timed run: this process's and its children's


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn: Callable[[], object]) -> float:
    started, cpu = time.perf_counter(), _cpu()
    fn()
    CPU.append(_cpu() - cpu)
    return time.perf_counter() - started


def line(label: str, times: list[float], commit: str, note: str = "") -> None:
    med = statistics.median(times)
    cpu = statistics.median(CPU[-len(times):])
    print(f"{label:32} median {med:7.3f} s, cpu {cpu:6.3f} s  (runs {len(times)}, min {min(times):.3f}, "
          f"max {max(times):.3f})  code {commit}{'  ' + note if note else ''}", flush=True)


class Suite:
    def __init__(self, code: Path, work: Path, kubeconfig: str, namespace: str) -> None:
        self.cmd = suite_command(code)
        self.bare = work / "repo.git"
        self.clone = work / "clone"
        self.folder = self.clone / "clusters" / "bench"
        git("init", "--quiet", "--bare", str(self.bare))
        git("init", "--quiet", "--initial-branch=main", str(self.clone))
        write_tree(self.folder, namespace)
        self.commit("1,001 objects")
        self.run("env", "add", str(self.bare), "bench", "--ref", "main", "--path", "clusters/bench",
                 "--kubeconfig", kubeconfig, "--namespace", namespace, "--health-timeout", "1")

    def commit(self, message: str) -> None:
        git("add", "-A", cwd=self.clone)
        git("commit", "--quiet", "-m", message, cwd=self.clone)
        git("push", "--quiet", str(self.bare), "HEAD:refs/heads/main", cwd=self.clone)

    def run(self, *args: str) -> str:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # as installed: .pyc kept
        proc = subprocess.run([*self.cmd, *args], capture_output=True, text=True, check=False, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"gitops-hooks {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}"
                             f"\n{proc.stderr[-2000:]}")
        return proc.stdout

    def reconcile(self) -> str:
        return self.run("reconcile", "bench", "--repo", str(self.bare))


def kubectl(kubeconfig: str, namespace: str, folder: Path) -> None:
    proc = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "apply", "--server-side", "-n", namespace,
                           "-f", str(folder)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"kubectl apply failed:\n{proc.stderr[-2000:]}")


def in_process_round(code: Path, suite: Suite) -> Callable[[], str] | None:
    """One round in this process, when the measured source has `reconcile.rounds`."""
    if not (code / "gitops_hooks" / "reconcile" / "rounds.py").is_file():
        return None
    sys.path.insert(0, str(code))
    from gitops_hooks.config import load_server_config
    from gitops_hooks.reconcile.rounds import run_round

    def once() -> str:
        results = run_round(suite.bare, load_server_config(suite.bare), ["bench"], lambda _: None)
        return results[0].result
    return once


class Pushes:
    """The same commits pushed into a bare repository guarded by the installed hooks and into a plain one."""

    def __init__(self, work: Path, kubeconfig: str, namespace: str) -> None:
        self.exe = str(Path(sys.executable).parent / "gitops-hooks")
        self.guarded, self.plain, self.clone = work / "guarded.git", work / "plain.git", work / "push-clone"
        self.rounds: subprocess.Popen[str] | None = None
        git("init", "--quiet", "--bare", "--initial-branch=main", str(self.plain))
        subprocess.run([self.exe, "install", str(self.guarded)], check=True, capture_output=True)
        subprocess.run([self.exe, "env", "add", str(self.guarded), "bench", "--ref", "main", "--path",
                        "clusters/bench", "--kubeconfig", kubeconfig, "--namespace", namespace,
                        "--health-timeout", "1"], check=True, capture_output=True)
        git("init", "--quiet", "--initial-branch=main", str(self.clone))
        write_tree(self.clone / "clusters" / "bench", namespace)
        git("add", "-A", cwd=self.clone)
        git("commit", "--quiet", "-m", "1,001 objects", cwd=self.clone)
        for repo in (self.plain, self.guarded):  # the first apply; then two pushes for the gate server to warm up
            self.push(repo)
        for r in range(2):
            self.no_op(1000 + r)

    def push(self, repo: Path) -> float:
        started = time.perf_counter()
        proc = subprocess.run(["git", "push", "--quiet", str(repo), "HEAD:refs/heads/main"], cwd=self.clone,
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0 or "accepted, not applied" in proc.stderr or "failed" in proc.stderr:
            raise SystemExit(f"git push into {repo} went wrong:\n{proc.stderr[-2000:]}")
        return time.perf_counter() - started

    def both(self, run: int) -> tuple[float, float, float]:
        """(guarded, plain, CPU seconds of the rounds process) of the commit just made, in turns."""
        cpu = self.rounds_cpu()
        if run % 2:
            plain = self.push(self.plain)
            guarded = self.push(self.guarded)
        else:
            guarded = self.push(self.guarded)
            plain = self.push(self.plain)
        return guarded, plain, self.rounds_cpu() - cpu

    def no_op(self, run: int) -> tuple[float, float, float]:
        (self.clone / "README.md").write_text(f"outside the environment's folder: {run}\n", encoding="utf-8")
        git("add", "-A", cwd=self.clone)
        git("commit", "--quiet", "-m", f"readme {run}", cwd=self.clone)
        return self.both(run)

    def one_change(self, run: int) -> tuple[float, float, float]:
        change_one(self.clone / "clusters" / "bench", 200 + run)
        git("add", "-A", cwd=self.clone)
        git("commit", "--quiet", "-m", f"change {200 + run}", cwd=self.clone)
        return self.both(run)

    def start_rounds(self) -> None:
        self.rounds = subprocess.Popen([self.exe, "reconcile", "--every", "1h", "--repo", str(self.guarded)],
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.rounds.stdout is not None
        first, second = self.rounds.stdout.readline(), self.rounds.stdout.readline()  # started; the first round
        if "serving its pushes" not in first or " bench: " not in second:
            raise SystemExit(f"reconcile --every did not start serving:\n{first}{second}")

    def rounds_cpu(self) -> float:
        if self.rounds is None:
            return 0.0
        fields = Path(f"/proc/{self.rounds.pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.rounds is not None and self.rounds.poll() is None:
            self.rounds.terminate()
            self.rounds.wait(timeout=60)


def push_line(label: str, got: list[tuple[float, float, float]], commit: str) -> None:
    guarded, plain = [g for g, _, _ in got], [p for _, p, _ in got]
    over = statistics.median(guarded) - statistics.median(plain)
    served = f", rounds process cpu {statistics.median(c for _, _, c in got):.3f} s" if any(c for _, _, c in got) else ""
    print(f"{label:32} median {over:7.3f} s over plain git{served}  (runs {len(got)}, push median "
          f"{statistics.median(guarded):.3f} s, min {min(guarded):.3f}, max {max(guarded):.3f}; plain git "
          f"{statistics.median(plain):.3f} s)  code {commit}", flush=True)


def measure_pushes(kubeconfig: str, runs: int, work: Path, commit: str) -> None:
    pushes = Pushes(work / "pushes", kubeconfig, f"bench-p-{os.getpid()}")
    try:
        push_line("push no-op, own process", [pushes.no_op(r) for r in range(runs)], commit)
        push_line("push one change, own process", [pushes.one_change(r) for r in range(runs)], commit)
        pushes.start_rounds()
        push_line("push no-op, served", [pushes.no_op(100 + r) for r in range(runs)], commit)
        push_line("push one change, served", [pushes.one_change(100 + r) for r in range(runs)], commit)
    finally:
        pushes.stop()


def measure(kubeconfig: str, code: Path, runs: int, kubectl_runs: int, work: Path) -> None:
    commit = git("-C", str(code), "rev-parse", "--short=12", "HEAD").strip() if (code / ".git").exists() else str(code)
    tag = f"{os.getpid()}"
    suite = Suite(code, work / "suite", kubeconfig, f"bench-s-{tag}")
    kfolder = work / "kubectl"
    write_tree(kfolder, f"bench-k-{tag}")
    print(f"# 1,001 objects ({FILES + 1} files); kubectl {kubectl_version()}; server {kubeconfig}", flush=True)
    line("suite first apply", [timed(lambda: suite.reconcile())], commit)
    if kubectl_runs:
        line("kubectl first apply", [timed(lambda: kubectl(kubeconfig, f"bench-k-{tag}", kfolder))], "kubectl")
    line("suite no-op reconcile", [timed(lambda: suite.reconcile()) for _ in range(runs)], commit)
    one_round = in_process_round(code, suite)
    if one_round is not None:
        results: list[str] = []
        times = [timed(lambda: results.append(one_round())) for _ in range(runs)]
        line("suite no-op round (in-process)", times, commit, f"results {sorted(set(results))}")
    if kubectl_runs:
        line("kubectl no-op apply", [timed(lambda: kubectl(kubeconfig, f"bench-k-{tag}", kfolder))
                                     for _ in range(kubectl_runs)], "kubectl")
    times = []
    for r in range(runs):
        change_one(suite.folder, r)
        suite.commit(f"change {r}")
        times.append(timed(lambda: suite.reconcile()))
    line("suite one-change reconcile", times, commit)
    if one_round is not None:
        times = []
        for r in range(runs):
            change_one(suite.folder, 100 + r)
            suite.commit(f"change {100 + r}")
            times.append(timed(lambda: one_round()))
        line("suite one-change round (in-proc)", times, commit)
    times = []
    for r in range(kubectl_runs):
        change_one(kfolder, r)
        times.append(timed(lambda: kubectl(kubeconfig, f"bench-k-{tag}", kfolder)))
    if times:
        line("kubectl one-change apply", times, "kubectl")
    said = [ln for ln in suite.reconcile().splitlines() if ": applied: " in ln or ": failed: " in ln]
    print(f"# last reconcile said: {said[-1] if said else '(no summary line)'}", flush=True)
    if code == ROOT and (code / "gitops_hooks" / "reconcileserver.py").is_file():
        measure_pushes(kubeconfig, runs, work, commit)


def kubectl_version() -> str:
    proc = subprocess.run(["kubectl", "version", "--client", "-o", "yaml"], capture_output=True, text=True, check=False)
    for ln in proc.stdout.splitlines():
        if "gitVersion" in ln:
            return ln.split(":", 1)[1].strip()
    return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", help="a running cluster's kubeconfig (default: start realk8s)")
    parser.add_argument("--code", type=Path, default=ROOT, help="the source tree of the suite to measure")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--kubectl-runs", type=int, default=1)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-converge-"))
    state = work / "realk8s"
    runtime = work / "run"  # the gate server the pushes start lives here, and is stopped at the end
    runtime.mkdir(mode=0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    try:
        kubeconfig = args.kubeconfig
        if not kubeconfig:
            proc = subprocess.run([str(REALK8S), "start", str(state)], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise SystemExit(f"realk8s start failed: {proc.stderr.strip()}")
            kubeconfig = proc.stdout.strip().splitlines()[-1].split("=", 1)[1]
        measure(kubeconfig, args.code.resolve(), args.runs, args.kubectl_runs, work)
    finally:
        for pid_file in (runtime / "gitops-hooks").glob("gate-*.pid"):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text(encoding="ascii")), signal.SIGTERM)
        if not args.kubeconfig:
            subprocess.run([str(REALK8S), "stop", str(state)], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
