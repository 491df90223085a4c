"""The rule catalogue, assembled where a program starts.

Each family of rules registers itself when its module is imported (`findings.register`). The bottom
layer does not reach up to find them: the entry points (the command line, the hooks, the gate server,
the hosted service) call `register_all` once, before they load a configuration or list the rules.
"""

from __future__ import annotations

from .findings import Rule, catalogue


def register_all() -> dict[str, Rule]:
    """Import every module that registers rules; the whole catalogue."""
    from . import checks, kubeconform  # noqa: F401  (registration side effect)
    from .reconcile import desired  # noqa: F401  (reconcile-* rules; no Kubernetes client imported)

    return catalogue()
