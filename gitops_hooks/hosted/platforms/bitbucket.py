"""Bitbucket Cloud and Bitbucket Data Center: deliveries in, build statuses, Code Insights reports with
annotations and the pull request's summary comment out.

Both sign with `X-Hub-Signature: sha256=<hex HMAC-SHA256 of the body>` when the webhook has a secret,
and name the event in `X-Event-Key`. Cloud sends `X-Request-UUID` (kept on the retries it counts in
`X-Attempt-Number`) and `X-Hook-UUID`; Data Center sends `X-Request-Id`. The two are told apart by
those headers, so their order in the registry does not matter.

Cloud acts on `repo:push` (each change's `new`/`old` branch tips; Cloud may send 12-character hashes,
kept as they are for the job to resolve) and `pullrequest:created` / `pullrequest:updated`. Cloud keeps
no ref for a pull request in the destination repository: a same-repository request is fetched by its
source branch; a fork's commits are not in the repository at all (the job finds the head missing and
logs a skip). Data Center acts on `repo:refs_changed`, `pr:opened` and `pr:from_ref_updated` (a new
head), and keeps `refs/pull-requests/N/from` for every request, forks included.

A push that changes several branches at once (`git push origin a b`, or Data Center's automatic
branch merging) is one delivery listing every change: it becomes one event per branch updated or
created, each a job of its own.
"""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

from ..http import Http, join
from ..model import Annotation, Credentials, DeployState, Event, Limits, PayloadError, Report
from . import common

# Build status fields (Data Center's RestBuildStatusSetRequest: key, name and description at most 255,
# url at most 450; Cloud documents none and is held to the same). Code Insights: report title 450,
# details 2,000; Cloud annotation summary 450 ("The summary field cannot contain more than 450
# characters"), Data Center annotation message 2,000; at most 1,000 annotations per report; Cloud takes
# at most 100 per request. Comments: Data Center refuses text over 32,768 characters; Cloud documents
# none and is held to the same.
LIMITS = Limits(status_description=255, comment_chars=32768, annotations_per_request=100,
                annotations_per_report=1000,
                extra={"key": 255, "name": 255, "url": 450, "title": 450, "details": 2000, "summary": 450,
                       "message": 2000})
STATE = {"pending": "INPROGRESS", "success": "SUCCESSFUL", "failure": "FAILED", "error": "FAILED"}
DEPLOY_STATE = {"in_progress": "INPROGRESS", "success": "SUCCESSFUL", "failure": "FAILED"}
SEVERITY = {"failure": "HIGH", "warning": "MEDIUM", "notice": "LOW"}
RANK = {"failure": 0, "warning": 1, "notice": 2}
REPORT_KEY = "gitops-hooks"


def _signed(headers: Mapping[str, str], body: bytes, secret: bytes) -> bool:
    given = headers.get("x-hub-signature", "")
    return given.startswith("sha256=") and common.same(given, "sha256=" + common.hmac_hex(secret, body))


