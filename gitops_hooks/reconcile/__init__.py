"""Reconciliation: make a cluster match the accepted state of an environment's folder.

Light to import: only `kube`, `apply`, `inventory`, `health`, `plan` and `backends` touch the
`kubernetes` client, and the pre-receive path never imports them unless a dry run is asked for.

    environments ─► desired (documents at the commit, substituted) ─► plan / apply (staged server-side
    apply, inventory, prune) ─► health ─► audit (a git note) ; state keeps the lock and pending records
"""
