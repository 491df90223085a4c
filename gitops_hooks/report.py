"""Report renderers. Text is what a pusher sees after `remote:`; no colour codes, one line per finding."""

from __future__ import annotations

from collections.abc import Iterable

from .findings import Finding, Severity, rule
from .pipeline import Result


def _escaped(text: str) -> str:
    out = []
    for ch in text:
        o = ord(ch)
        if 0xDC80 <= o <= 0xDCFF:  # a byte that was not UTF-8 (file names from git)
            out.append(f"\\x{o - 0xDC00:02x}")
        elif ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1] if o < 0x10000 else ch)
    return "".join(out)


def printable(text: str, quote: bool = True) -> str:
    """One line, whatever a pusher named a file: control characters and undecodable bytes escaped, the
    whole quoted as git quotes such paths, so no finding can break or forge a line of the report."""
    if text.isprintable():
        return text
    return f'"{_escaped(text)}"' if quote else _escaped(text)


def finding_line(f: Finding) -> str:
    return f"{printable(f.path)}:{f.line}:{f.column}: {f.severity} [{f.rule}] {printable(f.message, quote=False)}"


def render_text(results: Iterable[Result], max_findings: int = 50, explain: bool = False) -> str:
    lines: list[str] = []
    results = list(results)
    shown = 0
    hidden = 0
    explained: set[str] = set()
    for result in results:
        if result.findings or len(results) > 1:
            lines.append(f"== {result.label}")
        current = None
        for f in sorted(result.findings, key=lambda f: (f.path, f.line, f.column, -f.severity, f.rule)):
            if shown >= max_findings:
                hidden += 1
                continue
            if f.path != current:
                if current is not None:
                    lines.append("")
                current = f.path
            lines.append(finding_line(f))
            if f.hint:
                lines.append(f"    hint: {printable(f.hint, quote=False)}")
            shown += 1
            if explain and f.rule not in explained and f.severity >= Severity.WARNING:
                explained.add(f.rule)
                try:
                    r = rule(f.rule)
                    lines.extend("    | " + x for x in r.explanation.splitlines())
                    if r.example:
                        lines.append("    | compliant example:")
                        lines.extend("    |     " + x for x in r.example.rstrip().splitlines())
                except KeyError:
                    pass
        if result.findings:
            lines.append("")
    if hidden:
        lines.append(f"... and {hidden} more")
        lines.append("")
    for result in results:
        s = result.stats
        lines.append(
            f"{result.label}: {s.files} files, {s.manifests} manifests, {s.objects} objects: "
            f"{result.errors} error{'s' if result.errors != 1 else ''}, "
            f"{result.warnings} warning{'s' if result.warnings != 1 else ''} ({s.seconds:.2f} s)"
        )
    return "\n".join(lines)