class BitbucketCloud:
    name = "bitbucket-cloud"

    def matches(self, headers: Mapping[str, str]) -> bool:
        return "x-event-key" in headers and ("x-request-uuid" in headers or "x-hook-uuid" in headers)

    def verify(self, headers: Mapping[str, str], body: bytes, secret: bytes) -> bool:
        return _signed(headers, body, secret)

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str:
        return headers.get("x-request-uuid") or common.body_digest(body)

    def parse(self, headers: Mapping[str, str], body: bytes) -> list[Event]:
        key = headers.get("x-event-key", "")
        if key not in ("repo:push", "pullrequest:created", "pullrequest:updated"):
            return []
        data = common.payload(body)
        base: dict[str, Any] = {"platform": self.name, "delivery_id": self.delivery_id(headers, body),
                                "repository": str(common.need(data, "repository", "full_name")),
                                "sender": str((data.get("actor") or {}).get("nickname", ""))}
        if key == "repo:push":
            return self._push(data, base)
        src = common.need(data, "pullrequest", "source")
        number = int(common.need(data, "pullrequest", "id"))
        fork = (common.need(data, "pullrequest", "source", "repository", "full_name")
                != common.need(data, "pullrequest", "destination", "repository", "full_name"))
        branch = str(common.need(data, "pullrequest", "source", "branch", "name"))
        return [Event(kind="request", action=key, number=number,
                      head_sha=str(common.need(src, "commit", "hash")), head_ref="" if fork else f"refs/heads/{branch}",
                      base_ref="refs/heads/" + str(common.need(data, "pullrequest", "destination", "branch", "name")),
                      base_sha=str(common.need(data, "pullrequest", "destination", "commit", "hash")),
                      from_fork=fork, title=str(data["pullrequest"].get("title", "")), **base)]

    @staticmethod
    def _push(data: dict[str, Any], base: dict[str, Any]) -> list[Event]:
        out = []
        for change in _changes(data, "push", "changes"):
            new, old = change.get("new") or {}, change.get("old") or {}
            if new.get("type") not in ("branch", "named_branch"):
                continue  # a deleted branch, or a tag
            out.append(Event(kind="push", action="repo:push", ref="refs/heads/" + str(common.need(new, "name")),
                             before=str((old.get("target") or {}).get("hash") or common.ZERO),
                             after=str(common.need(new, "target", "hash")), **base))
        return out


class BitbucketDataCenter:
    name = "bitbucket-datacenter"

    def matches(self, headers: Mapping[str, str]) -> bool:
        return "x-event-key" in headers and "x-request-id" in headers and "x-request-uuid" not in headers

    def verify(self, headers: Mapping[str, str], body: bytes, secret: bytes) -> bool:
        return _signed(headers, body, secret)

    def delivery_id(self, headers: Mapping[str, str], body: bytes) -> str:
        return headers.get("x-request-id") or common.body_digest(body)

    def parse(self, headers: Mapping[str, str], body: bytes) -> list[Event]:
        key = headers.get("x-event-key", "")
        if key not in ("repo:refs_changed", "pr:opened", "pr:from_ref_updated"):
            return []
        data = common.payload(body)
        actor = data.get("actor") or {}
        base: dict[str, Any] = {"platform": self.name, "delivery_id": self.delivery_id(headers, body),
                                "sender": str(actor.get("name") or actor.get("slug") or "")}
        if key == "repo:refs_changed":
            repo = common.need(data, "repository")
            return self._push(data, {**base, "repository": _repo_name(repo), "clone_url": _clone_url(repo)})
        pr = common.need(data, "pullrequest" if "pullrequest" in data else "pullRequest")
        from_repo, to_repo = common.need(pr, "fromRef", "repository"), common.need(pr, "toRef", "repository")
        number = int(common.need(pr, "id"))
        return [Event(kind="request", action=key, number=number, repository=_repo_name(to_repo),
                      clone_url=_clone_url(to_repo), head_sha=str(common.need(pr, "fromRef", "latestCommit")),
                      head_ref=f"refs/pull-requests/{number}/from", base_ref=str(common.need(pr, "toRef", "id")),
                      base_sha=str(common.need(pr, "toRef", "latestCommit")),
                      from_fork=_repo_name(from_repo) != _repo_name(to_repo), title=str(pr.get("title", "")),
                      **base)]

    @staticmethod
    def _push(data: dict[str, Any], base: dict[str, Any]) -> list[Event]:
        out = []
        for change in _changes(data, "changes"):
            ref = change.get("ref") or {}
            if change.get("type") == "DELETE" or ref.get("type", "BRANCH") != "BRANCH":
                continue  # a deleted branch, or a tag
            out.append(Event(kind="push", action="repo:refs_changed", ref=str(common.need(change, "refId")),
                             before=str(change.get("fromHash") or common.ZERO),
                             after=str(common.need(change, "toHash")), **base))
        return out


