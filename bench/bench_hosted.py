"""Webhook-service benchmark: from a delivery received to the commit status posted.

    python bench/bench_hosted.py                      # all three figures
    python bench/bench_hosted.py --only warm --runs 5
    python bench/bench_hosted.py --only cold
    python bench/bench_hosted.py --only many --repos 10 --deliveries 50

`gitops-hooks serve` runs as a real process (one worker, `workers: 2` for `many`), with a plain bare
repository as the remote (`file://`) and the loopback GitHub double of tests/doubles (token
credentials: a commit status plus the summary comment). The clock starts when the signed delivery is
sent and stops when the double has answered the status POST for the head commit.

Figures (one line each):
  warm-one-file  a pull request that changes one manifest of the generated corpus (bench/make_corpus.py,
                 --objects, 10,000 by default), after one unmeasured request has warmed the mirror, the
                 result cache and the worker's memory; median and max over --runs requests
  cold-first     the first event of a new service (new state folder: no mirror, no cache, a worker that
                 has loaded nothing) for a pull request on kube-prometheus from ../shared/corpus
  many           --deliveries requests spread over --repos repositories (small ones), sent back to back:
                 the time to answer them all, the time until every status is posted, deliveries per
                 second, and how many statuses are missing (must be 0)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from doubles.github import Account, GitHubDouble  # noqa: E402
from hostedkit import Remote, Service, encode, free_port, pull_request, write_config  # noqa: E402

TOKEN = "ghp_bench"
CORPUS = ROOT.parent / "shared" / "corpus"


def status_time(double: GitHubDouble, sha: str, timeout: float = 600) -> float:
    def found() -> list[float]:
        return [c.at for c in double.requests if c.method == "POST" and c.path.endswith(f"/statuses/{sha}")]
    return double.wait_for(found, timeout)[0]


def request(svc: Service, double: GitHubDouble, remote: Remote, base: str, rel: str, number: int) -> float:
    remote.checkout(f"pr{number}", base)
    path = remote.work / rel
    path.write_text(path.read_text() + f"\n# edited by request {number}\n")
    head = remote.commit(f"request {number}")
    remote.push(f"refs/pull/{number}/head")
    started = time.monotonic()
    status, _ = svc.deliver("pull_request", encode(pull_request(head, base, number=number)))
    assert status == 202, status
    return status_time(double, head) - started


def manifests(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.yaml") if ".git" not in p.parts)


def setup(work: Path, source: Path, double: GitHubDouble) -> tuple[Remote, Service, str]:
    remote = Remote(work)
    shutil.copytree(source, remote.work, dirs_exist_ok=True)
    base = remote.commit("corpus")
    remote.push("refs/heads/master")
    svc = Service(write_config(work, remote.url, double.url, token=TOKEN)).start()
    return remote, svc, base


def warm(work: Path, objects: int, runs: int, double: GitHubDouble) -> None:
    corpus = work / "corpus"
    subprocess.run([sys.executable, str(ROOT / "bench" / "make_corpus.py"), str(corpus), "--objects", str(objects)],
                   check=True, capture_output=True)
    remote, svc, base = setup(work, corpus, double)
    try:
        files = manifests(remote.work)
        first = request(svc, double, remote, base, files[0], 1)
        times = [request(svc, double, remote, base, files[(i * 37) % len(files)], i) for i in range(2, runs + 2)]
    finally:
        svc.stop()
    print(f"warm-one-file  {objects} objects, {len(files)} files: median {statistics.median(times):.2f} s, "
          f"max {max(times):.2f} s over {runs} requests (the unmeasured warm-up took {first:.2f} s)")


def cold(work: Path, double: GitHubDouble) -> None:
    source = CORPUS / "kube-prometheus"
    remote, svc, base = setup(work, source, double)
    try:
        files = manifests(remote.work)
        seconds = request(svc, double, remote, base, files[0], 1)
    finally:
        svc.stop()
    print(f"cold-first     kube-prometheus ({len(files)} files), new state folder: {seconds:.2f} s")


def many(work: Path, repos: int, deliveries: int, double: GitHubDouble) -> None:
    import yaml

    remotes, bases = [], []
    entries = []
    for i in range(repos):
        r = Remote(work / f"r{i}")
        r.write("apps/web.yaml", (ROOT / "deploy" / "deployment.yaml").read_text())
        r.write("apps/service.yaml", (ROOT / "deploy" / "service.yaml").read_text())
        bases.append(r.commit("apps"))
        r.push("refs/heads/master")
        remotes.append(r)
        entries.append({"platform": "github", "repository": f"bench/repo{i}", "clone_url": r.url,
                        "api_url": double.url, "webhook_secret_file": "secret", "token_file": "token"})
    config = write_config(work, remotes[0].url, double.url, token=TOKEN)
    data = yaml.safe_load(config.read_text())
    data.update(repositories=entries, workers=2, listen=f"127.0.0.1:{free_port()}")
    config.write_text(yaml.safe_dump(data))
    svc = Service(config).start()
    bodies, heads = [], []
    for n in range(deliveries):
        i = n % repos
        r = remotes[i]
        r.checkout(f"pr{n}", bases[i])
        r.write("apps/web.yaml", (r.work / "apps/web.yaml").read_text() + f"# {n}\n")
        head = r.commit(f"request {n}")
        r.push(f"refs/pull/{n + 1}/head")
        payload = pull_request(head, bases[i], number=n + 1)
        payload["repository"]["full_name"] = f"bench/repo{i}"
        bodies.append(encode(payload))
        heads.append(head)
    try:
        started = time.monotonic()
        answers = [svc.deliver("pull_request", b)[0] for b in bodies]
        answered = time.monotonic() - started
        try:
            last = max(status_time(double, h, 900) for h in heads) - started
        except AssertionError:
            last = float("nan")
        posted = {c.path.rsplit("/", 1)[1] for c in double.requests if "/statuses/" in c.path and c.status == 201}
    finally:
        svc.stop()
    missing = len(set(heads) - posted)
    print(f"many           {deliveries} deliveries to {repos} repositories (2 workers): all answered in "
          f"{answered:.2f} s ({sorted(set(answers))}), every status posted after {last:.2f} s "
          f"({deliveries / last:.1f} deliveries/s), missing: {missing}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["warm", "cold", "many"])
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--repos", type=int, default=10)
    parser.add_argument("--deliveries", type=int, default=50)
    args = parser.parse_args()
    print(f"$ python bench/bench_hosted.py {' '.join(sys.argv[1:])}".rstrip())
    double = GitHubDouble()
    double.tokens[TOKEN] = Account("gitops-bot", 7)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-hosted-") as tmp:
            work = Path(tmp)
            if args.only in (None, "warm"):
                warm(work / "warm", args.objects, args.runs, double)
            if args.only in (None, "cold"):
                cold(work / "cold", double)
            if args.only in (None, "many"):
                many(work / "many", args.repos, args.deliveries, double)
    finally:
        double.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
