"""Many clients pushing to one guarded bare repository at once: does every push get the right answer?

    python bench/stress.py                         # 20 clients, 30 s
    python bench/stress.py --clients 8 --seconds 10 --json /tmp/stress.json

Each client has its own clone and loops until the time is up: it commits a change that is valid or not (it
knows which, by construction) and pushes it either to its own branch (force push) or to one shared branch
(fetch, commit on top, push: clients race for it). A thin wrapper in front of the installed pre-receive hook
records when each hook ran, so the script reports hook times and how many hooks ran at once (a global lock
held across validation would show as 1).

Afterwards every accepted ref's tip and every refused commit are validated again with
`gitops-hooks validate --rev` under the server's exported policy, and the result cache is checked with
`PRAGMA integrity_check`. Prints pushes per second, p50/p95 hook and push times and every wrong answer;
exits 1 if there was any.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

EXE = str(Path(sys.executable).parent / "gitops-hooks")
GIT_ENV = {"GIT_AUTHOR_NAME": "Stress", "GIT_AUTHOR_EMAIL": "stress@example.com", "GIT_COMMITTER_NAME": "Stress",
           "GIT_COMMITTER_EMAIL": "stress@example.com", "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}

DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: web-{client}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: web
          image: nginx:1.27
"""
CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: '{value}'\n"

# Ways to break a change, each one a finding at error level.
BREAKS = {
    "quoted-number": lambda text: text.replace("replicas: ", "replicas: '").replace("\n  selector", "'\n  selector"),
    "unknown-field": lambda text: text.replace("  replicas:", "  replicaz: 1\n  replicas:"),
    "duplicate-key": lambda text: text.replace("  replicas:", "  paused: false\n  paused: true\n  replicas:"),
    "broken-yaml": lambda text: text.replace("spec:\n", "spec:\n  - [\n", 1),
    "no-name": lambda text: text.replace("  name: web-", "  labels: {x: y}\n  generateName: web-"),
}

WRAPPER = """#!/bin/sh
s=$(date +%s%N)
{real}
rc=$?
e=$(date +%s%N)
echo "$s $e $rc" >> {log}
exit $rc
"""


def git(*args: str, cwd: Path | None = None, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **GIT_ENV, "HOME": str(cwd or Path.cwd())}
    env.pop("GIT_DIR", None)
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env, check=False, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc


@dataclass
class PushRecord:
    client: int
    ref: str
    commit: str
    valid: bool
    broken_by: str
    outcome: str  # accepted, hook-refused, race-lost, or indefinite
    verdict: str  # what the hook said: accepted, refused, or none
    seconds: float
    detail: str = ""


def classify(rc: int, output: str) -> tuple[str, str]:
    verdict = ("accepted" if "gitops-hooks: accepted" in output
               else "refused" if "gitops-hooks: push refused" in output else "none")
    if rc == 0:
        return "accepted", verdict
    if "pre-receive hook declined" in output:
        return "hook-refused", verdict
    if any(s in output for s in ("[rejected]", "non-fast-forward", "fetch first", "failed to update ref",
                                 "cannot lock ref", "incorrect old value", "stale info", "failed to lock")):
        return "race-lost", verdict
    return "indefinite", verdict