def _changes(data: dict[str, Any], *path: str) -> list[Mapping[str, Any]]:
    """The list of ref changes a push names (PayloadError when it is not a list of objects)."""
    changes = common.need(data, *path)
    if not isinstance(changes, list) or not all(isinstance(c, Mapping) for c in changes):
        raise PayloadError(f"the payload's {'.'.join(path)} is not a list of objects")
    return changes


def _repo_name(repo: Mapping[str, Any]) -> str:
    return f"{common.need(repo, 'project', 'key')}/{common.need(repo, 'slug')}"


def _clone_url(repo: Mapping[str, Any]) -> str:
    clones = ((repo.get("links") or {}).get("clone")) or []
    return next((str(c.get("href", "")) for c in clones if c.get("name") == "http"), "")


PLATFORMS = [BitbucketCloud(), BitbucketDataCenter()]


# ---------------------------------------------------------------------------- reporting

def hidden_marker(marker: str) -> str:
    """Bitbucket's Markdown shows an HTML comment as text: the marker becomes a link reference
    definition, which both Cloud's and Data Center's renderers leave out."""
    inner = marker.removeprefix("<!--").removesuffix("-->").strip()
    return f"[//]: # ({inner})"


def comment_text(body: str) -> tuple[str, str]:
    """(marker, text) of the summary comment, as posted on Bitbucket."""
    marker, body = common.split_marker(body)
    hidden = hidden_marker(marker)
    return hidden, common.fit(hidden + body[len(marker):], LIMITS.comment_chars)


def chosen(annotations: tuple[Annotation, ...]) -> tuple[list[Annotation], int]:
    """The annotations a report keeps, failures first, and how many are left out."""
    ordered = sorted(annotations, key=lambda a: (RANK[a.severity], a.path, a.line))
    keep = LIMITS.annotations_per_report
    return ordered[:keep], max(0, len(ordered) - keep)


def details(report: Report, left_out: int) -> str:
    text = report.summary or report.title
    if left_out:
        note = (f" {left_out:,} more findings are not annotated: Bitbucket keeps "
                f"{LIMITS.annotations_per_report:,} per report (all are in the summary comment).")
        return common.cut(text, LIMITS.extra["details"] - len(note)) + note
    return common.cut(text, LIMITS.extra["details"])


class _Reporter:
    def __init__(self, repository: str, creds: Credentials, http: Http) -> None:
        self.repository, self.creds, self.http = repository, creds, http
        self.owner, _, self.slug = repository.partition("/")

    def _headers(self) -> dict[str, str]:
        token = self.creds.token
        if not token:
            return {}
        if ":" in token:  # user:app-password (Cloud) or user:password
            return {"Authorization": "Basic " + base64.b64encode(token.encode()).decode("ascii")}
        return {"Authorization": f"Bearer {token}"}

    def _build(self, url: str, sha: str, state: str, key: str, description: str, target_url: str) -> None:
        self.http.post(url, {"key": key[: LIMITS.extra["key"]], "state": state,
                             "name": key[: LIMITS.extra["name"]],
                             "description": common.cut(description, LIMITS.status_description),
                             "url": (target_url or self.commit_page(sha))[: LIMITS.extra["url"]]},
                       headers=self._headers())

    def commit_page(self, sha: str) -> str:
        raise NotImplementedError

    def deployment(self, event: Event, environment: str, state: DeployState, description: str) -> None:
        sha = event.after or event.head_sha
        self.status(sha, DEPLOY_STATE[state], f"gitops-hooks/{environment}", description, "")

    def status(self, sha: str, state: str, key: str, description: str, target_url: str) -> None:
        raise NotImplementedError


