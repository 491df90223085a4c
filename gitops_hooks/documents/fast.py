"""The fast reader: yaml-rs (Rust) where YAML 1.1 and YAML 1.2 cannot differ; None (read carefully) elsewhere."""

from __future__ import annotations

import re
from typing import Any

from .composer import YAML11_BOOLS
from .lists import expand_lists
from .model import Document, Limits, ParsedFile
from .positions import SourceFile

#
# yaml-rs (Rust) builds the same plain values ten times faster than composing nodes, but reads YAML 1.2.
# It is used only for text in which YAML 1.1 (as go-yaml v2 reads it) and YAML 1.2 cannot differ: no
# YAML 1.1 booleans, no leading-zero or underscored numbers, no merge keys, anchors, tags, directives,
# non-string keys or very long lines. Anything else, and every error, goes the careful way below, so
# findings and their positions come from one place. A test compares both ways on the real corpora.

_BOOL_WORDS = YAML11_BOOLS | {"<<"}
_INDICATOR_BEFORE = frozenset(" \t\n\r[{,-:")


def _token_starts(text: str, char: str, also_next: str = "") -> bool:
    """`char` at the start of a YAML token (a tag `!x`, an anchor `&x`), not inside a word, nor inside a
    quoted scalar that opens on the same line (CEL rules in CRDs are full of `'!has(...) || !x'`)."""
    i = text.find(char)
    while i >= 0:
        before = text[i - 1] if i else "\n"
        after = text[i + 1: i + 2]
        if before in _INDICATOR_BEFORE and after and not after.isspace() and after not in also_next:
            start = text.rfind("\n", 0, i) + 1
            if not _in_quotes(text, start, i):
                return True
        i = text.find(char, i + 1)
    return False


# What may stand before a quote on its line for the quote to open a scalar, beyond doubt: indentation,
# sequence dashes, and a plain or quoted key of simple characters with its `: `.
_QUOTE_OPENS_AFTER = re.compile(r"""[ \t]*(?:- +)*(?:(?:[A-Za-z0-9_.\-/]+|"[^"\\]*"|'[^']*') *: +)?""")


def _in_quotes(text: str, start: int, at: int) -> bool:
    """Is offset `at` inside a quoted scalar that opens on its line (which starts at `start`)?

    Errs towards "no" (the careful path then reads the file): a quote counts as opening a scalar only
    where nothing but indentation, dashes and a simple key stand before it on the line."""
    i = start
    while True:
        q = min((p for p in (text.find("'", i, at), text.find('"', i, at)) if p >= 0), default=-1)
        if q < 0 or not _QUOTE_OPENS_AFTER.fullmatch(text, start, q):
            return False
        end = _quote_end(text, q, at)
        if end < 0:
            return True  # still open at `at`
        i = end + 1


def _quote_end(text: str, opening: int, limit: int) -> int:
    """Offset of the quote closing the scalar opened at `opening`, or -1 if it is not closed before limit."""
    q = text[opening]
    i = opening + 1
    while i < limit:
        c = text[i]
        if q == "'" and c == "'":
            if text[i + 1: i + 2] == "'":
                i += 2  # '' is a quote inside a single-quoted scalar
                continue
            return i
        if q == '"':
            if c == "\\":
                i += 2
                continue
            if c == '"':
                return i
        i += 1
    return -1


_ZERO_LED = re.compile(r"0[0-9bB_]")
_BEFORE_ZERO_2 = frozenset({": ", ":\t", "- ", ", "})
_BEFORE_ZERO_1 = frozenset(",\n")


def _leading_zero_number(text: str) -> bool:
    """A plain number like 0755 or 0b101: go-yaml v2 reads octal and binary, YAML 1.2 does not.

    One pass for `0` followed by a digit, b or _, then a look at what stands before it: `: `, `:\t`,
    `- `, `, `, `,`, a line break, or a `[` or `{` where a flow collection can open (not in `^([01])`)."""
    for m in _ZERO_LED.finditer(text):
        j = m.start()
        if j == 0:
            continue
        before = text[j - 1]
        if before in _BEFORE_ZERO_1 or text[j - 2: j] in _BEFORE_ZERO_2 and j >= 2:
            return True
        if before in "[{" and (j == 1 or text[j - 2] in _INDICATOR_BEFORE):
            return True
    return False