class Client:
    def __init__(self, number: int, bare: Path, root: Path, seed: int) -> None:
        self.number = number
        self.path = root / f"client-{number:02d}"
        self.rnd = random.Random(seed * 1000 + number)
        git("clone", "--quiet", str(bare), str(self.path))
        git("config", "user.name", "Stress", cwd=self.path)
        git("config", "user.email", "stress@example.com", cwd=self.path)
        self.counter = 0

    def change(self, shared: bool) -> tuple[str, bool, str]:
        """Commit a change on top of HEAD: (commit, valid, how it was broken)."""
        self.counter += 1
        folder = self.path / ("shared" if shared else f"own-{self.number}")
        folder.mkdir(exist_ok=True)
        text = DEPLOYMENT.format(client=self.number, replicas=1 + self.counter % 5)
        broken_by = self.rnd.choice(sorted(BREAKS)) if self.rnd.random() < 0.4 else ""
        if broken_by:
            text = BREAKS[broken_by](text)
        # Only this client's own files change: a broken file of one client never lands in another's commit
        # unless it was accepted (and then it was valid).
        (folder / f"web-{self.number}.yaml").write_text(text)
        name = f"cm-{self.number}-{self.counter % 7}"
        value = f"{self.number}.{self.counter}.{self.rnd.random()}"
        (folder / f"{name}.yaml").write_text(CONFIGMAP.format(name=name, value=value))
        git("add", "-A", cwd=self.path)
        git("commit", "--quiet", "-m", f"client {self.number} change {self.counter}", cwd=self.path)
        return git("rev-parse", "HEAD", cwd=self.path).stdout.strip(), not broken_by, broken_by

    def once(self) -> PushRecord:
        shared = self.rnd.random() < 0.5
        if shared:
            ref = "refs/heads/shared"
            git("fetch", "--quiet", "origin", "shared", cwd=self.path)
            git("reset", "--quiet", "--hard", "FETCH_HEAD", cwd=self.path)
            spec = f"HEAD:{ref}"
        else:
            ref = f"refs/heads/client-{self.number}"
            git("reset", "--quiet", "--hard", "origin/main", cwd=self.path)
            spec = f"+HEAD:{ref}"
        commit, valid, broken_by = self.change(shared)
        started = time.monotonic()
        try:
            proc = git("push", "--porcelain", "origin", spec, cwd=self.path, check=False, timeout=300)
            rc, output = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired:
            rc, output = -1, "push timed out after 300 s"
        seconds = time.monotonic() - started
        outcome, verdict = classify(rc, output)
        record = PushRecord(self.number, ref, commit, valid, broken_by, outcome, verdict, seconds)
        if outcome == "indefinite":
            record.detail = output[-500:]
        return record


def wrong_answers(records: list[PushRecord]) -> list[str]:
    out = []
    for r in records:
        where = f"client {r.client} {r.ref} {r.commit[:12]} ({'valid' if r.valid else 'broken: ' + r.broken_by})"
        if r.outcome == "indefinite":
            out.append(f"{where}: no definite answer: {r.detail!r}")
        elif r.outcome == "accepted" and (not r.valid or r.verdict != "accepted"):
            out.append(f"{where}: accepted (hook said {r.verdict})")
        elif r.outcome == "hook-refused" and (r.valid or r.verdict != "refused"):
            out.append(f"{where}: refused by the hook (hook said {r.verdict})")
        elif r.verdict == "accepted" and not r.valid or r.verdict == "refused" and r.valid:
            out.append(f"{where}: the hook said {r.verdict}")
    return out


def revalidate(bare: Path, work: Path, records: list[PushRecord], clients: dict[int, Client], limit: int) -> list[str]:
    """Validate again, outside any hook: every accepted ref's tip (in the server) and refused commits (in their clones)."""
    policy = work / "policy.yaml"
    policy.write_text(subprocess.run([EXE, "policy", "export", str(bare)], capture_output=True, text=True, check=True).stdout)
    jobs: list[tuple[Path, str, bool, str]] = []
    refs = git("for-each-ref", "--format=%(refname) %(objectname)", "refs/heads", cwd=bare).stdout.split("\n")
    for line in filter(None, refs):
        ref, tip = line.split()
        jobs.append((bare, tip, True, f"server {ref}"))
    refused = [r for r in records if r.outcome == "hook-refused"]
    random.Random(0).shuffle(refused)
    for r in refused[:limit]:
        jobs.append((clients[r.client].path, r.commit, False, f"refused push client {r.client} {r.ref}"))

    def check(job: tuple[Path, str, bool, str]) -> str | None:
        cwd, commit, want_ok, label = job
        proc = subprocess.run([EXE, "validate", "--rev", commit, "--policy", str(policy)], cwd=cwd,
                              capture_output=True, text=True, check=False)
        ok = proc.returncode == 0
        if proc.returncode not in (0, 1) or ok != want_ok:
            return f"{label} {commit[:12]}: validate --rev exit {proc.returncode}, expected {'0' if want_ok else '1'}"
        return None

    with ThreadPoolExecutor(max_workers=2) as pool:
        problems = [p for p in pool.map(check, jobs) if p]
    print(f"re-validated {len(jobs)} commits ({len(jobs) - len(refused[:limit])} accepted tips, "
          f"{len(refused[:limit])} refused pushes)")
    return problems


def cache_problems(bare: Path) -> list[str]:
    db = bare / "gitops-hooks" / "cache" / "cache.sqlite"
    if not db.exists():
        return ["the result cache was never written"]
    with sqlite3.connect(db) as conn:
        result = conn.execute("PRAGMA integrity_check").fetchall()
        rows = conn.execute("SELECT count(*) FROM kv").fetchone()[0]
    print(f"cache: {rows} entries, integrity_check {result[0][0]}")
    return [] if result == [("ok",)] else [f"cache integrity_check: {result}"]


