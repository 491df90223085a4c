"""History checks: every blob that a new commit of the push adds or changes, not only the final tree.

A credential added in one commit and removed in the next is invisible in the pushed tip, yet stays in
the repository's history. Blobs that are also in the tip are skipped: the tree checks report those with
their place in the final tree.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pygit2

from .checks import HISTORY_CHECKS, CheckContext
from .config import Policy, matches
from .findings import Finding
from .gitrepo import Entry, new_commits


def _changed_blobs(repo: pygit2.Repository, commit: pygit2.Commit) -> Iterator[tuple[str, int, str]]:
    """(path, mode, blob id) of files this commit adds or changes relative to every parent."""
    if not commit.parents:
        diffs = [commit.tree.diff_to_tree(swap=True)]
    else:
        diffs = [parent.tree.diff_to_tree(commit.tree) for parent in commit.parents]
    per_parent = []
    for diff in diffs:
        found = set()
        for delta in diff.deltas:
            new = delta.new_file
            if delta.status_char() in ("A", "M", "T") and new.mode in (0o100644, 0o100755):
                found.add((new.path, new.mode, str(new.id)))
        per_parent.append(found)
    yield from sorted(set.intersection(*per_parent)) if per_parent else ()


def check_history(
    repo: Any, new: str, tip_oids: set[str], policy: Policy, ctx: CheckContext
) -> list[Finding]:
    """Findings of the history checks on the blobs the push's new commits add (tip blobs excepted)."""
    if not HISTORY_CHECKS:
        return []
    max_bytes = int(policy.limits["max_file_bytes"])
    seen: set[str] = set(tip_oids)
    findings: list[Finding] = []
    for commit_id in new_commits(repo, new):  # all of them: limits.timeout_seconds bounds the work
        commit = repo[commit_id]
        for path, mode, oid in _changed_blobs(repo, commit):
            if oid in seen or matches(path, policy.path_exclude):
                continue
            seen.add(oid)
            size = repo.odb.read_header(oid)[1]
            if size > max_bytes:
                continue
            entry = Entry(path, mode, oid, size)
            data = bytes(repo[oid].data)
            for check in HISTORY_CHECKS:
                findings.extend(check(entry, data, commit_id, ctx))
    return Policy(policy.config).apply(findings)
