"""CEL for the gate: one engine, the Kubernetes CEL libraries, and structural values from CRD schemas.

The engine is cel-expr-python (Google's cel-cpp behind Python bindings), chosen on measurement (see
bench/bench_cel.py and the project's README): it type-checks at compile time, so a function we do not
provide is named at compile time instead of being mistaken for a failing rule, and it evaluates in
microseconds. Every expression is compiled once per process and cached.

- `engine`: compile (cached) and evaluate; outcomes are values, errors or "not evaluated".
- `k8slib`: the Kubernetes libraries (lists, sets, regex, quantity, url, ip and cidr) on top of the
  engine's standard, strings and optional libraries.
- `structural`: object values as the API server hands them to CEL (defaults applied, property names
  escaped) walked together with their schema.
"""

from .engine import Compiled, Outcome, activation, compile_expr, evaluate

__all__ = ["Compiled", "Outcome", "activation", "compile_expr", "evaluate"]
