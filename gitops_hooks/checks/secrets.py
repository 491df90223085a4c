"""Secrets: plaintext Secret objects, and credentials found in any file, at the tip and in history.

Credentials are never printed: a finding names what was found and at most a fixed, public prefix
(`AKIA…`, `ghp_…`), never characters of the secret itself.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..documents import Document
from ..findings import Finding, Rule, Severity, finding, register
from ..gitrepo import Entry
from .base import CheckContext, document_check, file_check, history_check, only_for

E = Severity.ERROR

ENCRYPT = ("encrypt it with SOPS (a sops: block and ENC[...] values), or commit a SealedSecret or an "
           "ExternalSecret instead; rotate the credential if it was real")

register(
    Rule("secret-plaintext", "secrets", E, "A Secret with data or stringData that is not SOPS-encrypted.",
         "Whatever is committed stays in git history for ever, readable by everyone who can clone. "
         "Commit Secrets encrypted with SOPS (the file keeps a `sops:` block and every value is "
         "`ENC[...]`), or commit a SealedSecret or an ExternalSecret that refers to a secret store. "
         "Configuration that is kept in a Secret without being secret (a common case in upstream "
         "bundles) can be allowed by the administrator for the named objects "
         "(`allow: [{rule: secret-plaintext, kind: Secret, namespace: ..., name: ...}]`).",
         "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n"
         "  password: ENC[AES256_GCM,data:3q2+7w==,iv:...,tag:...,type:str]\n"
         "sops:\n  age:\n    - recipient: age1...\n  mac: ENC[AES256_GCM,data:...,type:str]\n"),
    Rule("secret-value", "secrets", E,
         "A credential in a file: private key, cloud access key, token or high-entropy password.",
         "Private keys (PEM), AWS access key ids, GitHub and Slack tokens, Slack webhook URLs and "
         "high-entropy values of password/secret/token/api-key settings are looked for in every file "
         "(ConfigMaps, Helm values, env values, config files). Move the value to a SOPS-encrypted "
         "Secret, a SealedSecret or an ExternalSecret and refer to it (secretKeyRef); rotate it.",
         "env:\n  - name: DB_PASSWORD\n    valueFrom:\n      secretKeyRef: {name: db, key: password}\n"),
    Rule("secret-in-history", "secrets", E,
         "A commit of the push, not only its tip, adds a credential or a plaintext Secret.",
         "Every new commit of a push is searched, not only its final tree: a secret added and removed "
         "within one push is still in the repository's history. Rewrite the commits before pushing "
         "(git rebase -i, git commit --amend) so that no commit holds it, and rotate the credential.",
         "# every commit of the push holds only references to secrets:\n"
         "envFrom:\n  - secretRef: {name: db}\n"),
)

# ---------------------------------------------------------------------------- Secret objects

ENC_VALUE = re.compile(r"^ENC\[[A-Z0-9_]+,data:.*\]$", re.S)


def is_sops(obj: dict[str, Any]) -> bool:
    return isinstance(obj.get("sops"), dict) and bool(obj["sops"])


def plaintext_keys(obj: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, key) of every Secret value that is not SOPS-encrypted."""
    sops = is_sops(obj)
    out = []
    for field in ("data", "stringData"):
        values = obj.get(field)
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            if not (sops and isinstance(value, str) and ENC_VALUE.match(value)):
                out.append((field, str(key)))
    return out


def is_core_secret(obj: dict[str, Any]) -> bool:
    return obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1"


def _plaintext_message(doc: Document, keys: list[tuple[str, str]]) -> str:
    more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
    names = ", ".join(f"{f}.{k}" for f, k in keys[:5]) + more
    encrypted = " (it has a sops: block, but these values are not ENC[...])" if is_sops(doc.obj) else ""
    return f"{doc.describe()} holds plaintext values: {names}{encrypted}"


@document_check
@only_for(kinds={"Secret"})
def plaintext_secret(doc: Document, ctx: CheckContext) -> Iterator[Finding]:
    if not is_core_secret(doc.obj):
        return
    keys = plaintext_keys(doc.obj)
    if not keys:
        return
    line, col = doc.locate((keys[0][0], keys[0][1]), key=True)
    yield finding("secret-plaintext", doc.path, line, col, _plaintext_message(doc, keys), ENCRYPT,
                  subject=doc.subject())


# ---------------------------------------------------------------------------- credentials in text