_MAX_DEPTH = 500  # deeper documents go the careful way (libyaml refuses past 1000 levels)


def _same_in_yaml11(value: Any) -> bool:
    """No value that YAML 1.1 could have read differently (bool words, `<<`, non-string keys), and
    no nesting deeper than _MAX_DEPTH. Iterative: a hostile document cannot exhaust the stack."""
    bools = _BOOL_WORDS
    stack = [(value, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        if depth > _MAX_DEPTH:
            return False
        if type(item) is dict:
            for k in item:
                if type(k) is not str or k in bools:
                    return False
            children = item.values()
        else:
            children = item
        for v in children:
            t = type(v)
            if t is str:
                if v in bools:
                    return False
            elif t is dict or t is list:
                push((v, depth + 1))
    return True


_DOC_START = re.compile(r"^---[ \t]*(?:#[^\n]*)?$", re.M)
_DOC_START_AFTER_BREAK = re.compile(r"\n(---[ \t]*(?:#[^\n]*)?)(?=\n|$)")  # a literal first: searched fast


def _doc_marks(text: str) -> list[tuple[int, int]]:
    """(start, end) of each `---` line: what _DOC_START finds, found by a pattern that begins with a
    literal line break (a `^` in multiline mode makes the regex engine try every offset)."""
    out = [(m.start(1), m.end(1)) for m in _DOC_START_AFTER_BREAK.finditer(text)]
    first = _DOC_START.match(text)
    if first is not None:
        out.insert(0, (first.start(), first.end()))
    return out
_CONTENT_LINE = re.compile(r"^([ \t]*)[^\s#]", re.M)

_yaml_rs: Any
try:
    import yaml_rs as _yaml_rs
except ImportError:  # pragma: no cover - the careful path serves alone
    _yaml_rs = None


_OTHER_BREAKS = ("\u2028", "\u2029", "\x85")
_MERGE_KEY = re.compile(r"<<\s*:")  # `<<` as a key; elsewhere (templates like `(<<.GroupBy>>)`) it is text


def _fast(path: str, text: str, limits: Limits, source: SourceFile) -> ParsedFile | None:
    if _yaml_rs is None or "<<" in text and _MERGE_KEY.search(text) or text.startswith(("%", "\ufeff")) \
            or "\n%" in text or not text.endswith("\n"):
        return None  # (yaml-rs keeps a last line break that a file without one does not have)
    if _token_starts(text, "!", "=") or _token_starts(text, "&", "&") or _leading_zero_number(text):
        return None
    if any(c in text for c in _OTHER_BREAKS) or ("\r" in text and "\r" in text.replace("\r\n", "")):
        return None  # line breaks other than \n and \r\n: the careful path counts lines as YAML does
    if len(text) > 10_000 and max(map(len, text.split("\n"))) > limits.max_key_bytes:
        return None  # a key could be over the limit: the careful path measures it
    marks = _doc_marks(text)
    starts = [0] + [end for _, end in marks]
    bounds = [start for start, _ in marks] + [len(text)]
    result = ParsedFile(path, [], [], source)
    index = 0
    counted_lines, counted_to = 0, 0
    for n, (start, end) in enumerate(zip(starts, bounds, strict=True)):
        chunk = text[start:end]
        first = _CONTENT_LINE.search(chunk)
        if first is None:
            index += 1 if n else 0  # an empty document after `---` still counts
            continue
        if index >= limits.max_documents:
            return None
        try:
            obj = _yaml_rs.loads(chunk, parse_datetime=False)
        except Exception:  # noqa: BLE001 - every problem is reported by the careful path
            return None
        if obj is None:
            index += 1
            continue
        if not isinstance(obj, dict) or not _same_in_yaml11(obj):
            return None  # (nesting past libyaml's limit is reported by the careful path)
        at = start + first.start()
        counted_lines += text.count("\n", counted_to, at)  # counted on from the last document, not from 0
        counted_to = at
        line = counted_lines + 1
        result.documents.append(Document(path, index, line, len(first.group(1)) + 1, obj, source))
        index += 1
    return expand_lists(result)
