"""The GitHub reporter against the double: App tokens from a JWT, every annotation in batches of 50, the
summary comment found on a later page and edited, never another account's, size limits kept."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from doubles.github import Account, GitHubDouble
from hostedkit import REPO, app_key

from gitops_hooks.findings import Finding, Severity
from gitops_hooks.hosted.http import Http, HttpError
from gitops_hooks.hosted.jobs import MARKER, comment_body, make_report
from gitops_hooks.hosted.model import Credentials, Event, Report
from gitops_hooks.hosted.platforms.github import GitHubReporter
from gitops_hooks.pipeline import Result

SHA = "1" * 40
EVENT = Event("github", REPO, "request", "d", "opened", number=7, head_sha=SHA, base_ref="refs/heads/master")


@pytest.fixture
def double() -> Iterator[GitHubDouble]:
    d = GitHubDouble()
    yield d
    d.close()


def app_reporter(double: GitHubDouble) -> GitHubReporter:
    private, public = app_key()
    double.app_id, double.public_key, double.installation_id = 99, public, 5
    return GitHubReporter(REPO, Credentials(double.url, app_id="99", private_key=private, installation_id="5"),
                          Http(sleep=lambda s: None))


def findings(n: int) -> list[Finding]:
    return [Finding(f"apps/f{i:03}.yaml", i + 1, 3, "schema-invalid", Severity.ERROR, f"problem {i}") for i in range(n)]


def test_every_finding_becomes_an_annotation_fifty_per_request(double: GitHubDouble) -> None:
    reporter = app_reporter(double)
    reporter.report(EVENT, make_report(Result("x", findings(120)), SHA))
    (run,) = double.check_runs.values()
    assert run["conclusion"] == "failure" and len(run["annotations"]) == 120
    assert run["annotations"][119] == {"path": "apps/f119.yaml", "start_line": 120, "end_line": 120,
                                       "annotation_level": "failure", "title": "schema-invalid",
                                       "message": "problem 119", "start_column": 3, "end_column": 3}
    methods = [(c.method, c.path.rsplit("/", 1)[-1]) for c in double.requests if "check-runs" in c.path]
    assert methods == [("POST", "check-runs"), ("PATCH", str(run["id"])), ("PATCH", str(run["id"]))]
    assert double.errors == []
    assert sum(1 for c in double.requests if c.path.endswith("access_tokens")) == 1  # the token is reused


def test_the_comment_is_found_on_a_later_page_and_another_accounts_copy_is_left_alone(double: GitHubDouble) -> None:
    double.tokens["ghp_x"] = Account("gitops-bot", 7)
    reporter = GitHubReporter(REPO, Credentials(double.url, token="ghp_x"), Http(sleep=lambda s: None))
    for i in range(120):
        double.add_comment(REPO, 7, f"review {i}", "octocat")
    copied = double.add_comment(REPO, 7, f"{MARKER}\nquoted", "octocat")
    reporter.comment(EVENT, f"{MARKER}\nfirst")
    reporter.comment(EVENT, f"{MARKER}\nsecond")
    ours = [c for c in double.comments_on(REPO, 7) if c["user"]["login"] == "gitops-bot"]
    assert len(ours) == 1 and ours[0]["body"].endswith("second") and ours[0]["edits"] == 1
    assert double.comments[copied]["body"].endswith("quoted") and double.errors == []
    assert any(c.query.get("page") == "2" for c in double.requests)


def test_a_long_report_is_cut_to_the_documented_limits_with_a_count(double: GitHubDouble) -> None:
    body = comment_body(EVENT, SHA, Result("x", findings(3000)), ["**Plan for prod**: unchanged"])
    assert len(body) <= 60000 and body.startswith(MARKER)
    assert "more findings (every one is in the check's annotations)" in body and body.endswith("unchanged")
    double.tokens["ghp_x"] = Account("gitops-bot", 7)
    reporter = GitHubReporter(REPO, Credentials(double.url, token="ghp_x"), Http(sleep=lambda s: None))
    reporter.report(EVENT, Report(SHA, "failure", "x" * 500, ""))
    assert len(double.statuses[0]["description"]) == 140 and double.errors == []


def test_a_report_the_platform_refuses_raises_so_the_job_stays_queued(double: GitHubDouble) -> None:
    double.tokens["ghp_x"] = Account("gitops-bot", 7)
    reporter = GitHubReporter(REPO, Credentials(double.url, token="ghp_x"), Http(sleep=lambda s: None, retries=2))
    double.fail(r"statuses", 502, count=2)
    reporter.report(EVENT, Report(SHA, "success", "ok", ""))  # retried through two 502s
    assert [c.status for c in double.requests] == [502, 502, 201]
    bad = GitHubReporter(REPO, Credentials(double.url, token="wrong"), Http(sleep=lambda s: None))
    with pytest.raises(HttpError, match="401"):
        bad.report(EVENT, Report(SHA, "success", "ok", ""))