@dataclass(frozen=True)
class Leak:
    line: int
    column: int
    what: str  # "an AWS access key id (AKIA…)": never characters of the secret itself


@dataclass(frozen=True)
class Pattern:
    regex: re.Pattern[str]
    what: str
    public_prefix: int  # characters of the match that are a fixed, public marker (shown), or 0
    markers: tuple[str, ...]  # literal parts: only lines holding one are searched with the regex


STRONG = (
    Pattern(re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"), "a private key", 0,
            ("PRIVATE KEY",)),
    Pattern(re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"), "an AWS access key id", 4,
            ("AKIA", "ASIA", "ABIA", "ACCA")),
    Pattern(re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,251}\b"), "a GitHub token", 4,
            ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    Pattern(re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,244}"), "a GitHub fine-grained token", 11, ("github_pat_",)),
    Pattern(re.compile(r"\bxox[abposr]-[0-9A-Za-z-]{10,}"), "a Slack token", 5, ("xox",)),
    Pattern(re.compile(r"https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+"),
            "a Slack webhook URL", 33, ("hooks.slack.com",)),
)
# Each pattern's markers as one regex: one pass over a text instead of one per marker (the markers of a
# pattern share their first letters, which the regex engine scans for quickly).
_LOCATORS = {p.markers: re.compile("|".join(re.escape(m) for m in p.markers)) for p in STRONG}
KEYWORD_STEMS = ("pass", "secret", "token", "api_key", "api-key", "apikey", "access_key", "access-key",
                 "accesskey", "auth_key", "auth-key", "authkey", "private_key", "private-key", "privatekey",
                 "credential")
# Stems that differ only after a common head ("api" + "_key", "-key", "key") are searched together.
_HEADS = ("api", "access", "auth", "private")
_SINGLE_STEMS = tuple(s for s in KEYWORD_STEMS if not s.startswith(_HEADS))
_STEM_GROUPS = tuple(re.compile(re.escape(head) + "(?:" + "|".join(re.escape(s[len(head):]) for s in KEYWORD_STEMS
                                                                    if s.startswith(head)) + ")")
                     for head in _HEADS)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

_ahocorasick: Any
try:
    import ahocorasick_rs as _ahocorasick
except ImportError:  # pragma: no cover - the scans with str.find and re serve alone
    _ahocorasick = None
# Every word a text is searched for, in lower case: the keyword stems, then the strong patterns' markers
# (found in the lowered text, kept where the text has them in their own case). One pass of an
# Aho-Corasick automaton finds them all; the fallback makes one pass per word or group.
_MARKER_OF = tuple((n, m) for n, p in enumerate(STRONG) for m in p.markers)
_WORDS = [*KEYWORD_STEMS, *(m.lower() for _, m in _MARKER_OF)]
_AUTOMATON = None if _ahocorasick is None else _ahocorasick.AhoCorasick(
    _WORDS, implementation=_ahocorasick.Implementation.DFA)
# An ASCII text is searched as bytes (offsets are the same): a str costs the automaton more.
_BYTES_AUTOMATON = None if _ahocorasick is None else _ahocorasick.BytesAhoCorasick(
    [w.encode() for w in _WORDS], implementation=_ahocorasick.Implementation.DFA)

KEYWORD = r"(?:password|passwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key|auth[_-]?key|" \
          r"private[_-]?key|client[_-]?secret|credentials?)"
VALUE = r"(?:\"(?P<dq>[^\"\n]*)\"|'(?P<sq>[^'\n]*)'|(?P<bare>[^\s\"',}\]]+))"
ASSIGNMENT = re.compile(
    r"(?<![A-Za-z0-9_])(?P<key>[A-Za-z0-9_.-]{0,40}?(?P<kw>" + KEYWORD + r")(?P<suffix>[A-Za-z0-9_.-]{0,30}))"
    r"[\"']?[ \t]*[:=][ \t]*" + VALUE, re.I)
ENV_NAME = re.compile(
    r"^\s*-?\s*name:\s*[\"']?(?P<key>[A-Za-z0-9_.-]*" + KEYWORD + r"[A-Za-z0-9_.-]*)[\"']?\s*$", re.I)
ENV_VALUE = re.compile(r"^\s*value:\s*" + VALUE)


def _value(m: re.Match[str]) -> tuple[str, int]:
    """The matched value (without quotes) and its offset in the matched text."""
    for group in ("dq", "sq", "bare"):
        if m.group(group) is not None:
            return m.group(group), m.start(group)
    return "", m.end()


