#!/usr/bin/env python3
"""Print the rule table of docs/rules.md (markdown) from the rule catalogue in the code.

    python scripts/rules_table.py            # print the table
    python scripts/rules_table.py --check    # exit 1 if docs/rules.md's rules block differs

docs/rules.md keeps the table between `<!-- rules:start -->` and `<!-- rules:end -->`.
"""

from __future__ import annotations

import sys
from pathlib import Path

START, END = "<!-- rules:start -->", "<!-- rules:end -->"
RULES_DOC = Path(__file__).resolve().parent.parent / "docs" / "rules.md"


def table() -> str:
    from gitops_hooks.rulebook import register_all

    rows = ["| rule | family | default | what it refuses or reports |", "| --- | --- | --- | --- |"]
    rules = [r for r in register_all().values() if r.source == "built-in"]
    for r in sorted(rules, key=lambda r: (r.family, r.id)):
        summary = r.summary.replace("|", "\\|")
        rows.append(f"| `{r.id}` | {r.family} | {r.severity} | {summary} |")
    return "\n".join(rows) + "\n"


def rules_block(text: str) -> str | None:
    """The text between the markers (without them), or None when the markers are missing."""
    if START not in text or END not in text:
        return None
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def main(argv: list[str]) -> int:
    if "--check" not in argv:
        sys.stdout.write(table())
        return 0
    block = rules_block(RULES_DOC.read_text(encoding="utf-8"))
    if block != table():
        sys.stderr.write(f"{RULES_DOC}: the rules table is out of date; regenerate it with scripts/rules_table.py\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
