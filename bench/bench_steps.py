"""Where a cold run's per-file work goes: YAML reading and each check, timed one by one in one process.

    python bench/bench_steps.py /tmp/corpus-10000            # a folder of manifests (make_corpus.py)
    python bench/bench_steps.py ../shared/corpus/kube-prometheus/manifests

Reads every file of the folder, parses each (documents.parse: yaml-rs or the careful path), then runs
every parsed-file, document and file check on it, twice (the second round is printed: compiled
validators are warm, as in the gate server). Prints the seconds of each step, biggest first. No cache,
no git, no workers: this is the work a cold push spreads over its forked workers, as CPU time.
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path

from gitops_hooks import config, documents, pipeline
from gitops_hooks.checks import FILE_CHECKS, PARSED_CHECKS, document_checks
from gitops_hooks.gitrepo import FolderTree


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--top", type=int, default=15)
    args = p.parse_args()
    policy = config.Policy(config.for_ref(config.checked({}, "bench"), "refs/heads/main"), ())
    ctx = pipeline.make_context(policy, "refs/heads/main")
    tree = FolderTree(args.folder)
    entries = tree.entries()
    data = {e.path: tree.read(e) for e in entries}
    spent: collections.Counter[str] = collections.Counter()
    for _ in range(2):
        spent.clear()
        for e in entries:
            t = time.perf_counter()
            parsed = documents.parse(e.path, data[e.path])
            spent["YAML (documents.parse)"] += time.perf_counter() - t
            for pcheck in PARSED_CHECKS:
                t = time.perf_counter()
                list(pcheck(parsed, ctx))
                spent[f"parsed-file check {pcheck.__module__.rsplit('.', 1)[-1]}.{pcheck.__name__}"] += time.perf_counter() - t
            for doc in parsed.documents:
                if not doc.is_object:
                    continue
                for dcheck in document_checks(doc.kind, ctx):  # the checks the pipeline calls for this kind
                    t = time.perf_counter()
                    list(dcheck(doc, ctx))
                    spent[f"document check {dcheck.__module__.rsplit('.', 1)[-1]}.{dcheck.__name__}"] += time.perf_counter() - t
            for fcheck in FILE_CHECKS:
                t = time.perf_counter()
                list(fcheck(e, data[e.path], ctx))
                spent[f"file check {fcheck.__module__.rsplit('.', 1)[-1]}.{fcheck.__name__}"] += time.perf_counter() - t
    total = sum(spent.values())
    print(f"{args.folder}: {len(entries)} files, {total:.3f} s of per-file work")
    for step, seconds in spent.most_common(args.top):
        print(f"  {seconds:7.3f} s  {100 * seconds / total:4.1f}%  {step}")


if __name__ == "__main__":
    main()