# Keys that name where a secret is, not the secret: secretName, tokenFile, passwordPath, secretKeyRef...
REFERENCE_SUFFIXES = re.compile(
    r"^[_.-]?(?:name|names|file|files|path|paths|ref|keyref|dir|url|uri|endpoint|type|mode|length|ttl|"
    r"header|field|source|template|namespace|id|key|keys|store|provider|audience|expiration\w*|ref\w*|"
    r"secret(?:name|ref)?)s?$", re.I)
PLACEHOLDER = re.compile(r"^(?:\$|\{\{|<|%|ENC\[|\[|\{|\(|\*+$|x+$)", re.I)
DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
MIN_LENGTH = 12
MIN_ENTROPY = 3.5  # bits per character


def entropy(value: str) -> float:
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def looks_secret(key_suffix: str, value: str) -> bool:
    """A value of a password/token setting that looks like a real credential, not a name or reference."""
    if REFERENCE_SUFFIXES.match(key_suffix) and key_suffix:
        return False
    if len(value) < MIN_LENGTH or PLACEHOLDER.match(value) or DNS_NAME.match(value):
        return False
    if value.startswith(("/", "./", "../", "~/")) or "://" in value:
        return False  # a path or URL
    if value.isdigit() or value.lower() in ("true", "false", "null", "none"):
        return False
    has_digit = any(c.isdigit() for c in value)
    has_alpha = any(c.isalpha() for c in value)
    return has_digit and has_alpha and entropy(value) >= MIN_ENTROPY


@dataclass
class _Text:
    text: str
    _newlines: list[int] | None = None
    _docs: list[tuple[int, str, bool]] | None = None  # (start offset, kind, sops)
    _counted: int = 0  # positions found without the index

    def newlines(self) -> list[int]:
        if self._newlines is None:
            self._newlines = [m.start() for m in re.finditer("\n", self.text)]
        return self._newlines

    def position(self, offset: int) -> tuple[int, int]:
        """Line and column of offset. Asked for findings only, usually few: the first ones count the line
        breaks before them, and a text with many builds the index once."""
        if self._newlines is None and self._counted < 16:
            self._counted += 1
            start = self.line_start(offset)
            return self.text.count("\n", 0, start) + 1, offset - start + 1
        newlines = self.newlines()
        line = bisect.bisect_left(newlines, offset)
        start = newlines[line - 1] + 1 if line else 0
        return line + 1, offset - start + 1

    def line_start(self, offset: int) -> int:
        """Where the line holding offset starts: searched back over at most a few KB, then by bisection
        over the index of line breaks (a line of JSON can be megabytes long: searching back from each
        offset of such a line would take time quadratic in its length)."""
        if self._newlines is None:
            low = 0 if len(self.text) <= 65536 else max(0, offset - 4096)
            found = self.text.rfind("\n", low, offset)
            if found >= 0 or low == 0:
                return found + 1
        newlines = self.newlines()
        line = bisect.bisect_left(newlines, offset)
        return newlines[line - 1] + 1 if line else 0

    def line_text(self, offset: int) -> tuple[int, str]:
        """The line holding offset (called once per line: the search forward is not repeated)."""
        start = self.line_start(offset)
        end = self.text.find("\n", offset)
        return start, self.text[start: end if end >= 0 else len(self.text)]

    def context(self, offset: int) -> tuple[str, bool]:
        """Kind and SOPS status of the YAML document holding offset."""
        if self._docs is None:
            starts = [0] + [m.end() for m in re.finditer(r"(?m)^---[^\n]*$", self.text)]
            docs = []
            for i, s in enumerate(starts):
                chunk = self.text[s: starts[i + 1] if i + 1 < len(starts) else len(self.text)]
                found = re.search(r"(?m)^(?:kind|\s{0,4}\"kind\")\s*:\s*[\"']?(\w+)", chunk)
                has_sops = re.search(r"(?m)^(?:sops|\s{0,4}\"sops\")\s*:", chunk) is not None
                docs.append((s, found.group(1) if found else "", has_sops))
            self._docs = docs
        i = bisect.bisect_right([d[0] for d in self._docs], offset) - 1
        _, kind, sops = self._docs[max(i, 0)]
        return kind, sops


# Documents whose values are Secret material by design: checked by secret-plaintext or encrypted.
SECRET_KINDS = frozenset({"Secret", "SealedSecret"})


