#!/usr/bin/env python3
"""Print the README's rule table (markdown) from the rule catalogue in the code.

    python scripts/rules_table.py            # print the table
    python scripts/rules_table.py --check    # exit 1 if README.md's rules block differs

The README keeps the table between `<!-- rules:start -->` and `<!-- rules:end -->`.
"""

from __future__ import annotations

import sys
from pathlib import Path

START, END = "<!-- rules:start -->", "<!-- rules:end -->"
README = Path(__file__).resolve().parent.parent / "README.md"


def table() -> str:
    from gitops_hooks.rulebook import register_all

    rows = ["| rule | family | default | what it refuses or reports |", "| --- | --- | --- | --- |"]
    rules = [r for r in register_all().values() if r.source == "built-in"]
    for r in sorted(rules, key=lambda r: (r.family, r.id)):
        summary = r.summary.replace("|", "\\|")
        rows.append(f"| `{r.id}` | {r.family} | {r.severity} | {summary} |")
    return "\n".join(rows) + "\n"


def readme_block(text: str) -> str | None:
    """The text between the markers (without them), or None when the markers are missing."""
    if START not in text or END not in text:
        return None
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def main(argv: list[str]) -> int:
    if "--check" not in argv:
        sys.stdout.write(table())
        return 0
    block = readme_block(README.read_text(encoding="utf-8"))
    if block != table():
        sys.stderr.write(f"{README}: the rules table is out of date; regenerate it with scripts/rules_table.py\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