class CloudReporter(_Reporter):
    def _url(self, path: str, query: Mapping[str, str | int] | None = None) -> str:
        return join(self.creds.api_url, f"repositories/{self.owner}/{self.slug}/{path}", query)

    def commit_page(self, sha: str) -> str:
        parts = urllib.parse.urlsplit(self.creds.api_url)
        host = parts.netloc.removeprefix("api.")
        return f"{parts.scheme}://{host}/{self.owner}/{self.slug}/commits/{sha}"

    def git_auth_header(self) -> str:
        # Repository, project and workspace access tokens fetch as the user `x-token-auth`; an app
        # password (`user:password` in the token file) as its user.
        token = self.creds.token
        if not token:
            return ""
        pair = token if ":" in token else f"x-token-auth:{token}"
        return "Basic " + base64.b64encode(pair.encode()).decode("ascii")

    def status(self, sha: str, state: str, key: str, description: str, target_url: str) -> None:
        self._build(self._url(f"commit/{sha}/statuses/build"), sha, state, key, description, target_url)

    def report(self, event: Event, report: Report) -> None:
        self.status(report.sha, STATE[report.state], report.context, report.title, report.target_url)
        kept, left_out = chosen(report.annotations)
        result = {"pending": "PENDING", "success": "PASSED"}.get(report.state, "FAILED")
        body: dict[str, Any] = {"title": common.cut(report.title, LIMITS.extra["title"]),
                                "details": details(report, left_out), "report_type": "BUG",
                                "reporter": "gitops-hooks", "result": result,
                                "data": [{"title": "Findings", "type": "NUMBER", "value": len(report.annotations)}]}
        if report.target_url:
            body["link"] = report.target_url
        where = f"commit/{report.sha}/reports/{REPORT_KEY}"
        self.http.put(self._url(where), body, headers=self._headers())
        per = LIMITS.annotations_per_request
        for start in range(0, len(kept), per):
            batch = [self._annotation(n, a) for n, a in enumerate(kept[start:start + per], start)]
            self.http.post(self._url(f"{where}/annotations"), batch, headers=self._headers())

    @staticmethod
    def _annotation(n: int, a: Annotation) -> dict[str, Any]:
        out: dict[str, Any] = {"external_id": f"{REPORT_KEY}-{n:04d}", "annotation_type": "BUG",
                               "summary": common.cut(f"{a.title}: {a.message}", LIMITS.extra["summary"]),
                               "details": common.cut(a.message, LIMITS.extra["details"]), "path": a.path,
                               "severity": SEVERITY[a.severity],
                               "result": "FAILED" if a.severity == "failure" else "SKIPPED"}
        if a.line > 0:
            out["line"] = a.line
        return out

    def comment(self, event: Event, body: str) -> None:
        marker, text = comment_text(body)
        where = f"pullrequests/{event.number}/comments"
        mine = common.find_own(self._comments(where), lambda c: str((c.get("content") or {}).get("raw", "")),
                               self._is_mine, marker)
        payload = {"content": {"raw": text}}
        if mine is None:
            self.http.post(self._url(where), payload, headers=self._headers())
        else:
            self.http.put(self._url(f"{where}/{mine['id']}"), payload, headers=self._headers())

    _me: str | None = None

    def _is_mine(self, comment: Mapping[str, Any]) -> bool:
        if comment.get("deleted") or comment.get("inline"):
            return False
        if self._me is None:
            self._me = str(self.http.get(join(self.creds.api_url, "user"), headers=self._headers()).json()["uuid"])
        return (comment.get("user") or {}).get("uuid") == self._me

    def _comments(self, where: str) -> Iterator[list[Mapping[str, Any]]]:
        url: str | None = self._url(where, {"pagelen": 100})
        for _ in range(100):
            if not url:
                return
            page = self.http.get(url, headers=self._headers()).json() or {}
            yield list(page.get("values") or [])
            url = page.get("next")