def _lowered(text: str) -> str:
    """The text in lower case, each character at its own offset."""
    low = text.lower()
    if len(low) != len(text):  # a few non-ASCII letters lower to two characters; keep offsets exact
        low = text.translate(_ASCII_LOWER)
    return low


def _search(text: str) -> tuple[list[int], list[list[int]]]:
    """Offsets of the keyword stems (in any case), and for each STRONG pattern the offsets of its markers
    (in their own case). Overlapping hits are all reported; only the lines they are on matter."""
    low = _lowered(text)
    if _AUTOMATON is not None and _BYTES_AUTOMATON is not None:
        try:
            if low.isascii():
                hits = _BYTES_AUTOMATON.find_matches_as_indexes(low.encode("ascii"), overlapping=True)
            else:
                hits = _AUTOMATON.find_matches_as_indexes(low, overlapping=True)
        except UnicodeEncodeError:  # a lone surrogate: the automaton reads UTF-8
            hits = None
        if hits is not None:
            stems: list[int] = []
            marks: list[list[int]] = [[] for _ in STRONG]
            count = len(KEYWORD_STEMS)
            for index, start, _ in hits:
                if index < count:
                    stems.append(start)
                else:
                    pattern, marker = _MARKER_OF[index - count]
                    if text.startswith(marker, start):
                        marks[pattern].append(start)
            return sorted(stems), [sorted(m) for m in marks]
    return _keyword_offsets(low), [_marker_offsets(text, p) for p in STRONG]


def _keyword_offsets(low: str) -> list[int]:
    """Offsets of the keyword stems in a lowered text (without the automaton)."""
    out = []
    for stem in _SINGLE_STEMS:
        i = low.find(stem)
        while i >= 0:
            out.append(i)
            i = low.find(stem, i + 1)
    for pattern in _STEM_GROUPS:  # api_key, api-key, apikey... in one pass (their matches cannot overlap)
        out.extend(m.start() for m in pattern.finditer(low))
    return sorted(out)


def _marker_offsets(text: str, p: Pattern) -> list[int]:
    """Where the pattern's markers are (without the automaton)."""
    hits: list[int] = []
    if len(p.markers) == 1:  # one literal: str.find is the fastest scan
        i = text.find(p.markers[0])
        while i >= 0:
            hits.append(i)
            i = text.find(p.markers[0], i + 1)
    else:  # matches do not overlap, but a skipped overlapping one would be on the same line
        hits = [m.start() for m in _LOCATORS[p.markers].finditer(text)]
    return hits


def _marked_lines(doc: _Text, hits: list[int]) -> Iterator[int]:
    """Start offsets of the lines that hold one of the hits, each once."""
    seen: set[int] = set()
    for i in hits:
        start = doc.line_start(i)
        if start not in seen:
            seen.add(start)
            yield start


def _strong(doc: _Text, marks: list[list[int]]) -> Iterator[Leak]:
    for p, hits in zip(STRONG, marks, strict=True):
        for start in _marked_lines(doc, hits):
            end = doc.text.find("\n", start)
            for m in p.regex.finditer(doc.text, start, end if end >= 0 else len(doc.text)):
                if doc.context(m.start())[0] in SECRET_KINDS:
                    continue
                if p.public_prefix == 4 and m.group(0).endswith("EXAMPLE"):
                    continue  # AWS's documented example key
                shown = m.group(0) if p.public_prefix == 0 else m.group(0)[: p.public_prefix] + "…"
                line, col = doc.position(m.start())
                yield Leak(line, col, f"{p.what} ({shown})")


def _generic(doc: _Text, offsets: list[int]) -> Iterator[Leak]:
    seen_lines: set[int] = set()
    for offset in offsets:
        start = doc.line_start(offset)
        if start in seen_lines:
            continue
        seen_lines.add(start)
        start, text = doc.line_text(offset)
        # An assignment needs `:` or `=` after its keyword, so after the line's first keyword (`offset`):
        # prose that only mentions a secret (CRD descriptions are full of it) skips the costly pattern.
        rel = offset - start
        assigns = _assignments(doc, start, text) if text.find(":", rel) >= 0 or text.find("=", rel) >= 0 else ()
        found = [*assigns, *_env_pair(doc, start, text)]
        if found and doc.context(start)[0] not in SECRET_KINDS:
            yield from found


