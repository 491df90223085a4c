"""Fuzzing the document layer and every check: generated YAML trees through `documents.parse`, the
repository policy reader and the whole `pipeline.check_snapshot`. Findings are fine; any exception is a bug.

Bounded for CI (about a minute). Run longer locally with, e.g.,
`GITOPS_HOOKS_FUZZ_EXAMPLES=20000 pytest tests/fuzz -q`. Seeds in `tests/fuzz/seeds/` are run as they are
and are also the starting points of byte mutations; add every input that once broke the gate there.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

from strategies import SEEDS, file_bytes, seed_bytes, tree  # noqa: E402

from gitops_hooks import config, documents  # noqa: E402
from gitops_hooks.documents import Limits  # noqa: E402
from gitops_hooks.findings import Finding  # noqa: E402
from gitops_hooks.gitrepo import MODE_EXEC, MODE_FILE, MODE_LINK, Entry, Snapshot, blob_id  # noqa: E402
from gitops_hooks.pipeline import check_snapshot, make_context  # noqa: E402
from gitops_hooks.prereceive import repo_policy  # noqa: E402

EXAMPLES = int(os.environ.get("GITOPS_HOOKS_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=EXAMPLES or 800,  # CI: about 30 s for both targets on two cores
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    database=None,
    derandomize=EXAMPLES == 0,  # CI: the same examples every run; locally (env var set): new ones
)
SERVER = config.checked({"kustomize": {"enabled": True, "kubectl": "kubectl"}}, "fuzz")
# Small limits so that generated input reaches them too.
SMALL = Limits(max_file_bytes=4096, max_documents=3, max_nodes=50, max_key_bytes=64)


class MemTree(Snapshot):
    """An in-memory tree: what a pushed commit would hold, without git."""

    def __init__(self, files: dict[str, bytes], links: frozenset[str] = frozenset()) -> None:
        self.label = "fuzz"
        self.files = files
        self.links = links

    def entries(self) -> list[Entry]:
        out = []
        for path, data in sorted(self.files.items()):
            mode = MODE_LINK if path in self.links else MODE_EXEC if path.endswith(".sh") else MODE_FILE
            out.append(Entry(path, mode, blob_id(data), len(data)))
        return out

    def read(self, entry: Entry) -> bytes:
        return self.files[entry.path]


def check_parse(path: str, data: bytes, limits: Limits = documents.DEFAULT_LIMITS) -> None:
    parsed = documents.parse(path, data, limits)
    assert all(isinstance(f, Finding) for f in parsed.findings)
    for doc in parsed.documents:
        assert isinstance(doc.obj, dict)
        doc.locate(("metadata", "name"))
        doc.locate(("spec", 0, "x"), key=True)
        doc.raw_scalar(("kind",))
        doc.describe()
    for f in parsed.findings:
        assert f.line >= 1 and f.column >= 1, f
        assert "\n" not in f.message, f  # one finding is one line of the report


def check_tree(files: dict[str, bytes], links: frozenset[str] = frozenset()) -> None:
    snap = MemTree(files, links)
    merged, notes = repo_policy(snap, SERVER)
    policy = config.Policy(merged, tuple(notes))
    result = check_snapshot(snap, policy, "refs/heads/main", context=make_context(policy, "refs/heads/main"))
    for f in result.findings:
        assert isinstance(f, Finding)
        assert f.line >= 1 and f.column >= 1, f


@pytest.mark.parametrize("name", [n for n, _ in seed_bytes()])
def test_seed(name: str) -> None:
    data = (SEEDS / name).read_bytes()
    path = name if name.endswith((".yaml", ".yml", ".json")) else name + ".yaml"
    check_parse(path, data)
    check_parse(path, data, SMALL)
    check_tree({path: data, "apps/" + path: data})
    check_tree({"k/kustomization.yaml": data, "k/" + path: data})


@FUZZ
@given(data=file_bytes(), json_name=st.booleans())
def test_parse_never_raises(data: bytes, json_name: bool) -> None:
    path = "x.json" if json_name else "x.yaml"
    check_parse(path, data)
    check_parse(path, data, SMALL)
    # The fast path and the careful path must agree wherever the fast path answers.
    text, problem = documents.decode(path, data)
    if text is not None and not json_name:
        fast = documents._fast(path, text, documents.DEFAULT_LIMITS, documents.SourceFile(path, text))
        if fast is not None:
            careful = documents.parse_yaml_careful(path, text)
            def seen(pf: documents.ParsedFile) -> str:  # repr: NaN equals itself
                return repr([(d.index, d.line, d.obj) for d in pf.documents])

            same = seen(fast) == seen(careful)
            assert same or careful.findings


@FUZZ
@given(files=tree(), link=st.booleans())
def test_pipeline_never_raises(files: dict[str, bytes], link: bool) -> None:
    links = frozenset(p for p in files if link and p.endswith("kustomization.yaml"))
    check_tree(files, links)
