"""The YAML layer: YAML as kubectl reads it, positions, and bad input that must never crash or hang."""

from __future__ import annotations

import time
from pathlib import Path

from gitops_hooks.documents import Limits, parse


def rules(data: bytes, path: str = "m.yaml", limits: Limits | None = None) -> list[tuple[str, int, int]]:
    parsed = parse(path, data, limits or Limits())
    return [(f.rule, f.line, f.column) for f in parsed.findings]


def test_multi_document_and_comment_only_documents() -> None:
    parsed = parse("m.yaml", b"# header\n---\na: 1\n---\n# only a comment\n---\n---\nb: 2\n")
    assert [d.obj for d in parsed.documents] == [{"a": 1}, {"b": 2}]
    assert [d.line for d in parsed.documents] == [3, 8]
    assert parsed.findings == []


def test_duplicate_key_is_an_error_with_both_lines() -> None:
    parsed = parse("m.yaml", b"metadata:\n  name: a\n  name: b\n")
    [f] = parsed.findings
    assert (f.rule, f.line, f.column) == ("yaml-duplicate-key", 3, 3)
    assert f.message == "duplicate key 'name' (first defined on line 2)"


def test_not_a_mapping() -> None:
    assert rules(b"- a\n- b\n") == [("yaml-not-mapping", 1, 1)]
    assert rules(b"just text\n") == [("yaml-not-mapping", 1, 1)]


def test_yaml_11_scalars_read_as_go_yaml_does() -> None:
    [doc] = parse("m.yaml", b"a: yes\nb: off\nc: y\nd: '='\ne: =\nf: 2024-01-01\ng: 0x1F\nh: ~\n").documents
    assert doc.obj == {"a": True, "b": False, "c": True, "d": "=", "e": "=", "f": "2024-01-01", "g": 31, "h": None}


def test_positions_by_pointer() -> None:
    [doc] = parse("m.yaml", b"a:\n  b:\n    - x\n    - y: 1\n").documents
    assert doc.locate(("a", "b", 1, "y")) == (4, 10)
    assert doc.locate(("a", "missing")) == (1, 1) or doc.locate(("a", "missing")) == (2, 3)


def test_python_tags_are_refused_not_constructed() -> None:
    assert rules(b"a: !!python/object/apply:os.system ['true']\n") == [("yaml-tag", 1, 4)]
    assert rules(b"a: !custom x\n") == [("yaml-tag", 1, 4)]


def test_invalid_utf8_binary_and_empty() -> None:
    assert rules(b"a: \xff\xfe\n") == [("file-encoding", 1, 4)]
    assert rules(b"\x89PNG\r\n\x1a\n\x00\x00") == [("file-binary", 1, 1)]
    assert parse("m.yaml", b"").documents == [] and rules(b"") == []


def test_bom_and_crlf_are_accepted() -> None:
    [doc] = parse("m.yaml", "\ufeffa: 1\r\nb: x\r\n".encode()).documents
    assert doc.obj == {"a": 1, "b": "x"}


def test_alias_bomb_is_bounded_and_fast() -> None:
    lines = ["a: &a [x,x,x,x,x,x,x,x,x,x]"]
    for i in range(1, 10):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 10) + "]")
    started = time.perf_counter()
    found = rules("\n".join(lines).encode())
    assert found == [("yaml-alias", 1, 1)]
    assert time.perf_counter() - started < 5


def test_recursive_alias_and_merge_loop() -> None:
    assert rules(b"a: &a\n  b: *a\n")[0][0] == "yaml-alias"
    assert rules(b"a: &a\n  <<: *a\n")[0][0] == "yaml-alias"


def test_merge_keys_work_like_kubectl() -> None:
    [doc] = parse("m.yaml", b"base: &b {x: 1, z: 2}\nthing:\n  <<: *b\n  z: 3\n").documents
    assert doc.obj["thing"] == {"x": 1, "z": 3}


def test_yaml_11_boolean_keys_become_strings_as_in_kubectl() -> None:
    [doc] = parse("m.yaml", b"on: push\n").documents
    assert doc.obj == {"true": "push"}
    [f] = parse("m.yaml", b"on: push\ny: 1\n").findings
    assert f.message == "duplicate key 'y' (read as 'true') (first defined on line 1)"



