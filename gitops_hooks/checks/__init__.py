"""Checks: each module holds one family of rules and registers its check functions here.

Four kinds of check, by what they look at:

- document checks: `fn(doc: Document, ctx: CheckContext) -> Iterable[Finding]`, once per object
  (a YAML document with apiVersion or kind), whether it came from a plain file or a kustomize render;
- file checks: `fn(entry: Entry, data: bytes | None, ctx: CheckContext) -> Iterable[Finding]`, once per
  file of the tree that is not excluded (data is None for symlinks, submodules and oversized blobs);
- tree checks: `fn(tree: TreeView, ctx: CheckContext) -> Iterable[Finding]`, once per tree. Results of
  the other kinds are cached per blob; a tree check runs on every push, so it should use the objects'
  identities (path, line, kind, name, ...) and touch `doc.obj` or `tree.parsed` only where it must
  (that parses the file again);
- parsed-file checks: `fn(parsed: ParsedFile, ctx: CheckContext) -> Iterable[Finding]`, once per manifest
  file, with all its documents (also those that are not objects);
- history checks: `fn(entry: Entry, data: bytes, commit: str, ctx) -> Iterable[Finding]`, for every blob
  that a new commit of the push adds (pre-receive only), for rules that care about history (secrets).

Every finding names a rule registered in the catalogue (`findings.register`).
"""

from __future__ import annotations

# Built-in families. Importing a module registers its rules and checks.
from . import (  # noqa: F401  (operators' rules too: CEL and plugins)
    admin_rules,
    admission,
    cel_crd,
    core,
    deprecations,
    imperative,
    livestate,
    objects,
    plugins,
    policy,
    schema,
    secrets,
)
from .base import (
    DOCUMENT_CHECKS,
    FILE_CHECKS,
    HISTORY_CHECKS,
    PARSED_CHECKS,
    TREE_CHECKS,
    CheckContext,
    DocumentCheck,
    FileCheck,
    HistoryCheck,
    ParsedCheck,
    TreeCheck,
    TreeView,
    document_check,
    document_checks,
    file_check,
    history_check,
    only_for,
    parsed_check,
    tree_check,
)

__all__ = [
    "CheckContext",
    "TreeView",
    "DocumentCheck",
    "FileCheck",
    "TreeCheck",
    "HistoryCheck",
    "ParsedCheck",
    "DOCUMENT_CHECKS",
    "FILE_CHECKS",
    "TREE_CHECKS",
    "HISTORY_CHECKS",
    "PARSED_CHECKS",
    "parsed_check",
    "document_check",
    "only_for",
    "document_checks",
    "file_check",
    "tree_check",
    "history_check",
]
