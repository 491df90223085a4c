"""The Kubernetes CEL libraries as documented ("CEL in Kubernetes"), through the gate's engine."""

from __future__ import annotations

import pytest

from gitops_hooks.cel import activation, compile_expr, evaluate
from gitops_hooks.cel.structural import escape, to_cel

V = ("self",)

CASES = [
    # lists
    ("[1, 2, 3].isSorted()", True), ("['b', 'a'].isSorted()", False), ("[1, 2, 3].sum()", 6),
    ("[3, 1, 2].min()", 1), ("[3, 1, 2].max()", 3),
    # sets
    ("sets.contains([1, 2, 3, 4], [2, 3])", True), ("sets.equivalent([1, 2], [2, 1, 1])", True),
    ("sets.intersects([1, 2], [3])", False),
    # regex
    ("'abc 123'.find('[0-9]+')", "123"), ("'123 abc 456'.findAll('[0-9]+')", ["123", "456"]),
    ("'123 abc 456'.findAll('[0-9]+', 1)", ["123"]), ("'Ab'.matches('(?i)^ab$')", True),
    # quantity
    ("quantity('1Gi') == quantity('1024Mi')", True), ("quantity('500m').isLessThan(quantity('1'))", True),
    ("quantity('1.5').isInteger()", False), ("quantity('2k').asInteger()", 2000), ("isQuantity('1e3')", True),
    ("isQuantity('1.0.0')", False), ("quantity('50k').add(quantity('20k')) == quantity('70k')", True),
    ("quantity('50k').sub(20000) == quantity('30k')", True), ("quantity('-1').sign()", -1),
    ("quantity('200M').compareTo(quantity('0.2G'))", 0),
    # url
    ("url('https://example.com:8080/path').getHost()", "example.com:8080"),
    ("url('https://[::1]:80/').getHostname()", "::1"), ("url('https://example.com/').getPort()", ""),
    ("url('/absolute-path').getScheme()", ""), ("url('https://example.com/path with spaces/').getEscapedPath()", None),
    ("url('https://example.com/?k=a&k=b').getQuery()", {"k": ["a", "b"]}), ("isURL('example.com')", False),
    # ip and cidr
    ("isIP('127.0.0.1')", True), ("isIP('::ffff:1.2.3.4')", False), ("isIP('1.2.3.4%eth0')", False),
    ("ip('2001:db8::1').family()", 6), ("ip('127.0.0.1').isLoopback()", True),
    ("ip('fe80::1').isLinkLocalUnicast()", True), ("ip('224.0.0.1').isLinkLocalMulticast()", True),
    ("ip('10.0.0.1').isGlobalUnicast()", True), ("ip.isCanonical('2001:db8::0')", False),
    ("cidr('192.168.0.0/24').containsIP(ip('192.168.0.1'))", True),
    ("cidr('192.168.0.0/24').containsIP('192.168.1.1')", False),
    ("cidr('192.168.0.0/16').containsCIDR('192.168.10.0/24')", True),
    ("cidr('192.168.0.1/24').masked() == cidr('192.168.0.0/24')", True),
    ("cidr('192.168.0.1/24').ip() == ip('192.168.0.1')", True), ("cidr('::1/128').prefixLength()", 128),
    # semver
    ("semver('1.2.3').isLessThan(semver('1.10.0'))", True), ("semver('1.0.0-alpha') == semver('1.0.0-alpha+build')", True),
    ("semver('1.0.0-alpha.1').compareTo(semver('1.0.0-alpha.beta'))", -1),
    ("semver('1.0.0').isGreaterThan(semver('1.0.0-rc.1'))", True),
    ("isSemver('1.2')", False), ("isSemver('v1.2', true)", True), ("semver('v01.2', true).major()", 1),
    ("semver('2.3.4').minor()", 3), ("semver('2.3.4').patch()", 4),
    # format
    ("format.dns1123Label().validate('my-name').hasValue()", False),
    ("format.dns1123Label().validate('My_Name').value().size()", 1),
    ("format.dns1035Label().validate('1abc').hasValue()", True),
    ("format.named('dns1123Subdomain').value().validate('example.com').hasValue()", False),
    ("format.named('unknown').hasValue()", False), ("format.labelValue().validate('').hasValue()", False),
    ("format.qualifiedName().validate('example.com/MyName').hasValue()", False),
    ("format.dns1123LabelPrefix().validate('web-').hasValue()", False), ("format.uuid().validate('x').hasValue()", True),
    ("format.datetime().validate('2024-01-01T00:00:00Z').hasValue()", False),
    ("'a.validate(b)'.size()", 13),
    # strings and optionals from the engine's libraries
    ("'a/b/c'.split('/').size()", 3), ("'Hello'.lowerAscii()", "hello"), ("'hello'.substring(1, 3)", "el"),
    ("self.?missing.orValue('none')", "none"),
]