def test_deep_nesting_is_an_error_not_a_crash() -> None:
    deep = b"a: " + b"[" * 100_000 + b"]" * 100_000
    assert rules(deep)[0][0] in ("yaml-syntax", "yaml-limits")
    block = "".join(f"{' ' * i}k:\n" for i in range(3000)).encode()
    assert rules(block)[0][0] in ("yaml-syntax", "yaml-limits")


def test_size_limit_refuses_before_reading() -> None:
    assert rules(b"a: 1\n" * 10, limits=Limits(max_file_bytes=20)) == [("file-too-large", 1, 1)]


def test_twenty_megabyte_file_parses() -> None:
    big = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata:\n" + b"".join(
        b"  k%d: %s\n" % (i, b"v" * 200) for i in range(95_000)
    )
    assert len(big) > 19_000_000
    parsed = parse("m.yaml", big)
    assert parsed.findings == [] and len(parsed.documents[0].obj["data"]) == 95_000


def test_too_many_documents() -> None:
    data = b"---\na: 1\n" * 20
    assert rules(data, limits=Limits(max_documents=5)) == [("yaml-limits", 12, 1)]  # the sixth document


def test_unrendered_template_is_named_as_such() -> None:
    data = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Values.name }}\n"
    [(rule, line, _)] = rules(data)
    assert (rule, line) == ("template-unrendered", 4)


def test_json_manifests() -> None:
    [doc] = parse("m.json", b'{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}').documents
    assert doc.kind == "Namespace"
    assert rules(b'{"a": 1, "a": 2}', path="m.json")[0][0] == "yaml-duplicate-key"
    assert rules(b'{"a": ', path="m.json")[0][0] == "yaml-syntax"


def test_go_yaml_numbers() -> None:
    [doc] = parse("m.yaml", b"a: 10:30\nb: 1e5\nc: 0755\nd: 0o17\ne: 0x1F\nf: 1_000\ng: .inf\nh: 08\n").documents
    assert doc.obj == {"a": "10:30", "b": 100000.0, "c": 493, "d": 15, "e": 31, "f": 1000, "g": float("inf"), "h": 8.0}


def _both_ways(path: str, text: str) -> tuple[object, object]:
    from gitops_hooks.documents import DEFAULT_LIMITS, SourceFile, _fast, parse_yaml_careful

    fast = _fast(path, text, DEFAULT_LIMITS, SourceFile(path, text))
    careful = parse_yaml_careful(path, text)
    assert careful.findings == []
    key = [(d.index, d.line, d.column, d.prefix, d.obj) for d in careful.documents]
    return (None if fast is None else [(d.index, d.line, d.column, d.prefix, d.obj) for d in fast.documents]), key


def _in_chart_templates(path: Path) -> bool:
    return any(parent.name == "templates" and (parent.parent / "Chart.yaml").is_file() for parent in path.parents)


def test_fast_path_reads_exactly_as_the_careful_path_on_the_corpora() -> None:
    """Every real manifest: the yaml-rs fast path gives the same objects and lines, or declines."""
    from conftest import CORPUS, CRDS, need_corpus

    need_corpus()
    used = 0
    files = [p for root in (CORPUS, CRDS) for p in sorted(root.rglob("*")) if p.suffix in (".yaml", ".yml")
             and not _in_chart_templates(p)]  # Helm templates are not YAML until rendered
    for p in files:
        fast, careful = _both_ways(str(p), p.read_text(encoding="utf-8"))
        if fast is not None:
            used += 1
            assert fast == careful, p
    assert used > len(files) // 2  # the fast path is really taken


def test_fast_path_declines_what_yaml_11_reads_differently() -> None:
    for text in ("a: yes\n", "a: 0755\n", "on: push\n", "a: &x 1\nb: *x\n", "a: !!str 5\n", "x: {<<: {a: 1}}\n",
                 "a: |\n  no final newline", "80: http\n"):
        fast, careful = _both_ways("m.yaml", text)
        assert fast is None, text
        del careful
    fast, careful = _both_ways("m.yaml", "a: 'yes-but-quoted'\nb: x!=y\nc: a && b\n---\n---\nd: [1, 2]\n")
    assert fast == careful == [(0, 1, 1, (), {"a": "yes-but-quoted", "b": "x!=y", "c": "a && b"}),
                               (2, 6, 1, (), {"d": [1, 2]})]