class DataCenterReporter(_Reporter):
    """`api_url` is the server's base URL (with its context path, if any): REST calls go to
    `{api_url}/rest/api/1.0/…` and `{api_url}/rest/insights/1.0/…`."""

    def _repo(self, api: str, path: str, query: Mapping[str, str | int] | None = None) -> str:
        return join(self.creds.api_url, f"rest/{api}/projects/{self.owner}/repos/{self.slug}/{path}", query)

    def commit_page(self, sha: str) -> str:
        return join(self.creds.api_url, f"projects/{self.owner}/repos/{self.slug}/commits/{sha}")

    def git_auth_header(self) -> str:
        token = self.creds.token
        if not token:
            return ""
        return self._headers()["Authorization"]  # an HTTP access token is a Bearer token for git too

    def status(self, sha: str, state: str, key: str, description: str, target_url: str) -> None:
        self._build(self._repo("api/1.0", f"commits/{sha}/builds"), sha, state, key, description, target_url)

    def report(self, event: Event, report: Report) -> None:
        self.status(report.sha, STATE[report.state], report.context, report.title, report.target_url)
        kept, left_out = chosen(report.annotations)
        body: dict[str, Any] = {"title": common.cut(report.title, LIMITS.extra["title"]),
                                "details": details(report, left_out), "reporter": "gitops-hooks",
                                "data": [{"title": "Findings", "type": "NUMBER", "value": len(report.annotations)}]}
        if report.state in ("success", "failure", "error"):
            body["result"] = "PASS" if report.state == "success" else "FAIL"
        if report.target_url:
            body["link"] = report.target_url
        where = f"commits/{report.sha}/reports/{REPORT_KEY}"
        self.http.put(self._repo("insights/1.0", where), body, headers=self._headers())
        self.http.request("DELETE", self._repo("insights/1.0", f"{where}/annotations"), headers=self._headers())
        per = LIMITS.annotations_per_request
        for start in range(0, len(kept), per):
            batch = [self._annotation(n, a) for n, a in enumerate(kept[start:start + per], start)]
            self.http.post(self._repo("insights/1.0", f"{where}/annotations"), {"annotations": batch},
                           headers=self._headers())

    @staticmethod
    def _annotation(n: int, a: Annotation) -> dict[str, Any]:
        out: dict[str, Any] = {"externalId": f"{REPORT_KEY}-{n:04d}", "path": a.path, "type": "BUG",
                               "severity": SEVERITY[a.severity],
                               "message": common.cut(f"{a.title}: {a.message}", LIMITS.extra["message"])}
        if a.line > 0:
            out["line"] = a.line
        return out

    def comment(self, event: Event, body: str) -> None:
        marker, text = comment_text(body)
        where = f"pull-requests/{event.number}/comments"
        mine = common.find_own(self._comments(event.number), lambda c: str(c.get("text", "")), self._is_mine,
                               marker)
        if mine is None:
            self.http.post(self._repo("api/1.0", where), {"text": text}, headers=self._headers())
        else:
            self.http.put(self._repo("api/1.0", f"{where}/{mine['id']}"),
                          {"text": text, "version": int(mine.get("version", 0))}, headers=self._headers())

    _me: str | None = None

    def _is_mine(self, comment: Mapping[str, Any]) -> bool:
        if self._me is None:
            answer = self.http.get(join(self.creds.api_url, "plugins/servlet/applinks/whoami"),
                                   headers={**self._headers(), "Accept": "text/plain"})
            self._me = answer.body.decode("utf-8").strip()
        author = comment.get("author") or {}
        return str(author.get("name", "")).lower() == self._me.lower() != ""

    def _comments(self, number: int) -> Iterator[list[Mapping[str, Any]]]:
        """The request's top-level comments, from its activities (the comments resource needs a path)."""
        start = 0
        for _ in range(100):
            page = self.http.get(self._repo("api/1.0", f"pull-requests/{number}/activities",
                                            {"start": start, "limit": 100}), headers=self._headers())
            data = page.json() or {}
            if self._me is None and page.headers.get("x-ausername"):
                self._me = page.headers["x-ausername"]  # who the token is, as the server says on each answer
            yield [a["comment"] for a in data.get("values") or []
                   if a.get("action") == "COMMENTED" and a.get("commentAction") == "ADDED" and a.get("comment")]
            if data.get("isLastPage", True) or data.get("nextPageStart") in (None, start):
                return
            start = int(data["nextPageStart"])


def reporter(platform: str, repository: str, creds: Credentials, http: Http) -> CloudReporter | DataCenterReporter:
    if platform == "bitbucket-datacenter":
        return DataCenterReporter(repository, creds, http)
    return CloudReporter(repository, creds, http)