@pytest.mark.parametrize(("expression", "expected"), CASES)
def test_library_functions(expression: str, expected: object) -> None:
    outcome = evaluate(compile_expr(expression, V), activation(V, {"self": {}}))
    if expected is None:  # an error, as in Kubernetes (url() refuses a space)
        assert outcome.error and outcome.value is None
        return
    assert outcome.error == "" and outcome.not_evaluated == ""
    assert outcome.value == expected


@pytest.mark.parametrize(("expression", "named"), [
    ("authorizer.group('apps').resource('deployments').check('create').allowed()", "authorizer"),
    ("string(ip('1.2.3.4')) == '1.2.3.4'", "string"),
    ("self.items.indexOf(1) == 0", "indexOf"),
])
def test_missing_functions_are_not_evaluated_and_named(expression: str, named: str) -> None:
    outcome = evaluate(compile_expr(expression, V), activation(V, {"self": {"name": "a", "items": [1]}}))
    assert outcome.value is None and outcome.error == ""
    assert named in outcome.not_evaluated


def test_errors_are_errors_not_results() -> None:
    bindings = activation(V, {"self": {"a": 1}})
    assert "no such key" in evaluate(compile_expr("self.b == 1", V), bindings).error
    assert "must match the regular expression" in evaluate(compile_expr("quantity('x').isInteger()", V), bindings).error


def test_expressions_are_compiled_once() -> None:
    assert compile_expr("self.a > 1", V) is compile_expr("self.a > 1", V)


def test_structural_values_escape_names_prune_nulls_and_apply_defaults() -> None:
    schema = {"type": "object", "properties": {
        "namespace": {"type": "string"}, "a-b": {"type": "string"}, "x__y": {"type": "string"},
        "mode": {"type": "string", "default": "Terminate"}, "ratio": {"type": "number"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}}, "gone": {"type": "string"},
    }}
    value = to_cel({"namespace": "n", "a-b": "v", "x__y": "w", "ratio": 1, "labels": {"a-b": "c"}, "gone": None}, schema)
    assert value == {"__namespace__": "n", "a__dash__b": "v", "x__underscores__y": "w", "ratio": 1.0,
                     "labels": {"a-b": "c"}, "mode": "Terminate"}
    assert escape("foo.bar/baz") == "foo__dot__bar__slash__baz"
    assert escape("1x y") is None


def test_iteration_budget_of_the_engine_is_not_a_failure() -> None:
    # Kubernetes allows far more work per expression; a rule the engine stops is not evaluated, never failed.
    bindings = activation(V, {"self": {"items": list(range(20000))}})
    outcome = evaluate(compile_expr("self.items.all(i, i >= 0)", V), bindings)
    assert outcome.value is None and outcome.error == ""
    assert "10,000 comprehension iterations" in outcome.not_evaluated
    small = activation(V, {"self": {"items": list(range(5000))}})
    assert evaluate(compile_expr("self.items.all(i, i >= 0)", V), small).value is True
