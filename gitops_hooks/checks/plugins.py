"""Python rule plugins, found through the entry point group `gitops_hooks.checks`.

A plugin is a distribution installed next to gitops-hooks on the server whose entry point names an object
(usually a module) with:

- `RULES`: a sequence of `gitops_hooks.findings.Rule`, the plugin's rules (id, family, severity, summary,
  explanation, example), listed by `gitops-hooks rules` and explained by `gitops-hooks explain`;
- `check_document(doc, ctx)` (optional): findings for one object (`doc.obj`, `doc.path`, `doc.locate(...)`);
- `check_tree(tree, ctx)` (optional): findings for the whole tree (`tree.objects`, `tree.entries`).

Findings are made with `gitops_hooks.findings.finding(rule_id, path, line, column, message, hint)` and
must name one of the plugin's own rules. Plugins are loaded on first use, once per process. A plugin that
cannot be loaded, raises, or reports a rule it did not declare produces a `plugin-failed` error naming the
plugin: the push is refused (fail closed).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import findings as findings_mod
from ..findings import Finding, Rule, Severity, finding, register
from .base import CheckContext, TreeView, document_check, only_for, tree_check

GROUP = "gitops_hooks.checks"

register(Rule(
    "plugin-failed", "plugin", Severity.ERROR, "A rule plugin failed; the push is refused (plugins fail closed).",
    "A plugin installed by the administrator (entry point group gitops_hooks.checks) could not be loaded, "
    "raised an exception, or reported a rule it does not declare. Its rules could not be checked, so the "
    "gate refuses rather than lets the push through unchecked. The message names the plugin and the error; "
    "the administrator fixes or removes the plugin.", "",
))


@dataclass(frozen=True)
class Plugin:
    name: str  # the entry point's name
    origin: str  # distribution and version
    target: Any = None
    rules: tuple[Rule, ...] = ()
    error: str = ""

    @property
    def label(self) -> str:
        return f"plugin {self.name!r} ({self.origin})"


_LOADED: tuple[Plugin, ...] | None = None


def load_plugins() -> tuple[Plugin, ...]:
    """The installed plugins, loaded and registered on the first call only."""
    global _LOADED
    if _LOADED is None:
        from importlib.metadata import entry_points

        _LOADED = tuple(_load(ep) for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name))
    return _LOADED


def _load(ep: Any) -> Plugin:
    dist = getattr(ep, "dist", None)
    origin = f"{dist.name} {dist.version}" if dist is not None else ep.value
    try:
        target = ep.load()
        rules = tuple(getattr(target, "RULES", ()))
        if not rules or not all(isinstance(r, Rule) for r in rules):
            raise TypeError("RULES must be a non-empty sequence of gitops_hooks.findings.Rule")
        rules = tuple(dataclasses.replace(r, source=f"plugin {ep.name} ({origin})") for r in rules)
        for r in rules:
            existing = findings_mod.catalogue().get(r.id)
            if existing is not None and existing.source != r.source:
                raise ValueError(f"rule id {r.id!r} is taken by a {existing.source} rule")
            findings_mod._CATALOGUE[r.id] = r
    except Exception as exc:  # any failure of foreign code: the plugin is broken, not the gate
        return Plugin(ep.name, origin, error=f"cannot be loaded: {_one_line(exc)}")
    return Plugin(ep.name, origin, target, rules)


def load_operator_rules(repo: Path | None) -> None:
    """Put the operators' rules in the catalogue: plugins, and the administrator's rules of `repo`."""
    load_plugins()
    if repo is not None:
        from ..config import load_server_config

        load_server_config(repo)


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


@tree_check
def plugin_checks(tree: TreeView, ctx: CheckContext) -> Iterator[Finding]:
    for plugin in load_plugins():
        if plugin.error:
            yield finding("plugin-failed", ".", 1, 1, f"{plugin.label} {plugin.error}")
            continue
        yield from _run(plugin, tree, ctx)


def fingerprint() -> list[str]:
    """Which plugins (and versions) are installed: part of the result cache's keys."""
    return [p.label for p in load_plugins()]


def _document_checkers() -> list[tuple[Plugin, Callable[..., Any]]]:
    return [(p, p.target.check_document) for p in load_plugins()
            if not p.error and callable(getattr(p.target, "check_document", None))]


@document_check
@only_for(when=lambda ctx: bool(_document_checkers()))
def plugin_documents(doc: Any, ctx: CheckContext) -> Iterator[Finding]:
    """Each plugin's check_document, as a document check: its results are cached per blob like ours."""
    for plugin, check_document in _document_checkers():
        yield from _guarded(plugin, functools.partial(check_document, doc, ctx), doc)


def _guarded(plugin: Plugin, produce: Callable[[], Iterable[Finding] | None], where: Any) -> list[Finding]:
    """A plugin's findings, each one of its own rules; a plugin that raises gives one plugin-failed."""
    try:
        return _own(plugin, {r.id for r in plugin.rules}, produce())
    except Exception as exc:
        return [_failed(plugin, exc, where)]


def _failed(plugin: Plugin, exc: Exception, where: Any) -> Finding:
    path, line, col = (where.path, where.line, where.column) if where is not None else (".", 1, 1)
    about = f" on {where.describe()}" if where is not None else ""
    return finding("plugin-failed", path, line, col, f"{plugin.label} raised{about}: {_one_line(exc)}",
                   "the push is refused because the plugin's rules could not be checked; tell the administrator")


def _run(plugin: Plugin, tree: TreeView, ctx: CheckContext) -> Iterator[Finding]:
    check_tree = getattr(plugin.target, "check_tree", None)
    if callable(check_tree):
        yield from _guarded(plugin, functools.partial(check_tree, tree, ctx), None)


def _own(plugin: Plugin, own: set[str], found: Iterable[Finding] | None) -> list[Finding]:
    out = list(found or ())
    for f in out:
        if not isinstance(f, Finding) or f.rule not in own:
            raise ValueError(f"reported {getattr(f, 'rule', f)!r}, which is not one of its rules {sorted(own)}")
    return out
