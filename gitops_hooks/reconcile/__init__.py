"""Reconciliation of accepted state with a cluster."""