def _assignments(doc: _Text, start: int, text: str) -> Iterator[Leak]:
    for a in ASSIGNMENT.finditer(text):
        value, offset = _value(a)
        if looks_secret(a.group("suffix"), value):
            line, col = doc.position(start + offset)
            yield Leak(line, col, f"a high-entropy value for {a.group('key')!r} "
                                  f"({len(value)} characters, not shown)")


def _is_name_line(text: str) -> bool:
    """Whether the line starts as ENV_NAME requires (`name:` after blanks and a `-`): most keyword lines
    do not, and the pattern's search for a keyword inside the name is costly."""
    rest = text.lstrip()
    if rest.startswith("-"):
        rest = rest[1:].lstrip()
    return rest[:5].lower() == "name:"


def _env_pair(doc: _Text, start: int, text: str) -> Iterator[Leak]:
    m = ENV_NAME.match(text) if _is_name_line(text) else None
    if m is None:
        return
    offset = start + len(text) + 1
    for _ in range(3):  # `value:` within the next lines of the same env entry
        if offset >= len(doc.text):
            return
        nstart, ntext = doc.line_text(offset)
        v = ENV_VALUE.match(ntext)
        if v is not None:
            value, voffset = _value(v)
            if looks_secret("", value):
                line, col = doc.position(nstart + voffset)
                yield Leak(line, col, f"a high-entropy value for the variable {m.group('key')!r} "
                                      f"({len(value)} characters, not shown)")
            return
        offset = nstart + len(ntext) + 1


def scan(text: str) -> list[Leak]:
    """Credentials in a file's text, in order of position."""
    doc = _Text(text)
    offsets, marks = _search(text)
    leaks = list(_strong(doc, marks))
    if offsets:
        strong_lines = {leak.line for leak in leaks}  # a token is reported once, by its own pattern
        leaks.extend(leak for leak in _generic(doc, offsets) if leak.line not in strong_lines)
    return sorted(set(leaks), key=lambda leak: (leak.line, leak.column))


def _decode(data: bytes | None) -> str | None:
    if data is None or b"\x00" in data[:8192]:
        return None
    return data.decode("utf-8", "replace")


@file_check
def credentials_in_files(entry: Entry, data: bytes | None, ctx: CheckContext) -> Iterator[Finding]:
    text = _decode(data)
    if text is None:
        return
    for leak in scan(text):
        yield finding("secret-value", entry.path, leak.line, leak.column, f"{leak.what} in {entry.path}",
                      "move it into an encrypted Secret (SOPS), a SealedSecret or an ExternalSecret and "
                      "refer to it; rotate the credential")


# ---------------------------------------------------------------------------- history

HISTORY_HINT = ("rewrite the commits before pushing (git rebase -i, git commit --amend) so that no commit "
                "holds it, and rotate the credential")


@history_check
def secrets_in_history(entry: Entry, data: bytes, commit: str, ctx: CheckContext) -> Iterator[Finding]:
    text = _decode(data)
    if text is None:
        return
    where = f"commit {commit[:12]} adds"
    allow = ctx.policy.allowances
    for leak in scan(text):
        probe = finding("secret-value", entry.path, leak.line, leak.column, "")
        if any(a.covers(probe) for a in allow):
            continue  # allowed where it is at the tip, so allowed in history
        yield finding("secret-in-history", entry.path, leak.line, leak.column,
                      f"{where} {leak.what}; history keeps it even if a later commit removes it", HISTORY_HINT)
    if entry.path.endswith((".yaml", ".yml", ".json")) and "Secret" in text:
        yield from _secrets_in_blob(entry, data, where, ctx)


def _secrets_in_blob(entry: Entry, data: bytes, where: str, ctx: CheckContext) -> Iterator[Finding]:
    from ..documents import parse

    for doc in parse(entry.path, data).documents:
        keys = plaintext_keys(doc.obj) if is_core_secret(doc.obj) else []
        if keys and not _allowed_at_tip(doc, ctx):
            line, col = doc.locate((keys[0][0], keys[0][1]), key=True)
            yield finding("secret-in-history", entry.path, line, col,
                          f"{where} a plaintext Secret: {_plaintext_message(doc, keys)}; history keeps it "
                          "even if a later commit encrypts or removes it", HISTORY_HINT, subject=doc.subject())


def _allowed_at_tip(doc: Document, ctx: CheckContext) -> bool:
    """An object the administrator allows as a plaintext Secret is allowed in history too."""
    probe = finding("secret-plaintext", doc.path, doc.line, doc.column, "", subject=doc.subject())
    return any(a.covers(probe) for a in ctx.policy.allowances)