def hook_spans(log: Path) -> tuple[list[float], int]:
    spans = []
    events = []
    for line in log.read_text().splitlines():
        s, e, _ = line.split()
        spans.append((int(e) - int(s)) / 1e9)
        events += [(int(s), 1), (int(e), -1)]
    running = peak = 0
    for _, delta in sorted(events):
        running += delta
        peak = max(peak, running)
    return spans, peak


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def setup(work: Path) -> tuple[Path, Path]:
    bare = work / "server.git"
    subprocess.run([EXE, "install", str(bare)], capture_output=True, text=True, check=True)
    hook = bare / "hooks" / "pre-receive"
    real = bare / "hooks" / "pre-receive.timed"
    hook.rename(real)
    log = work / "hooks.log"
    hook.write_text(WRAPPER.format(real=real, log=log))
    hook.chmod(0o755)
    seed = work / "seed"
    git("init", "--quiet", "--initial-branch=main", str(seed))
    (seed / "base").mkdir()
    (seed / "base" / "web.yaml").write_text(DEPLOYMENT.format(client="base", replicas=2))
    git("add", "-A", cwd=seed)
    git("commit", "--quiet", "-m", "base", cwd=seed)
    git("push", "--quiet", str(bare), "HEAD:refs/heads/main", "HEAD:refs/heads/shared", cwd=seed)
    return bare, log


def run(clients: int, seconds: float, work: Path, seed: int, verify_max: int) -> dict[str, object]:
    bare, log = setup(work)
    pool = {n: Client(n, bare, work, seed) for n in range(clients)}
    records: list[PushRecord] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    started = time.monotonic()

    def loop(client: Client) -> None:
        while time.monotonic() < deadline:
            record = client.once()
            with lock:
                records.append(record)

    threads = [threading.Thread(target=loop, args=(c,)) for c in pool.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    spans, peak = hook_spans(log)
    outcomes = Counter(r.outcome for r in records)
    wrong = wrong_answers(records)
    wrong += revalidate(bare, work, records, pool, verify_max)
    wrong += cache_problems(bare)
    fsck = git("fsck", "--no-dangling", "--no-progress", cwd=bare, check=False)
    if fsck.returncode != 0:
        wrong.append(f"git fsck: {fsck.stderr.strip()[:300]}")
    summary = {
        "clients": clients, "seconds": round(elapsed, 1), "pushes": len(records),
        "pushes_per_second": round(len(records) / elapsed, 2),
        "outcomes": dict(outcomes),
        "valid_pushes": sum(r.valid for r in records),
        "hooks_run": len(spans),
        "hook_p50_s": round(percentile(spans, 50), 3), "hook_p95_s": round(percentile(spans, 95), 3),
        "push_p50_s": round(percentile([r.seconds for r in records], 50), 3),
        "push_p95_s": round(percentile([r.seconds for r in records], 95), 3),
        "max_hooks_at_once": peak,
        "wrong_answers": wrong,
    }
    print(f"{clients} clients, {elapsed:.1f} s: {len(records)} pushes ({summary['pushes_per_second']}/s), "
          f"{summary['valid_pushes']} valid; outcomes {dict(outcomes)}")
    print(f"hook time p50 {summary['hook_p50_s']} s, p95 {summary['hook_p95_s']} s over {len(spans)} hooks; "
          f"push time p50 {summary['push_p50_s']} s, p95 {summary['push_p95_s']} s; "
          f"up to {peak} hooks ran at once (mean {statistics.fmean(spans) if spans else 0:.3f} s)")
    print(f"wrong answers: {len(wrong)}")
    for w in wrong:
        print(f"  WRONG: {w}")
    summary["records"] = [asdict(r) for r in records]
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--verify-max", type=int, default=300, help="refused pushes to validate again (sampled)")
    ap.add_argument("--workdir", type=Path, help="keep the repositories here (default: a temporary folder, removed)")
    ap.add_argument("--json", type=Path, help="write the summary and every push record here")
    args = ap.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gitops-hooks-stress-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        summary = run(args.clients, args.seconds, work, args.seed, args.verify_max)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 1 if summary["wrong_answers"] else 0


if __name__ == "__main__":
    sys.exit(main())
