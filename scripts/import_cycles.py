"""Print the import cycles of the gitops_hooks package: every import counts, lazy ones inside functions
too (as import-linter reads them), but not those under `if TYPE_CHECKING:` (they never run).

    .venv/bin/python scripts/import_cycles.py            # modules
    .venv/bin/python scripts/import_cycles.py --units    # subpackages (checks, cel, reconcile, ...) as one unit

Exit status 1 when there is a cycle.
"""

from __future__ import annotations

import argparse
import sys

import grimp

PACKAGE = "gitops_hooks"


def unit_of(module: str, graph: grimp.ImportGraph, squash: bool) -> str:
    """The module itself, or with --units the top-level room it belongs to (a subpackage or a module)."""
    if not squash:
        return module
    parts = module.split(".")
    return ".".join(parts[:2])


def edges(squash: bool) -> dict[str, set[str]]:
    graph = grimp.build_graph(PACKAGE, exclude_type_checking_imports=True)
    out: dict[str, set[str]] = {}
    for module in graph.modules:
        source = unit_of(module, graph, squash)
        out.setdefault(source, set())
        for imported in graph.find_modules_directly_imported_by(module):
            target = unit_of(imported, graph, squash)
            if target != source and target.startswith(PACKAGE):
                out[source].add(target)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one unit (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", action="store_true", help="count subpackages as one unit each")
    args = parser.parse_args()
    graph = edges(args.units)
    found = cycles(graph)
    total = sum(len(c) for c in found)
    what = "units" if args.units else "modules"
    print(f"{len(graph)} {what}; {total} in {len(found)} cycle(s)")
    for component in found:
        print(f"  cycle of {len(component)}: " + ", ".join(m.removeprefix(PACKAGE + ".") for m in component))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
