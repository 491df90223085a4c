"""What the service does with one queued event: a pre-receive run that cannot refuse, so it reports.

A request: the head commit is judged exactly as a `git push` of it to the target branch would be
(`prereceive.judge`: the branch's `ref_policies`, transition rules and admission UPDATE against the
branch's tree, the history scan of the request's new commits), then reported as a check run or commit
status with every finding as an annotation, and summed up in one comment per request, edited in place.
For a request from the same repository (or any, with `plans: {forks: true}`) the comment also carries
the plan: a server-side dry run of the head commit for each environment that follows the target branch.

A push to a checked or deployed ref: the same judgement first. A failing commit is not applied: its
status says so, and the mirror's branch (what reconciliation applies) stays at its last good commit.
A passing commit moves the mirror's branch and is reconciled exactly as post-receive does
(`reconcile.run.request` and `drive`: locks, pending records, ordered apply, prune, health, audit note),
reported as deployment statuses; the audit notes are pushed to the remote's `refs/notes/gitops` when the
credentials allow.

A round (queued by the service every `reconcile_every`): `reconcile.rounds.run_round` on the mirror, for
the environments whose branch the mirror has. It applies the mirror's branches, the last commits judged
good; a commit pushed since is the push job's to judge. A round posts nothing on the platform.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import config as configmod
from ..findings import Finding, Severity, rule
from ..gitrepo import GitTree, RefUpdate, open_repository
from ..pipeline import Result
from ..prereceive import judge
from .config import Repository
from .mirror import ZERO, Fetched, Mirror
from .model import Annotation, Event, Report, Reporter, State

MARKER = "<!-- gitops-hooks:summary -->"
COMMENT_LIMIT = 60000  # below every platform's own limit (GitHub 65,536; Bitbucket, GitLab, Gitea larger)
ANNOTATION_LEVEL = {Severity.ERROR: "failure", Severity.WARNING: "warning", Severity.INFO: "notice"}


class ReconcileFailed(Exception):
    """An environment could not be reconciled; its pending record stays and the job is retried."""


@dataclass(frozen=True)
class Outcome:
    result: str  # passed, failed, skipped, applied, not-applied, reconcile-failed, not-checked
    sha: str = ""
    detail: str = ""
    phases: str = ""  # seconds per phase, for the job's log line: fetch=0.05 check=0.40 report=0.08


class Clock:
    def __init__(self) -> None:
        self.last = time.monotonic()
        self.parts: list[str] = []

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.parts.append(f"{name}={now - self.last:.2f}")
        self.last = now

    def text(self) -> str:
        return " ".join(self.parts)


# ---------------------------------------------------------------------------- the verdict

def counts(result: Result) -> str:
    e, w = result.errors, result.warnings
    return f"{e} error{'s' if e != 1 else ''}, {w} warning{'s' if w != 1 else ''}"


def to_annotations(findings: list[Finding]) -> tuple[Annotation, ...]:
    return tuple(Annotation(f.path, max(1, f.line), ANNOTATION_LEVEL[f.severity], f.rule,  # type: ignore[arg-type]
                            f.message + (f"\nhint: {f.hint}" if f.hint else ""), f.column)
                 for f in findings if f.severity >= Severity.INFO)


def explanations(findings: list[Finding]) -> str:
    out = []
    for rule_id in sorted({f.rule for f in findings if f.severity >= Severity.WARNING}):
        try:
            r = rule(rule_id)
        except KeyError:
            continue
        out.append(f"### {rule_id}\n\n{r.summary}\n\n{r.explanation}")
    return "\n\n".join(out)


def finding_line(f: Finding) -> str:
    return f"- `{f.path}:{f.line}:{f.column}` **{f.severity}** `{f.rule}` {f.message}"


def make_report(result: Result, sha: str, suffix: str = "") -> Report:
    state: State = "success" if result.ok else "failure"
    title = ("checks passed: " if result.ok else "checks failed: ") + counts(result) + suffix
    s = result.stats
    summary = (f"{title}\n\n{s.files} files, {s.manifests} manifests, {s.objects} objects checked "
               f"at `{sha[:12]}` ({s.seconds:.2f} s).")
    return Report(sha, state, title, summary, explanations(result.findings), to_annotations(result.findings))


def comment_body(event: Event, sha: str, result: Result | None, plan: list[str], limit: int = COMMENT_LIMIT) -> str:
    head = [MARKER]
    if result is None:
        head.append(f"**gitops-hooks**: `{sha[:12]}` is not checked ({event.base_ref} is not in refs.check).")
        return "\n".join(head)
    verdict = "passed" if result.ok else "failed"
    head.append(f"**gitops-hooks** checks {verdict} at `{sha[:12]}`: {counts(result)}.")
    lines = [finding_line(f) for f in sorted(result.findings)]
    tail = ["", *plan] if plan else []
    for shown in range(len(lines), -1, -1):
        more = len(lines) - shown
        extra = [f"- … and {more} more finding{'s' if more != 1 else ''} (every one is in the check's "
                 "annotations)"] if more else []
        body = "\n".join(head + ([""] if lines else []) + lines[:shown] + extra + tail)
        if len(body) <= limit:
            return body
    return "\n".join(head)[:limit]


# ---------------------------------------------------------------------------- the plan

def plan_lines(repo: Any, head: str, base_ref: str, server: dict[str, Any]) -> list[str]:
    """Markdown: the server-side dry run of `head` for each environment that follows `base_ref`."""
    from ..reconcile import backends, environments
    from ..reconcile.desired import desired_set
    from ..reconcile.kube import Kube, KubeError
    from ..reconcile.plan import diff_text

    out: list[str] = []
    for env in environments.for_ref(server, base_ref):
        out.append(f"**Plan for {env.name}** (server dry run of `{head[:12]}`, nothing changed):")
        dset = desired_set(GitTree(repo, head), env, server)
        if not dset.ok:
            out.append("- the desired state cannot be built: see the findings above")
            continue
        try:
            kube = Kube(env) if backends.needs_cluster(env) else None
        except KubeError as exc:
            out.append(f"- no plan: {exc.message}")
            continue
        lines: list[str] = []
        try:
            cs, applier = backends.run(kube, env, dset, lines.append, dry_run=True)
        finally:
            if kube is not None:
                kube.close()
        if cs.error:
            out.append(f"- no plan: {cs.error}")
            continue
        out.append(f"- would be: {cs.summary()}")
        out.extend(f"  - `{c.line()}`" + (f" in {c.namespace}" if c.namespace else "")
                   for c in cs.changes if c.action != "unchanged")
        diff = diff_text(applier)[0] if applier is not None else ""
        if diff:
            out.append(f"\n<details><summary>what changes in {env.name}</summary>\n\n```diff\n{diff}```\n</details>")
    return out


# ---------------------------------------------------------------------------- the jobs

def _judge(mirror: Mirror, fetched: Fetched, ref: str) -> tuple[Any, dict[str, Any], Result | None]:
    server = configmod.load_server_config(mirror.path)
    repo = open_repository(mirror.path)
    return repo, server, judge(repo, RefUpdate(fetched.base, fetched.head, ref), server, [])


def request_job(state_dir: Path, config: Repository, event: Event, reporter: Reporter) -> Outcome:
    clock = Clock()
    mirror = Mirror(state_dir, config, reporter.git_auth_header())
    mirror.ensure()
    fetched = mirror.fetch_request(event.head_ref, event.head_sha, event.base_ref)
    clock.lap("fetch")
    if fetched is None:
        return Outcome("skipped", event.head_sha, f"{event.head_ref} no longer has {event.head_sha[:12]}")
    repo, server, result = _judge(mirror, fetched, event.base_ref)
    clock.lap("check")
    plan: list[str] = []
    if result is not None and config.plans and (config.plan_forks or not event.from_fork):
        plan = plan_lines(repo, fetched.head, event.base_ref, server)
        clock.lap("plan")
    if result is None:
        report = Report(fetched.head, "success", f"not checked: {event.base_ref} is not in refs.check", "")
    else:
        report = make_report(result, fetched.head)
    reporter.report(event, report)
    clock.lap("status")
    reporter.comment(event, comment_body(event, fetched.head, result, plan))
    clock.lap("comment")
    return Outcome("not-checked" if result is None else ("passed" if result.ok else "failed"), fetched.head,
                   report.title, clock.text())


def push_job(state_dir: Path, config: Repository, event: Event, reporter: Reporter) -> Outcome:
    mirror = Mirror(state_dir, config, reporter.git_auth_header())
    mirror.ensure()
    fetched = mirror.fetch_push(event.ref, event.after)
    if fetched is None:
        return Outcome("skipped", event.after, f"{event.ref} no longer has {event.after[:12]}")
    repo, server, result = _judge(mirror, fetched, event.ref)
    if result is None:
        return Outcome("not-checked", fetched.head, f"{event.ref} is neither checked nor deployed")
    from ..reconcile import environments

    envs = environments.for_ref(server, event.ref)
    if not result.ok:
        stays = f"; {event.ref} stays at {fetched.base[:12]}" if fetched.base != ZERO else ""
        reporter.report(event, make_report(result, fetched.head, " (not applied)" if envs else ""))
        return Outcome("not-applied" if envs else "failed", fetched.head, counts(result) + stays)
    reporter.report(event, make_report(result, fetched.head))
    if fetched.base != fetched.head:
        mirror.advance(event.ref, fetched.head, fetched.base)
    if not envs:
        return Outcome("passed", fetched.head, counts(result))
    return _reconcile(mirror, server, envs, event, reporter, fetched.head)


def _reconcile(mirror: Mirror, server: dict[str, Any], envs: list[Any], event: Event, reporter: Reporter,
               head: str) -> Outcome:
    from ..reconcile.run import Options, drive, request

    who = f"{event.sender or 'unknown'} ({event.platform} webhook)"
    failed: list[str] = []
    lines: list[str] = []
    emit: Callable[[str], None] = lines.append
    for env in envs:
        reporter.deployment(event, env.name, "in_progress", f"applying {head[:12]} to {env.name}")
        request(mirror.path, env, head, who)
        outcomes = drive(mirror.path, server, env, emit, Options(who, wait=env.wait))
        last = next((o for o in reversed(outcomes) if o.result != "coalesced"), None)
        if last is None:  # another process holds the environment: it applies the newest commit
            failed.append(f"{env.name}: a reconcile is running elsewhere; this job reports after it")
            continue
        reporter.deployment(event, env.name, "failure" if last.result == "failed" else "success", last.summary)
        if last.result == "failed":
            failed.append(f"{env.name}: {last.summary}")
    notes = "audit notes pushed" if mirror.push_notes() else "audit notes kept in the mirror"
    if failed:
        raise ReconcileFailed("; ".join(failed)[:500])
    return Outcome("applied", head, f"{', '.join(e.name for e in envs)}; {notes}")


def round_job(state_dir: Path, config: Repository, emit: Callable[[str], None]) -> Outcome:
    """One reconciliation round of the repository's environments; one line each to `emit`."""
    from ..reconcile import environments
    from ..reconcile.rounds import run_round

    mirror = Mirror(state_dir, config)
    mirror.ensure()
    server = configmod.load_server_config(mirror.path)
    envs = environments.all_environments(server)
    ready = [e.name for e in envs if mirror.resolve(e.ref) is not None]
    if not ready:
        return Outcome("skipped", detail="no environment's branch has a judged commit yet" if envs
                       else "no environments")
    results = run_round(mirror.path, server, ready, emit)
    worst = next((r.result for r in results if r.result == "failed"), "")
    return Outcome("round-failed" if worst else "round",
                   detail=", ".join(f"{r.environment} {r.result}" for r in results))


def run(state_dir: Path, config: Repository, event: Event, reporter: Reporter) -> Outcome:
    if event.kind == "request":
        return request_job(state_dir, config, event, reporter)
    return push_job(state_dir, config, event, reporter)
