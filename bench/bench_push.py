"""Push-speed benchmark: what a pusher waits for over plain git, and the hooks' own wall time and peak
memory; medians of several runs.

    python bench/bench_push.py --corpus generated --only push-one-file,push-readme,push-cold --runs 5
    python bench/bench_push.py --corpus kube-prometheus
    python bench/bench_push.py --corpus generated --objects 10000 --runs 5
    python bench/bench_push.py --corpus kube-prometheus --profile /tmp/prof   # cProfile of one run of each
    python bench/bench_push.py --import-time
    python bench/bench_push.py --corpus generated --code HEAD   # an export of a commit, not the live tree

Figures (one line each):
  cold-push   first push of the whole corpus into a fresh bare repository (a new one for every run),
              judged by a resident gate server started for that run (by a push of one ConfigMap to a
              scratch repository), warmed up and given one more push of that repository: it has seen
              nothing of the corpus
  cold-push-no-server  the same with GITOPS_HOOKS_NO_SERVER=1: the gate in the hook's own process, as
              for the first push after an install or upgrade
  one-file    a push that changes one manifest (a label added to its first object) on a server that
              has already seen the corpus
  readme      a push that changes no manifest (README.md edited)
  validate-cold  `gitops-hooks validate` of the clone's working tree with an empty client cache
              (XDG_CACHE_HOME is a new empty folder for every run)
  validate    the same with the client cache warm (one unmeasured run first)
  baseline    bench/baseline.py, a straightforward Python validator (PyYAML's C loader and compiled
              jsonschema-rs validators), on the generated corpus of 10,000 objects whatever --corpus
              says: it took 2.2 s there on the reference machine, where the cold-push targets were set.
              It probes the machine's speed, which moves the figures by half between hours. With
              cold-push, one run follows each cold push, and one more line gives each push at the
              reference machine's speed (its wall time x 2.2 s / the baseline's run after it), median
              of the pairs
  push-one-file, push-readme, push-cold  what the pusher waits for: the whole `git push` into a
              repository guarded by the installed hooks, minus the same push into a bare repository
              without hooks, interleaved in the same run (difference of the medians); push-cold beside
              kubeconform (../shared/tools/kubeconform) on the same files, as a ratio. A third
              repository whose hooks are wrapped to measure them gives pre-receive and post-receive
              apart, with their memory

one-file, readme: judged by the gate server. The benchmark has a gate server of its own (XDG_RUNTIME_DIR
in its work folder), stopped at the end; its memory counts: "gate server peak RSS" is the server's
VmHWM (its peak since it started), its CPU time is added to the push's (what it does after its answer,
writing the result cache, included: the script waits for it, untimed), and its processes are summed
into the tree PSS.

Only the hook process is measured: the bare repository's pre-receive hook is replaced by a small
wrapper that starts the hook installed by `gitops-hooks install` and records the wall time from spawn to
exit; with os.wait4, its ru_maxrss ("peak RSS": the largest single process, the hook or one of its
workers) and its CPU time (user + system, including the workers it waited for; less sensitive than wall
time to other processes on shared cores); and, sampled every 25 ms, the peak of the summed PSS of the hook
and all its descendants ("tree PSS": forked workers counted with their shared pages split, not twice).
git's own transfer time is not counted. `validate` is measured the same way, as a child of this script.
"MB" is KiB / 1024 (MiB).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parent
SHARED = HERE.parent.parent / "shared"
KUBE_PROMETHEUS = SHARED / "corpus" / "kube-prometheus" / "manifests"
EXE = str(Path(sys.executable).parent / "gitops-hooks")
FIGURES = ("push-one-file", "push-readme", "push-cold", "cold-push", "cold-push-no-server", "one-file", "readme",
           "validate-cold", "validate", "baseline")
REFERENCE_BASELINE = 2.2  # s: baseline.py on the generated 10,000 objects on the reference machine
REFERENCE_TARGETS = {"generated-10000": 0.9, "kube-prometheus": 0.33}  # s: cold-push targets at that speed

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}

# The measuring wrapper, installed as hooks/pre-receive: it times the installed hook with spawn_measured
# below and appends the figures to a record file. `-S` skips site; bench_push imports the stdlib only.
WRAPPER = '''#!{python} -S
import sys
sys.path.insert(0, {bench!r})
from bench_push import record, spawn_measured
sys.exit(record({record!r}, spawn_measured({cmd!r})))
'''

# Runs the suite's command line under cProfile (imports included) and writes the stats to argv[1].
# cProfile cannot follow forked workers: os.cpu_count() is made to say 1 so that the pipeline does all
# the work in the profiled process (the sequential path).
PROFILED = '''
import cProfile, os, sys
os.cpu_count = lambda: 1
out, args = sys.argv[1], sys.argv[2:]
sys.argv = ["gitops-hooks", *args]
prof = cProfile.Profile()
prof.enable()
code = 0
try:
    from gitops_hooks.cli import main
    main()
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
finally:
    prof.disable()
    prof.dump_stats(out)
sys.exit(code)
'''


@dataclass(frozen=True)
class Sample:
    wall: float
    maxrss_kb: int  # ru_maxrss: the largest single process (the hook, or one of its workers)
    exit: int
    cpu: float  # user + system time of the measured process and the children it waited for
    tree_pss_kb: int  # sampled peak of the summed PSS of the process and all its descendants
    server_hwm_kb: int = 0  # VmHWM of the resident gate server after the push (its lifetime peak)


# ---------------------------------------------------------------------------- measuring a process tree

def spawn_measured(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None,
                   quiet: bool = False) -> dict[str, float | int]:
    """Run cmd; its wall time from spawn to exit, rusage (via wait4) and the sampled peak PSS of its tree."""
    import time

    out = subprocess.DEVNULL if quiet else None
    before = {p: cpu_seconds(p) for p in gate_servers()}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=out)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    sampler.finish()
    servers = settle()
    return {"wall": wall, "maxrss_kb": usage.ru_maxrss, "exit": proc.returncode, "user": usage.ru_utime,
            "sys": usage.ru_stime, "tree_pss_kb": sampler.peak_kb,
            "server_hwm_kb": max((status_kb(p, "VmHWM") for p in servers), default=0),
            "server_cpu": sum(cpu_seconds(p) - before.get(p, 0.0) for p in servers)}


def settle() -> list[int]:
    """Wait (untimed) until the gate servers have done what they do after an answer: a server waits for
    its forked workers (their CPU time joins its own only then) and writes the result cache. Their pids."""
    import time

    servers = gate_servers()
    deadline = time.monotonic() + 5
    while any(children(p) for p in servers) and time.monotonic() < deadline:
        time.sleep(0.005)
    settle_servers()
    return servers


def gate_servers() -> list[int]:
    """Pids of the resident gate servers of this run (their pid files in XDG_RUNTIME_DIR/gitops-hooks)."""
    folder = Path(os.environ.get("XDG_RUNTIME_DIR", "/nonexistent")) / "gitops-hooks"
    out = []
    for pid_file in folder.glob("gate-*.pid"):
        try:
            pid = int(pid_file.read_text(encoding="ascii"))
        except (OSError, ValueError):
            continue
        if Path(f"/proc/{pid}").exists():
            out.append(pid)
    return out


def settle_servers() -> None:
    """gateclient.settle of the live checkout (loaded by its path: the measuring hook runs with the measured
    commit first on its path, `--code`, which may predate it; the module imports the standard library only)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_live_gateclient", CHECKOUT / "gitops_hooks" / "gateclient.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.settle()


