"""Compile once, evaluate many times: the CEL engine behind every CEL rule of the gate.

Outcomes are plain values. A rule the engine cannot evaluate faithfully (a function we do not provide, an
expression that does not type-check, a call no overload accepts at run time) is *not evaluated*, with the
function named, so that callers report it as such instead of passing or failing the object.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Variables = tuple[str, ...]

_UNDECLARED = re.compile(r"undeclared reference to '([^']+)'")
_NO_OVERLOAD = re.compile(r"found no matching overload for '([^']+)'")
_RUNTIME_NO_OVERLOAD = re.compile(r"No matching overloads found : (?:\(([^)]*)\)\.)?([\w.]+)\(")
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Compiled:
    """One expression compiled for one set of variables; `program` is None when it cannot be run."""

    source: str
    variables: Variables
    program: Any = None
    not_evaluated: str = ""  # why it cannot be run, naming the function when there is one
    uses_old_self: bool = False  # a transition rule

    @property
    def ok(self) -> bool:
        return self.program is not None


@dataclass(frozen=True)
class Outcome:
    value: Any = None
    error: str = ""  # the evaluation failed (as it would in the API server)
    not_evaluated: str = ""  # we could not evaluate it faithfully


@functools.lru_cache(maxsize=16)
def _env(variables: Variables) -> Any:
    from cel_expr_python import cel
    from cel_expr_python.ext import ext_optional, ext_strings

    from .k8slib import declarations

    return cel.NewEnv(
        variables={name: cel.Type.DYN for name in variables},
        extensions=[ext_strings.ExtStrings(), ext_optional.ExtOptional()],
        functions=declarations(),
    )


def prepare(*variable_sets: Variables) -> None:
    """Build the environments for these variables now (the gate server does it once, at start: the
    first costs about 10 ms, and forked workers inherit them)."""
    for variables in variable_sets:
        _env(variables)


_CACHE: dict[tuple[Variables, str], Compiled] = {}


def compile_expr(source: str, variables: Variables) -> Compiled:
    """The compiled expression, from the cache when it was compiled before in this process."""
    key = (variables, source)
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    with _LOCK:
        compiled = _compile(source, variables)
        _CACHE[key] = compiled
    return compiled


def _compile(source: str, variables: Variables) -> Compiled:
    transition = "oldSelf" in identifiers(source)
    try:
        program = _env(variables).compile(_prepare(source))
    except Exception as exc:  # cel-cpp reports every compile problem as RuntimeError
        return Compiled(source, variables, None, _compile_problem(str(exc)), transition)
    return Compiled(source, variables, program, "", transition)


def _compile_problem(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else "does not compile"
    m = _UNDECLARED.search(text)
    if m:
        return f"uses {m.group(1)}, which this gate does not provide"
    m = _NO_OVERLOAD.search(text)
    if m:
        return f"calls {m.group(1)}() with arguments this gate has no overload for"
    first = re.sub(r"^[A-Z_]+: (ERROR: )?(<input>:\d+:\d+: )?", "", first)
    return f"does not compile: {first}"


def activation(variables: Variables, data: dict[str, Any]) -> Any:
    """Bindings for the variables, reusable across the expressions compiled for the same variables."""
    return _env(variables).Activation(data)


def evaluate(compiled: Compiled, bindings: Any) -> Outcome:
    if compiled.program is None:
        return Outcome(not_evaluated=compiled.not_evaluated)
    try:
        result = compiled.program.eval(bindings)
    except Exception as exc:  # the bindings raise for some errors (the iteration budget) instead of returning them
        return _failure(str(exc))
    if result.type() == _error_type():
        return _failure(str(result.value()))
    return Outcome(value=_plain(result))


def _failure(text: str) -> Outcome:
    """An evaluation error, or "not evaluated" when the error is the gate's limit and not the rule's verdict."""
    m = _RUNTIME_NO_OVERLOAD.search(text)
    if m:
        receiver = f" on a {m.group(1)}" if m.group(1) else ""
        return Outcome(not_evaluated=f"calls {m.group(2)}(){receiver} with arguments this gate has no overload for")
    if "Non-CEL value type" in text:
        return Outcome(not_evaluated="reads a value this gate cannot hand to CEL")
    if "Iteration budget exceeded" in text:  # the bindings stop at 10,000 comprehension steps
        return Outcome(not_evaluated="needs more than the engine's 10,000 comprehension iterations")
    return Outcome(error=_clean(text))


@functools.lru_cache(maxsize=1)
def _error_type() -> Any:
    from cel_expr_python import cel

    return cel.Type.ERROR


def _plain(result: Any) -> Any:
    try:
        return result.plain_value()
    except Exception:
        return result.value()


def _clean(text: str) -> str:
    text = re.sub(r"^[A-Z_]+: ", "", text.strip()).splitlines()[0] if text.strip() else "evaluation error"
    return text.replace("Key not found in map : ", "no such key: ")


_STRING_LITERAL = re.compile(r"(?s)('''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\])*'|\"(?:\\.|[^\"\\])*\")")


def rule_message(rule: dict[str, Any], run: Callable[[str], Outcome], fallback: str) -> str:
    """A failed rule's message as the API server words it: what `messageExpression` gives (run by `run`),
    when that is a non-empty string, else `message`, else the fallback."""
    expr = rule.get("messageExpression")
    if isinstance(expr, str) and expr.strip():
        text = first_line(run(expr))
        if text:
            return text
    message = rule.get("message")
    if isinstance(message, str) and message.strip():
        return message.strip()
    return fallback


def first_line(outcome: Outcome) -> str:
    """A message expression's value as a one-line message; "" unless it is a non-empty string."""
    if isinstance(outcome.value, str) and outcome.value.strip():
        return outcome.value.strip().splitlines()[0]
    return ""


def identifiers(source: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", _STRING_LITERAL.sub("''", source)))


def _prepare(source: str) -> str:
    """The source as the engine compiles it: format library calls rewritten to give optionals."""
    if "validate" not in source and "named" not in source:
        return source
    from .formats import rewrite

    literals: list[str] = []

    def keep(m: re.Match[str]) -> str:
        literals.append(m.group(0))
        return f"\x00{len(literals) - 1}\x00"

    code = rewrite(_STRING_LITERAL.sub(keep, source))
    return re.sub(r"\x00(\d+)\x00", lambda m: literals[int(m.group(1))], code)


def replace_identifier(source: str, name: str, replacement: str) -> str:
    """The expression with a variable (not a field, not inside a string literal) replaced by an expression."""
    pattern = re.compile(rf"(?<![\w.]){re.escape(name)}\b")
    parts = _STRING_LITERAL.split(source)
    return "".join(p if i % 2 else pattern.sub(replacement, p) for i, p in enumerate(parts))
