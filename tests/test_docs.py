"""The documentation's links: every relative link in README.md, docs/*.md and bench/README.md leads to a
file of the checkout and, where it names a `#anchor`, to a heading of that file (GitHub's anchors)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import ROOT, Clone, Server

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def doc_files(root: Path) -> list[Path]:
    files = [root / "README.md", *sorted((root / "docs").glob("*.md")), root / "bench" / "README.md"]
    return [f for f in files if f.is_file()]


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text, lower-cased, punctuation dropped, spaces to `-`."""
    text = CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link's text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    found: set[str] = set(HTML_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    for _, line in prose_lines(text):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(text: str) -> list[tuple[int, str]]:
    out = []
    for number, line in prose_lines(text):
        line = CODE_SPAN.sub("", line)
        out += [(number, target) for target in INLINE_LINK.findall(line)]
        m = REFERENCE_DEF.match(line)
        if m:
            out.append((number, m.group(1)))
    return out


def broken_links(path: Path, root: Path) -> list[str]:
    """Each relative link of `path` that does not resolve, as `file:line: target: why`."""
    problems = []
    for number, target in links(path.read_text(encoding="utf-8")):
        if not target or SCHEME.match(target) or target.startswith("//"):
            continue  # a web address or a mail address: not checked here
        where = f"{path.relative_to(root)}:{number}: {target}"
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if file_part.startswith("/"):
            problems.append(f"{where}: an absolute path (GitHub reads it from the repository root; write it relative)")
            continue
        if not dest.exists():
            problems.append(f"{where}: no such file")
            continue
        if root.resolve() not in dest.parents and dest != root.resolve():
            problems.append(f"{where}: outside the repository")
            continue
        if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{where}: no heading with the anchor #{anchor} in {dest.name}")
    return problems


@pytest.mark.parametrize("doc", doc_files(ROOT), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc: Path) -> None:
    problems = broken_links(doc, ROOT)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_the_front_page_and_the_docs_are_checked() -> None:
    names = {str(p.relative_to(ROOT)) for p in doc_files(ROOT)}
    assert {"README.md", "docs/README.md", "docs/rules.md", "docs/design.md"} <= names


def test_a_broken_link_or_anchor_is_reported(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "topic.md").write_text(
        "# A topic\n\n## Operators' rules: CEL, plugins\n\n## `gitops-hooks validate`\n\n## Notes\n\n## Notes\n",
        encoding="utf-8")
    (root / "README.md").write_text(
        "See [the topic](docs/topic.md), [its rules](docs/topic.md#operators-rules-cel-plugins),\n"
        "[validate](docs/topic.md#gitops-hooks-validate), [the second notes](docs/topic.md#notes-1),\n"
        "[the web](https://example.com/x.md), [mail](mailto:a@example.com) and [here](#a-front-page).\n\n"
        "# A front page\n\n"
        "Broken: [gone](docs/missing.md), [bad anchor](docs/topic.md#no-such-heading),\n"
        "[self](#nowhere), [up](../outside.md).\n\n"
        "```\n[in code](docs/missing-in-code.md)\n```\n\n`[in a span](docs/missing-in-span.md)`\n",
        encoding="utf-8")
    (tmp_path / "outside.md").write_text("x\n", encoding="utf-8")  # exists, but the link leaves the checkout
    problems = broken_links(root / "README.md", root)
    assert problems == [
        "README.md:7: docs/missing.md: no such file",
        "README.md:7: docs/topic.md#no-such-heading: no heading with the anchor #no-such-heading in topic.md",
        "README.md:8: #nowhere: no heading with the anchor #nowhere in README.md",
        "README.md:8: ../outside.md: outside the repository",
    ]


def test_github_anchor_rules() -> None:
    assert slug("Operators' rules: CEL from CRDs, admission policies") == "operators-rules-cel-from-crds-admission-policies"
    assert slug("How it is applied (direct backend)") == "how-it-is-applied-direct-backend"
    assert slug("`gitops-hooks validate`") == "gitops-hooks-validate"
    assert slug("Before the push: `validate`, the pre-commit hook and CI") == \
        "before-the-push-validate-the-pre-commit-hook-and-ci"
    assert slug("Audit trail, history, rollback") == "audit-trail-history-rollback"


# ---------------------------------------------------------------------------- the README's own promises

def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"\n## {title}\n" in text, f"README.md has no section '## {title}'"
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, content) of each fenced block."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)]


def test_the_readme_has_exactly_the_two_set_up_commands() -> None:
    commands = [body.strip() for lang, body in fenced_blocks(readme_section("Set up on a new machine")) if lang == "sh"]
    assert commands == [
        "./install.sh /srv/git/platform.git",
        "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest -q",
    ]
    assert (ROOT / "install.sh").stat().st_mode & 0o111, "install.sh must stay executable"


def remote_text(output: str) -> list[str]:
    """The `remote:` lines of a push, with commit ids and timings made neutral."""
    lines = [line[len("remote:"):].strip() for line in output.splitlines() if line.startswith("remote:")]
    lines = [re.sub(r"\b[0-9a-f]{12}\b", "<commit>", line) for line in lines]
    return [re.sub(r"\(\d+\.\d+ s\)", "(<time>)", line) for line in lines]


def test_the_walkthrough_output_is_what_a_push_prints(server: Server, clone: Clone) -> None:
    section = readme_section("Walkthrough")
    blocks = fenced_blocks(section)
    web, config = [body for lang, body in blocks if lang == "yaml"]
    pushes = [body for lang, body in blocks if lang == "text" and "$ git push" in body]
    assert len(pushes) == 2, "the walkthrough shows a good push and a refused one"

    clone.write("apps/web.yaml", web)
    clone.commit("web")
    good = clone.push()
    assert good.accepted, good.output
    assert remote_text(good.output) == remote_text(pushes[0])

    clone.write("apps/web.yaml", web.replace("replicas: 2", 'replicas: "2"').replace("protocol: TCP", "protocl: TCP"))
    clone.write("apps/config.yaml", config)
    clone.commit("broken")
    bad = clone.push()
    assert not bad.accepted
    assert remote_text(bad.output) == remote_text(pushes[1])