def children(pid: int) -> list[int]:
    """Pids of the processes whose parent is pid."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            with open(proc / "stat", encoding="ascii", errors="replace") as fh:
                if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(proc.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its waited-for children (/proc/<pid>/stat)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def record(path: str, figures: dict[str, float | int]) -> int:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(figures) + "\n")
    return int(figures["exit"])


class TreeSampler:
    """Every 25 ms, the summed PSS (/proc/<pid>/smaps_rollup) of a process and its descendants.

    PSS shares pages among the processes that map them, so forked workers are not counted twice for the
    memory they share with their parent. Descendants are found again every 100 ms (from /proc/*/stat).
    """

    INTERVAL = 0.025
    RESCAN = 0.1

    def __init__(self, root: int) -> None:
        import threading

        self.root = root
        self.peak_kb = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def finish(self) -> None:
        self.done.set()
        self.thread.join()

    def _run(self) -> None:
        import time

        pids, scanned = [self.root], 0.0
        while not self.done.wait(self.INTERVAL):
            if time.monotonic() - scanned > self.RESCAN:
                pids = [p for root in (self.root, *gate_servers()) for p in descendants(root)]
                scanned = time.monotonic()
            self.peak_kb = max(self.peak_kb, sum(pss_kb(p) for p in pids))


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class BenchError(Exception):
    pass


# ---------------------------------------------------------------------------- git and measuring

def git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **GIT_ENV}
    env.pop("GIT_DIR", None)
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise BenchError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def sample(d: dict[str, float | int]) -> Sample:
    return Sample(float(d["wall"]), int(d["maxrss_kb"]), int(d["exit"]),
                  float(d["user"]) + float(d["sys"]) + float(d.get("server_cpu", 0.0)),
                  int(d.get("tree_pss_kb", 0)), int(d.get("server_hwm_kb", 0)))


def measured(cmd: list[str], cwd: Path, cache: Path) -> Sample:
    """Run cmd as a child with its user cache in `cache`, measured like the hook."""
    return sample(spawn_measured(cmd, cwd, {**os.environ, "XDG_CACHE_HOME": str(cache)}, quiet=True))


def profiled_cmd(out: Path, *args: str) -> list[str]:
    return [sys.executable, "-c", PROFILED, str(out), *args]


class Server:
    """A bare repository with the suite installed by `gitops-hooks install`, its hook wrapped to measure."""

    def __init__(self, path: Path, record: Path, profile: Path | None = None, post: bool = False) -> None:
        """post: measure post-receive too (its figures go to `record` with the suffix .post.jsonl)."""
        self.path = path
        self.record = record
        self.post_record = record.with_suffix(".post.jsonl")
        install(path)
        self.hooks = ("pre-receive", "post-receive") if post else ("pre-receive",)
        for hook in self.hooks:
            (path / "hooks" / hook).rename(path / "hooks" / f"{hook}.measured")
        self.wrap(profile)

    def wrap(self, profile: Path | None) -> None:
        """Measure the installed hooks from now on; pre-receive under cProfile (writing `profile`) if given."""
        for name in self.hooks:
            hook = self.path / "hooks" / name
            installed = self.path / "hooks" / f"{name}.measured"
            cmd = profiled_cmd(profile, name) if profile and name == "pre-receive" else [str(installed)]
            record = self.record if name == "pre-receive" else self.post_record
            text = WRAPPER.format(python=sys.executable, bench=str(HERE), cmd=cmd, record=str(record))
            hook.write_text(text, encoding="utf-8")
            hook.chmod(0o755)

    def samples(self, record: Path | None = None) -> list[Sample]:
        record = record or self.record
        if not record.exists():
            return []
        return [sample(d) for d in map(json.loads, record.read_text(encoding="utf-8").splitlines())]

    def push(self, clone: Path) -> tuple[Sample, str]:
        """Push the clone's HEAD to main; the hook's sample and what the pusher saw."""
        before = len(self.samples())
        proc = git("push", "--porcelain", str(self.path), "HEAD:refs/heads/main", cwd=clone, check=False)
        after = self.samples()
        if len(after) != before + 1:
            raise BenchError(f"the measuring hook did not record the push to {self.path}:\n{proc.stderr}")
        return after[-1], proc.stderr

    def force(self, clone: Path) -> None:
        """Make main the clone's HEAD without running hooks (when the gate refused a base state)."""
        git("--git-dir", str(self.path), "fetch", "--quiet", str(clone), "+HEAD:refs/heads/main")


def install(path: Path) -> None:
    proc = subprocess.run([EXE, "install", str(path)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BenchError(f"gitops-hooks install {path} failed: {proc.stderr.strip()}")


# ---------------------------------------------------------------------------- which code is measured

def export_code(rev: str, dest: Path) -> str:
    """Export commit `rev` of the checkout to dest and make every child import gitops_hooks from there.

    The editable install maps gitops_hooks.schemas_data and .hook_scripts to the live checkout; the links
    make the export self-contained. Returns the commit id.
    """
    sha = git("rev-parse", "--verify", f"{rev}^{{commit}}", cwd=CHECKOUT).stdout.strip()
    dest.mkdir(parents=True)
    archive = subprocess.Popen(["git", "archive", sha], cwd=CHECKOUT, stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise BenchError(f"git archive {sha} failed")
    (dest / "gitops_hooks" / "schemas_data").symlink_to(dest / "schemas")
    (dest / "gitops_hooks" / "hook_scripts").symlink_to(dest / "hooks")
    # Byte-compile now, as an installed package is: else the first measured run compiles every module.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(dest / "gitops_hooks")], check=True)
    os.environ["PYTHONPATH"] = str(dest)
    return sha


def code_description() -> str:
    """Where the children import gitops_hooks from, and at which commit."""
    proc = subprocess.run([sys.executable, "-c", "import gitops_hooks; print(gitops_hooks.__file__)"],
                          capture_output=True, text=True, check=False, cwd="/")
    where = Path(proc.stdout.strip() or "?").parent.parent
    if os.environ.get("PYTHONPATH") and str(where) == os.environ["PYTHONPATH"]:
        return f"code: export in {where}"
    # Byte-compile the live package as pip does for an installed one (PYTHONDONTWRITEBYTECODE may be set
    # here): else every measured run compiles every module it imports.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(where / "gitops_hooks")], check=False)
    head = git("rev-parse", "--short", "HEAD", cwd=CHECKOUT, check=False).stdout.strip()
    dirty = git("status", "--porcelain", "--", "gitops_hooks", "schemas", "hooks", cwd=CHECKOUT, check=False)
    changed = len(dirty.stdout.splitlines())
    state = f", plus uncommitted changes in {changed} files" if changed else ""
    return f"code: live checkout {where} at {head}{state}"


# ---------------------------------------------------------------------------- corpus and clone

def write_corpus(kind: str, objects: int, clone: Path, shared: Path = SHARED) -> str:
    if kind == "kube-prometheus":
        source = shared / KUBE_PROMETHEUS.relative_to(SHARED)
        if not source.is_dir():
            raise BenchError(f"the shared corpus is not at {source}")
        shutil.copytree(source, clone / "manifests")
        return "kube-prometheus"
    sys.path.insert(0, str(HERE))
    import make_corpus

    make_corpus.write(make_corpus.build(make_corpus.load_pool(shared / "corpus"), objects), clone)
    return f"generated-{objects}"


def make_clone(path: Path, kind: str, objects: int, shared: Path = SHARED) -> str:
    label = write_corpus(kind, objects, path, shared)
    git("init", "--quiet", "--initial-branch=main", str(path))
    commit(path, "corpus")
    return label


def commit(clone: Path, message: str) -> None:
    git("add", "-A", cwd=clone)
    git("commit", "--quiet", "-m", message, cwd=clone)


def manifest_files(clone: Path) -> list[Path]:
    return sorted(p for p in clone.rglob("*.yaml") if ".git" not in p.parts)


def edit_one_file(clone: Path, run: int) -> Path:
    """Add (or change) a label on the first object of one manifest; falls back to a comment."""
    files = manifest_files(clone)
    target = next((p for p in files if b"\n  labels:\n" in p.read_bytes()), files[0])
    text = target.read_text(encoding="utf-8")
    label = f"    bench.gitops-hooks.io/edit: run-{run}\n"
    if "bench.gitops-hooks.io/edit:" in text:
        lines = text.splitlines(keepends=True)
        text = "".join(label if "bench.gitops-hooks.io/edit:" in ln else ln for ln in lines)
    elif "\n  labels:\n" in text:
        text = text.replace("\n  labels:\n", "\n  labels:\n" + label, 1)
    else:
        text += f"# bench edit {run}\n"
    target.write_text(text, encoding="utf-8")
    return target


# ---------------------------------------------------------------------------- figures

def start_gate_server(work: Path) -> None:
    """Have the resident gate server up and warm (install starts it, and so does the first push it cannot
    hand over): push one small object to a scratch repository, then wait for the server's socket and
    warm-up. Nothing of the corpus is seen by the server before the measured pushes."""
    import time

    warmed_before = 0  # a server that is already up has logged its warm-up (or will)
    started: tuple[Path, Server] | None = None
    if not gate_servers():
        warmed_before = _warm_lines()
        scratch = work / f"scratch-{len(list(work.glob('scratch-*.git')))}"
        git("init", "--quiet", "--initial-branch=main", str(scratch))
        (scratch / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: scratch\n"
                                         "  namespace: default\ndata:\n  a: b\n", encoding="utf-8")
        commit(scratch, "scratch")
        server = Server(scratch.with_suffix(".git"), scratch.with_suffix(".jsonl"))
        server.push(scratch)
        started = (scratch, server)

    deadline = time.monotonic() + 30
    while not gate_servers() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not gate_servers():
        _log("note: no gate server started; every push runs the gate in its own process")
        return
    # A resident server compiles its validators once, in its first idle seconds; measure after that, as
    # a server that has been up for a while would be. Such a server has also judged other pushes: one
    # more push of the scratch repository, through the server this time.
    while time.monotonic() < deadline + 60:
        if _warm_lines() > warmed_before:
            if started is not None:
                (started[0] / "cm.yaml").write_text((started[0] / "cm.yaml").read_text() + "  c: d\n")
                commit(started[0], "scratch again")
                started[1].push(started[0])
            return
        time.sleep(0.1)
    _log("note: the gate server did not finish warming up in time")


def _warm_lines() -> int:
    """Warm-ups logged so far by the gate servers of this run (one log per code stamp, appended to)."""
    logs = (Path(os.environ["XDG_RUNTIME_DIR"]) / "gitops-hooks").glob("gate-*.log")
    return sum(p.read_text(encoding="utf-8", errors="replace").count("warm: ") for p in logs)


def stop_gate_servers() -> None:
    import signal
    import time

    pids = gate_servers()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + 20
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def cold_push(work: Path, clone: Path, runs: int, profile: Path | None, server_on: bool = True,
              between: Callable[[], None] | None = None) -> list[Sample]:
    """`runs` cold pushes; `between` runs after each (not timed as part of the push)."""
    out: list[Sample] = []
    saved = os.environ.get("GITOPS_HOOKS_NO_SERVER")
    if server_on:
        os.environ.pop("GITOPS_HOOKS_NO_SERVER", None)  # _cold_pushes starts a new server for each run
    else:
        os.environ["GITOPS_HOOKS_NO_SERVER"] = "1"
    try:
        return _cold_pushes(work, clone, runs, profile, "cold" if server_on else "cold-ns", out, between)
    finally:
        if saved is None:
            os.environ.pop("GITOPS_HOOKS_NO_SERVER", None)
        else:
            os.environ["GITOPS_HOOKS_NO_SERVER"] = saved


def _cold_pushes(work: Path, clone: Path, runs: int, profile: Path | None, name: str,
                 out: list[Sample], between: Callable[[], None] | None = None) -> list[Sample]:
    for i in range(runs):
        if name == "cold" and profile is None:  # a new server for each run: it has seen nothing of the corpus
            stop_gate_servers()
            start_gate_server(work)
        server = Server(work / f"{name}-{i}.git", work / f"{name}-{i}.jsonl", profile if i == 0 else None)
        sample, _ = server.push(clone)
        out.append(sample)
        log = server.path / "gitops-hooks" / "log"
        if log.is_dir():  # the gate's own log (a timeout's traceback, an internal error): kept with --workdir
            shutil.copytree(log, work / f"{server.path.stem}-log")
        shutil.rmtree(server.path)
        if profile is not None:
            break
        if between is not None:
            between()
    return out


def baseline(corpus: Path, work: Path) -> Sample:
    """One run of bench/baseline.py on the generated 10,000 objects in `corpus`, with no gate server
    running (its CPU time and memory would count)."""
    stop_gate_servers()
    return measured([sys.executable, str(HERE / "baseline.py"), str(corpus)], corpus, work / "xdg-baseline")


def baseline_corpus(label: str, clone: Path, work: Path, shared: Path = SHARED) -> Path:
    """The generated 10,000 objects: the clone itself when it holds them, else written once."""
    if label == "generated-10000":
        return clone
    folder = work / "baseline-corpus"
    if not folder.is_dir():
        write_corpus("generated", 10_000, folder, shared)
    return folder


def at_reference_speed(label: str, pushes: list[Sample], bases: list[Sample]) -> str:
    """Each cold push scaled by the machine's speed of the moment: wall x 2.2 s / the baseline after it."""
    scaled = [p.wall * REFERENCE_BASELINE / b.wall for p, b in zip(pushes, bases, strict=True)]
    target = REFERENCE_TARGETS.get(label)
    return (f"{label} cold-push at the reference machine's speed: median {statistics.median(scaled):.3f} s "
            f"({len(scaled)} pairs, min {min(scaled):.3f}, max {max(scaled):.3f}"
            + (f"; target {target} s" if target else "") + "); pairs (push / baseline, s): "
            + ", ".join(f"{p.wall:.3f} / {b.wall:.2f}" for p, b in zip(pushes, bases, strict=True)))


def warm_server(work: Path, clone: Path) -> tuple[Server, str]:
    """A server that has seen the corpus through the gate (so a cache, if any, is filled)."""
    server = Server(work / "warm.git", work / "warm.jsonl")
    sample, output = server.push(clone)
    note = ""
    if sample.exit != 0:
        server.force(clone)
        note = "the gate refused the corpus itself; the base was placed without hooks"
        remote = "\n".join(ln for ln in output.splitlines() if ln.startswith("remote:"))
        _log(f"note: {note}:\n{remote[-3000:]}")
    return server, note


def incremental(server: Server, clone: Path, runs: int, change: Callable[[int], None],
                profile: Path | None = None) -> list[Sample]:
    """`runs` pushes of one change each; with a profile, one more push under cProfile (not counted)."""
    out = []
    for i in range(runs + (profile is not None)):
        if profile is not None and i == runs:
            server.wrap(profile)
        change(i)
        commit(clone, f"bench change {i}")
        sample, _ = server.push(clone)
        if sample.exit != 0:
            server.force(clone)
        out.append(sample)
    if profile is not None:
        server.wrap(None)
        out.pop()
    return out


def validate_cold(work: Path, clone: Path, runs: int, profile: Path | None) -> list[Sample]:
    if profile is not None:
        return [measured(profiled_cmd(profile, "validate"), clone, work / "xdg-profile")]
    return [measured([EXE, "validate"], clone, work / f"xdg-cold-{i}") for i in range(runs)]


def validate_warm(work: Path, clone: Path, runs: int) -> list[Sample]:
    measured([EXE, "validate"], clone, work / "xdg-warm")  # fills the cache; not counted
    return [measured([EXE, "validate"], clone, work / "xdg-warm") for _ in range(runs)]


def summary(label: str, figure: str, samples: list[Sample], note: str = "") -> str:
    walls = [s.wall for s in samples]
    peak = max(s.maxrss_kb for s in samples) / 1024
    tree = max(s.tree_pss_kb for s in samples) / 1024
    codes = sorted({s.exit for s in samples})
    status = "" if codes == [0] else f"; exit {','.join(map(str, codes))}"
    spread = f", min {min(walls):.3f}, max {max(walls):.3f}" if len(walls) > 1 else ""
    extra = f"; {note}" if note else ""
    cpu = statistics.median(s.cpu for s in samples)
    server = max(s.server_hwm_kb for s in samples) / 1024
    served = f", gate server peak RSS {server:.0f} MB" if server else ", no gate server"
    return (f"{label} {figure}: median {statistics.median(walls):.3f} s, peak RSS {peak:.0f} MB, "
            f"tree PSS {tree:.0f} MB{served}, cpu {cpu:.3f} s "
            f"({len(samples)} run{'s' if len(samples) != 1 else ''}{spread}{status}{extra})")


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_bench(kind: str, objects: int, runs: int, only: list[str], work: Path,
              profile: Path | None, shared: Path = SHARED) -> list[str]:
    clone = work / "clone"
    label = make_clone(clone, kind, objects, shared)
    _log(f"{label}: {len(manifest_files(clone))} manifest files in {clone}")
    lines: list[str] = []

    def emit(figure: str, samples: list[Sample], note: str = "") -> None:
        line = summary(label, figure, samples, note)
        print(line, flush=True)
        lines.append(line)

    prof = (lambda name: profile / f"{label}-{name}.prof") if profile else (lambda name: None)
    if "push-cold" in only:
        kc = kubeconform_command(work, clone, shared)
        whole = whole_summary(label, "push-cold", whole_cold(work, clone, runs, kc))
        print(whole, flush=True)
        lines.append(whole)
    for figure, changer in (("push-one-file", lambda c, i: _noop(edit_one_file(c, i))),
                         ("push-readme", lambda c, i: _noop((c / "README.md").write_text(f"bench edit {i}\n")))):
        if figure in only:
            if not gate_servers():
                start_gate_server(work)
            whole = whole_summary(label, figure, whole_incremental(work, clone, runs, figure, changer))
            print(whole, flush=True)
            lines.append(whole)
    if "cold-push-no-server" in only:
        emit("cold-push-no-server", cold_push(work, clone, runs, prof("cold-push-no-server"), server_on=False))
    bases: list[Sample] = []
    pushes: list[Sample] = []
    probe = baseline_corpus(label, clone, work, shared) if "baseline" in only else None
    if "cold-push" in only:
        between = (lambda: bases.append(baseline(probe, work))) if probe and not profile else None
        pushes = cold_push(work, clone, runs, prof("cold-push"), between=between)
        emit("cold-push", pushes)
    if probe is not None:
        bases = bases or [baseline(probe, work) for _ in range(runs)]
        emit("baseline", bases, "on the generated 10,000 objects")
        if len(pushes) == len(bases) and all(b.exit == 0 for b in bases):
            line = at_reference_speed(label, pushes, bases)
            print(line, flush=True)
            lines.append(line)
    if "one-file" in only or "readme" in only:
        if not profile:
            start_gate_server(work)
        server, note = warm_server(work, clone)
        if "one-file" in only:
            change = lambda i: _noop(edit_one_file(clone, i))  # noqa: E731
            emit("one-file", incremental(server, clone, runs, change, prof("one-file")), note)
        if "readme" in only:
            readme = clone / "README.md"
            edit = lambda i: _noop(readme.write_text(f"bench edit {i}\n"))  # noqa: E731
            emit("readme", incremental(server, clone, runs, edit, prof("readme")), note)
    stop_gate_servers()  # validate never uses the server: keep it out of those figures
    if "validate-cold" in only:
        emit("validate-cold", validate_cold(work, clone, runs, prof("validate-cold")))
    if "validate" in only:
        emit("validate", validate_warm(work, clone, runs))
    if profile:
        for path in sorted(profile.glob(f"{label}-*.prof")):
            print_profile(path)
    return lines


def _noop(_: object) -> None:
    return None


# ---------------------------------------------------------------------------- whole pushes

# What a pusher waits for is the whole `git push`: git runs post-receive before the push returns. These
# figures time `git push` into a repository guarded by the installed hooks and the same push into a bare
# repository without hooks, interleaved in the same run; the figure is the difference of the medians.
# A third repository, whose hooks are wrapped to measure them, gives pre-receive and post-receive apart.
WHOLE_TARGETS = {"push-one-file": 0.10, "push-readme": 0.06}  # s over plain git
COLD_TARGET = 0.4  # push-cold over plain git, as a share of kubeconform's time on the same files


@dataclass(frozen=True)
class WholePush:
    guarded: float  # wall time of `git push` into the guarded repository
    plain: float  # the same push into a bare repository without hooks
    pre: Sample  # the hooks alone, in the repository whose hooks are wrapped
    post: Sample
    exit: int  # of the guarded push
    kubeconform: float = 0.0  # kubeconform on the same files, in between


def bare(path: Path) -> Path:
    git("init", "--bare", "--quiet", "--initial-branch=main", str(path))
    return path


def timed_push(repo: Path, clone: Path) -> tuple[float, int]:
    """Wall time of `git push` of the clone's HEAD to main, and its exit status; then settle (untimed)."""
    import time

    env = {**os.environ, **GIT_ENV}
    env.pop("GIT_DIR", None)
    start = time.perf_counter()
    proc = subprocess.run(["git", "push", "--porcelain", str(repo), "HEAD:refs/heads/main"], cwd=clone,
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - start
    settle()
    return wall, proc.returncode


def measured_push(server: Server, clone: Path) -> tuple[Sample, Sample]:
    """Push to the repository whose hooks are wrapped: (pre-receive, post-receive) figures."""
    pre, _ = server.push(clone)
    posts = server.samples(server.post_record)
    if pre.exit != 0:
        server.force(clone)
    post = posts[-1] if posts else Sample(0.0, 0, -1, 0.0, 0)  # exit -1: post-receive did not run
    return pre, post


def rotated(steps: list[tuple[str, Callable[[], Any]]], i: int) -> dict[str, Any]:
    """Run each step once, starting at a different one each run (no position is always first); what
    each returned, by name."""
    out = {}
    for k in range(len(steps)):
        name, step = steps[(i + k) % len(steps)]
        out[name] = step()
    return out


def timed_command(cmd: list[str]) -> float:
    import time

    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def fresh_server_push(work: Path, repo: Path, clone: Path) -> tuple[float, int]:
    """timed_push judged by a newly started gate server (it has seen nothing before)."""
    stop_gate_servers()
    start_gate_server(work)
    return timed_push(repo, clone)


def whole_incremental(work: Path, clone: Path, runs: int, name: str,
                      change: Callable[[Path, int], None]) -> list[WholePush]:
    """`runs` pushes of one change each into the three repositories, which already hold the clone's
    state. The wrapped repository gets its own twin clone with a different change each time: the server
    must not have seen the same blob one push earlier."""
    a, b = work / f"{name}-a", work / f"{name}-b"
    shutil.copytree(clone, a, symlinks=True)
    shutil.copytree(clone, b, symlinks=True)
    plain, guarded = bare(work / f"{name}-plain.git"), work / f"{name}-guarded.git"
    install(guarded)
    wrapped = Server(work / f"{name}-wrapped.git", work / f"{name}-wrapped.jsonl", post=True)
    timed_push(plain, a)
    if timed_push(guarded, a)[1] != 0:
        git("--git-dir", str(guarded), "fetch", "--quiet", str(a), "+HEAD:refs/heads/main")
    measured_push(wrapped, b)
    out = []
    for i in range(runs):
        change(a, i)
        commit(a, f"bench change {i}")
        change(b, 1000 + i)
        commit(b, f"bench change {i}")
        got = rotated([("plain", partial(timed_push, plain, a)), ("guarded", partial(timed_push, guarded, a)),
                       ("hooks", partial(measured_push, wrapped, b))], i)
        (g_wall, g_exit), (p_wall, _), (pre, post) = got["guarded"], got["plain"], got["hooks"]
        if g_exit != 0:
            git("--git-dir", str(guarded), "fetch", "--quiet", str(a), "+HEAD:refs/heads/main")
        out.append(WholePush(g_wall, p_wall, pre, post, g_exit))
    return out


def whole_cold(work: Path, clone: Path, runs: int, kubeconform: list[str] | None) -> list[WholePush]:
    """`runs` first pushes of the whole corpus into new repositories, each guarded one judged by a newly
    started gate server (it has seen nothing of the corpus); kubeconform on the same files in between."""
    out = []
    for i in range(runs):
        plain, guarded = bare(work / f"cold-plain-{i}.git"), work / f"cold-guarded-{i}.git"
        install(guarded)
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("plain", partial(timed_push, plain, clone)), ("guarded", partial(fresh_server_push, work, guarded, clone))]
        if kubeconform is not None:
            steps.append(("kc", partial(timed_command, kubeconform)))
        got = rotated(steps, i)
        # (installed before the server restarts, as a repository is before its first push: a configuration
        # file seconds old is read by post-receive's full process, see gateclient.write_stamp)
        wrapped = Server(work / f"cold-wrapped-{i}.git", work / f"cold-wrapped-{i}.jsonl", post=True)
        stop_gate_servers()
        start_gate_server(work)
        pre, post = measured_push(wrapped, clone)
        (g_wall, g_exit), (p_wall, _) = got["guarded"], got["plain"]
        out.append(WholePush(g_wall, p_wall, pre, post, g_exit, float(got.get("kc", 0.0))))
        for repo in (plain, guarded, wrapped.path):
            shutil.rmtree(repo, ignore_errors=True)
    return out


def kubeconform_command(work: Path, clone: Path, shared: Path) -> list[str] | None:
    """kubeconform over the clone's manifests, with standalone schemas of their kinds written beside
    (made from the same schema files the gate uses, strict, newest bundled version); one untimed run first
    (the wrapper unpacks the binary on first use). None when ../shared/tools has no kubeconform."""
    import yaml

    from gitops_hooks.kubeconform import schema_file_name
    from gitops_hooks.schemas import KubernetesSchemas, definition_closure

    binary = shared / "tools" / "kubeconform"
    if not binary.exists():
        _log(f"note: no kubeconform at {binary}: push-cold is given without it")
        return None
    kube = KubernetesSchemas("", True)
    folder = work / "kubeconform-schemas"
    folder.mkdir(exist_ok=True)
    for path in manifest_files(clone):
        for doc in yaml.load_all(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader):
            if not isinstance(doc, dict) or "kind" not in doc:
                continue
            group, _, version = str(doc.get("apiVersion", "")).rpartition("/")
            name = kube.index.get((group, version, str(doc["kind"])))
            target = folder / schema_file_name(str(doc["apiVersion"]), str(doc["kind"]))
            if name is not None and not target.exists():
                schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                          **definition_closure(kube.defs, name)}
                target.write_text(json.dumps(schema), encoding="utf-8")
    inputs = sorted({str(p.parent) for p in manifest_files(clone)})
    cmd = [str(binary), "-strict", "-summary", "-kubernetes-version", f"{kube.version}.0",
           "-schema-location", str(folder / "{{ .ResourceKind }}{{ .KindSuffix }}.json"), *inputs]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    _log(f"kubeconform: {proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr.strip()}")
    return cmd


def whole_summary(label: str, figure: str, pushes: list[WholePush]) -> str:
    med = statistics.median
    over = med(p.guarded for p in pushes) - med(p.plain for p in pushes)
    pre = [p.pre for p in pushes]
    post = [p.post for p in pushes]
    peak = max(s.maxrss_kb for s in pre + post) / 1024
    tree = max(s.tree_pss_kb for s in pre + post) / 1024
    server = max(s.server_hwm_kb for s in pre + post) / 1024
    codes = sorted({p.exit for p in pushes} | {s.exit for s in pre + post})
    status = "" if codes == [0] else f"; exit {','.join(map(str, codes))}"
    if figure == "push-cold" and all(p.kubeconform for p in pushes):
        kc = med(p.kubeconform for p in pushes)
        head = f"over plain git {over:.3f} s = {over / kc:.2f}x kubeconform's {kc:.3f} s (target {COLD_TARGET}x)"
    else:
        target = WHOLE_TARGETS.get(figure)
        head = f"over plain git {over:.3f} s" + (f" (target {target} s)" if target else "")
    return (f"{label} {figure}: {head}; git push median {med(p.guarded for p in pushes):.3f} s, without hooks "
            f"{med(p.plain for p in pushes):.3f} s; pre-receive {med(s.wall for s in pre):.3f} s, post-receive "
            f"{med(s.wall for s in post):.3f} s; peak RSS {peak:.0f} MB, tree PSS {tree:.0f} MB, gate server peak "
            f"RSS {server:.0f} MB ({len(pushes)} runs, interleaved{status})")


# ---------------------------------------------------------------------------- profiles and imports

# Phases of the pipeline by the function that does them: (label, file suffix, function name). Cumulative
# times overlap where phases nest (lazy imports count both in "imports" and in the phase that imports).
PHASES = (
    ("imports (all, incl. lazy)", "<frozen importlib._bootstrap>", "_find_and_load"),
    ("server config load", "gitops_hooks/config.py", "load_server_config"),
    ("schemas setup (make_context)", "gitops_hooks/pipeline/context.py", "make_context"),
    ("git: tree walk", "gitops_hooks/gitrepo.py", "entries"),
    ("git: blob reads", "gitops_hooks/gitrepo.py", "read"),
    ("YAML → documents (documents.parse)", "gitops_hooks/documents/__init__.py", "parse"),
    ("  of which parse_yaml", "gitops_hooks/documents/__init__.py", "parse_yaml"),
    ("  of which the fast path (_fast: yaml-rs + checks)", "gitops_hooks/documents/fast.py", "_fast"),
    ("    of which yaml-rs loads", "~", "<built-in method yaml_rs._yaml_rs._loads>"),
    ("    of which YAML 1.1 cross-check (_same_in_yaml11)", "gitops_hooks/documents/fast.py", "_same_in_yaml11"),
    ("  of which the careful path (parse_yaml_careful: PyYAML)", "gitops_hooks/documents/careful.py",
     "parse_yaml_careful"),
    ("  of which our builder (_document)", "gitops_hooks/documents/careful.py", "_document"),
    ("  of which alias-size walk (_expanded_size)", "gitops_hooks/documents/careful.py", "_expanded_size"),
    ("  of which PyYAML's Python resolver (resolve)", "yaml/resolver.py", "resolve"),
    ("positions re-composed (SourceFile._nodes)", "gitops_hooks/documents/positions.py", "_nodes"),
    ("kustomize: plan (kustomize.find)", "gitops_hooks/kustomize.py", "find"),
    ("kustomize: simple_render", "gitops_hooks/kustomize.py", "simple_render"),
    ("kustomize: kubectl_render", "gitops_hooks/kustomize.py", "kubectl_render"),
    ("schema check (validate_schema)", "gitops_hooks/checks/schema.py", "validate_schema"),
    ("  of which compiling validators", "gitops_hooks/schemas.py", "compile_schema"),
    ("  of which CRD → JSON schema", "gitops_hooks/schemas.py", "crd_to_jsonschema"),
    ("policy apply", "gitops_hooks/config.py", "apply"),
    ("report (render_text)", "gitops_hooks/report.py", "render_text"),
    ("whole pipeline (check_snapshot)", "gitops_hooks/pipeline/run.py", "check_snapshot"),
)


JSONSCHEMA_RS = "jsonschema-rs (compiled)"


def bucket(key: tuple[str, int, str]) -> str:
    """Who spent the time: a package, one of our modules, or the import machinery."""
    filename, _, name = key
    if filename == "~":
        for needle, label in (("_yaml.", "yaml (libyaml C)"), ("jsonschema_rs", JSONSCHEMA_RS),
                              ("validator_for", JSONSCHEMA_RS), ("is_valid", JSONSCHEMA_RS),
                              ("iter_errors", JSONSCHEMA_RS), ("yaml_rs", "yaml-rs (compiled)"),
                              ("pygit2", "pygit2 (libgit2)"), ("marshal", "imports"), ("_imp.", "imports"),
                              ("builtins.exec", "imports"), ("_json", "json"), ("posix", "os / subprocess"),
                              ("select", "os / subprocess"), ("_io.", "file io"), ("re.Pattern", "re")):
            if needle in name:
                return label
        return "builtins (other)"
    if filename.startswith("<frozen"):
        return "imports"
    path = filename.replace("\\", "/")
    if "/gitops_hooks/" in path:
        return "gitops_hooks/" + path.split("/gitops_hooks/", 1)[1]
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    return "stdlib " + Path(path).name


def print_profile(path: Path, top: int = 25) -> None:
    import pstats

    stats = pstats.Stats(str(path))
    raw = stats.stats  # type: ignore[attr-defined]
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"\n== profile {path.name}: {total:.3f} s under cProfile (cProfile slows Python code ~1.5-2x; "
          "one process: the pipeline's workers are turned off)")
    print("-- own time by package / module")
    own: dict[str, float] = {}
    for key, (_, _, tt, _, _) in raw.items():
        own[bucket(key)] = own.get(bucket(key), 0.0) + tt
    for name, tt in sorted(own.items(), key=lambda x: -x[1])[:top]:
        print(f"{tt:8.3f} s {100 * tt / total:5.1f}%  {name}")
    print("-- phases (cumulative time of the function doing it)")
    for label, suffix, fname in PHASES:
        ct = _cum(raw, suffix, fname)
        print(f"{ct:8.3f} s {100 * ct / total:5.1f}%  {label}" if ct else f"       -           {label}")
    print("   (libyaml composing runs inside PyYAML's Cython parser, which cProfile cannot see: it is own time "
          "of the function that drives the parser)")
    print("-- inclusive time per gitops_hooks module (calls into it from other modules; nested ones overlap)")
    for name, ct in sorted(entered(raw).items(), key=lambda x: -x[1])[:top]:
        print(f"{ct:8.3f} s {100 * ct / total:5.1f}%  {name}")
    print("-- top functions by own time")
    for key, (_, nc, tt, ct, _) in sorted(raw.items(), key=lambda x: -x[1][2])[:top]:
        print(f"{tt:8.3f} s own {ct:8.3f} s cum {nc:8d} calls  {_where(key)}")


RawStats = dict[tuple[str, int, str], tuple[int, int, float, float, object]]


def _cum(raw: RawStats, suffix: str, name: str) -> float:
    return sum(v[3] for k, v in raw.items() if k[0].endswith(suffix) and k[2] == name)


def entered(raw: RawStats) -> dict[str, float]:
    """Inclusive time of each gitops_hooks module: calls into it from any other module.

    Nested modules count in each (documents/ includes the yaml calls it makes; checks/schema.py includes
    schemas.py); a module's own recursion is not counted twice.
    """
    out: dict[str, float] = {}
    for key, value in raw.items():
        module = bucket(key)
        if not module.startswith("gitops_hooks/"):
            continue
        callers = value[4]
        assert isinstance(callers, dict)
        edge = sum(v[3] for c, v in callers.items() if bucket(c) != module)
        out[module] = out.get(module, 0.0) + edge
    return out


def _where(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    if filename == "~":
        return name
    short = filename.split("site-packages/")[-1]
    if "/gitops_hooks/" in short:
        short = "gitops_hooks/" + short.split("/gitops_hooks/", 1)[1]
    return f"{short}:{line}({name})"


def import_times(module: str, top: int) -> list[str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                          capture_output=True, text=True, check=False, cwd="/")  # cwd: not the checkout
    if proc.returncode != 0:
        raise BenchError(f"import {module} failed: {proc.stderr.strip().splitlines()[-1]}")
    rows = list(_importtime_rows(proc.stderr))
    lines = [f"import {module}: {sum(s for s, _, _ in rows) / 1e6:.3f} s in {len(rows)} modules "
             f"(python -X importtime); top {top} by cumulative time:"]
    for self_us, cum_us, name in sorted(rows, key=lambda r: -r[1])[:top]:
        lines.append(f"{cum_us / 1000:8.1f} ms cum {self_us / 1000:8.1f} ms self  {name}")
    return lines


def _importtime_rows(text: str) -> Iterator[tuple[int, int, str]]:
    for line in text.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line[len("import time:"):].split("|")
        if len(parts) == 3:
            yield int(parts[0]), int(parts[1]), parts[2].rstrip()


# ---------------------------------------------------------------------------- command line

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Time the gitops-hooks gate on a corpus (see the docstring).")
    p.add_argument("--corpus", choices=("kube-prometheus", "generated"), default="kube-prometheus")
    p.add_argument("--objects", type=int, default=10_000, help="objects of the generated corpus (10000)")
    p.add_argument("--runs", type=int, default=5, help="runs per figure; the median is printed (default 5)")
    p.add_argument("--only", default=",".join(FIGURES), help=f"comma-separated subset of {','.join(FIGURES)}")
    p.add_argument("--shared", type=Path, default=SHARED,
                   help=f"the shared folder: corpus, tools/kubeconform (default {SHARED})")
    p.add_argument("--workdir", type=Path, help="keep the repositories here instead of a temporary folder")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="also profile: cold-push and validate-cold run once under cProfile, one-file and "
                        "readme get one extra profiled push after two timed ones; "
                        "write DIR/<corpus>-<figure>.prof and print where the time goes")
    p.add_argument("--code", metavar="REV",
                   help="measure commit REV of the checkout (exported to the work folder), not the live tree")
    p.add_argument("--show-profile", type=Path, metavar="FILE", help="print the summary of a saved .prof file")
    p.add_argument("--import-time", action="store_true", help="print the slowest imports of the hook path")
    p.add_argument("--module", default="gitops_hooks.prereceive", help="module for --import-time")
    p.add_argument("--top", type=int, default=25, help="rows for --import-time and --profile")
    args = p.parse_args(argv)
    args.only = [f.strip() for f in args.only.split(",") if f.strip()]
    unknown = set(args.only) - set(FIGURES)
    if unknown:
        p.error(f"--only: unknown figure(s) {', '.join(sorted(unknown))}; choose from {', '.join(FIGURES)}")
    if args.runs < 1 or args.objects < 1:
        p.error("--runs and --objects must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.show_profile is not None:
        print_profile(args.show_profile, args.top)
        return 0
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gitops-bench-"))
    try:
        work.mkdir(parents=True, exist_ok=True)
        if args.workdir is not None and any(work.iterdir()):
            raise BenchError(f"--workdir {work} is not empty")
        run(args, work)
    except BenchError as exc:
        print(f"bench_push: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def run(args: argparse.Namespace, work: Path) -> None:
    os.environ["XDG_CACHE_HOME"] = str(work / "xdg-cache")  # never the user's own cache
    if args.code:
        sha = export_code(args.code, work / "code")
        os.environ["GITOPS_BENCH_COMMIT"] = sha
        _log(f"measuring commit {sha}")
    _log(code_description())
    if args.import_time:
        print("\n".join(import_times(args.module, args.top)))
        return
    if not Path(EXE).exists():
        raise BenchError(f"no gitops-hooks executable beside {sys.executable}")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        args.runs = min(args.runs, 2)  # warm pushes: two timed runs, then one under cProfile
    runtime = work / "run"  # this run's own gate server, started by the first push, stopped at the end
    runtime.mkdir(mode=0o700, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    _log(f"load average before: {_load()}")
    print("$ python bench/bench_push.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]) + f"  # {_stamp()}",
          flush=True)
    try:
        run_bench(args.corpus, args.objects, args.runs, args.only, work, args.profile, args.shared)
    finally:
        stop_gate_servers()
    _log(f"load average after: {_load()} (the cores are shared: compare figures taken at like load)")


def _stamp() -> str:
    """The measured commit (and whether the checkout has changes), the date, the machine's cores."""
    import time

    pythonpath = os.environ.get("PYTHONPATH", "")
    sha = git("rev-parse", "--short", "HEAD", cwd=CHECKOUT, check=False).stdout.strip()
    if pythonpath:  # an export (--code): its commit was logged; name it again
        sha = os.environ.get("GITOPS_BENCH_COMMIT", sha)[:7]
    elif git("status", "--porcelain", "--", "gitops_hooks", "hooks", cwd=CHECKOUT, check=False).stdout.strip():
        sha += " plus uncommitted changes"
    return f"commit {sha}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores; " + _calibration()


def _calibration() -> str:
    """How fast this (virtual) machine runs Python right now: its speed moves by half between minutes
    without showing in the load average, so compare figures taken with like calibrations."""
    import time

    start = time.perf_counter()
    x = 0
    for i in range(10_000_000):
        x += i
    return f"a 10-million-step Python loop took {time.perf_counter() - start:.2f} s"


if __name__ == "__main__":
    sys.exit(main())
