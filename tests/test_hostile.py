"""Named hostile input, each as a real push to a guarded bare repository (extends test_tree/test_documents).

Every case must end in a definite answer the pusher can act on: a finding with file and line, never a
traceback, never a hang, and nothing outside the repository read or run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Clone, Server, git
from test_gate_e2e import DEPLOYMENT

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n"


def rule_lines(lines: list[str], rule: str) -> list[str]:
    return [x for x in lines if f"[{rule}]" in x]


def assert_clean_refusal(server: Server, push_output: str, before: str | None) -> None:
    assert "Traceback" not in push_output
    assert "internal error" not in push_output
    assert server.rev() == before


def commit_tree(clone: Clone, tree: str, message: str = "crafted") -> str:
    parent = git("rev-parse", "--verify", "--quiet", "HEAD", cwd=clone.path, check=False).stdout.strip()
    args = ["commit-tree", tree, "-m", message] + (["-p", parent] if parent else [])
    sha = git(*args, cwd=clone.path).stdout.strip()
    git("update-ref", "HEAD", sha, cwd=clone.path)
    return sha


def test_python_object_tags_are_refused_and_never_constructed(server: Server, clone: Clone, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    clone.write("cm.yaml", CM.format(name="pwn") + f"  a: !!python/object/apply:os.system ['touch {marker}']\n"
                f"  b: !!python/object:subprocess.Popen {{args: ['touch', '{marker}']}}\n")
    clone.write(".gitops-hooks.yaml", f"rules: !!python/object/apply:os.system ['touch {marker}']\n")
    clone.commit()
    push = clone.push()
    assert not push.accepted
    tags = rule_lines(push.remote_lines(), "yaml-tag")
    assert any(x.startswith("cm.yaml:7:6: error [yaml-tag] the YAML tag !!python/object/apply:os.system") for x in tags)
    assert any(x.startswith(".gitops-hooks.yaml:1:8: error [yaml-tag] repository policy unreadable: the YAML tag "
                            "!!python/object/apply:os.system") for x in tags), tags
    assert not marker.exists()
    assert_clean_refusal(server, push.output, None)


def test_alias_bomb_in_the_repository_policy_is_refused_at_once(server: Server, clone: Clone) -> None:
    """The pushed `.gitops-hooks.yaml` is hostile input too: read by the gate's bounded parser, not PyYAML's
    loader (an alias bomb there used to keep the hook busy until limits.timeout_seconds)."""
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    clone.write(".gitops-hooks.yaml", "\n".join(lines) + "\nrules: {x: *i}\n")
    clone.write("cm.yaml", CM.format(name="ok"))
    clone.commit()
    started = time.monotonic()
    push = clone.push()
    assert time.monotonic() - started < 20
    assert (".gitops-hooks.yaml:1:1: error [yaml-alias] repository policy unreadable: aliases expand this document "
            "beyond 2000000 values (an alias bomb?)") in push.remote_lines(), push.output
    assert_clean_refusal(server, push.output, None)


def test_explicit_scalar_tags_that_cannot_hold_their_text(server: Server, clone: Clone) -> None:
    # Found by the fuzzer: `!!float x` used to crash the parser (internal error) instead of a finding.
    clone.write("cm.yaml", CM.format(name="t") + "  a: !!float x\n")
    clone.write("b.yaml", CM.format(name="u") + "  b: !!bool maybe\n")
    clone.commit()
    push = clone.push()
    lines = rule_lines(push.remote_lines(), "yaml-tag")
    assert "cm.yaml:7:6: error [yaml-tag] cannot read 'x' as !!float" in lines
    assert "b.yaml:7:6: error [yaml-tag] cannot read 'maybe' as !!bool" in lines
    assert_clean_refusal(server, push.output, None)


def test_merge_key_loops(server: Server, clone: Clone) -> None:
    clone.write("loop.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: &m\n  name: loop\n  <<: *m\n")
    clone.write("self.yaml", "a: &a\n  b: &b\n    <<: *a\n")
    clone.commit()
    started = time.monotonic()
    push = clone.push()
    assert time.monotonic() - started < 30
    lines = rule_lines(push.remote_lines(), "yaml-alias") + rule_lines(push.remote_lines(), "yaml-syntax")
    assert any(x.startswith("loop.yaml:") for x in lines), push.output
    assert any(x.startswith("self.yaml:") for x in lines), push.output
    assert_clean_refusal(server, push.output, None)


def test_ten_thousand_documents_in_one_file(server: Server, clone: Clone) -> None:
    clone.write("many.yaml", "---\n".join(CM.format(name=f"cm-{i}") for i in range(10_000)))
    clone.commit()
    push = clone.push()
    assert push.accepted, push.output[-2000:]
    assert any("1 files, 1 manifests, 10000 objects: 0 errors" in x for x in push.remote_lines())
    clone.write("many.yaml", "---\n".join(CM.format(name=f"cm-{i}") for i in range(10_001)))
    clone.commit()
    before = server.rev()
    push = clone.push()
    assert "many.yaml:70001:1: error [yaml-limits] more than 10000 documents in one file" in push.remote_lines()
    assert_clean_refusal(server, push.output, before)


def test_a_key_of_one_megabyte(server: Server, clone: Clone) -> None:
    key = "k" * 1024 * 1024
    clone.write("plain-key.yaml", CM.format(name="k") + f"  {key}: v\n")
    clone.write("explicit-key.yaml", CM.format(name="e") + f"  ? {key}\n  : v\n")
    clone.commit()
    push = clone.push()
    lines = push.remote_lines()
    # YAML itself limits a plain key to 1024 characters (libyaml and go-yaml alike); an explicit key (`? `)
    # has no such limit and meets the gate's own.
    i = lines.index("plain-key.yaml:7:1048579: error [yaml-syntax] invalid YAML: could not find expected ':' "
                    "(while scanning a simple key)")
    assert lines[i + 1] == "    hint: a plain key may be at most 1024 characters long in YAML (kubectl refuses it too)"
    assert "explicit-key.yaml:7:5: error [yaml-limits] a key of 1048576 characters is over the limit of 65536" in lines
    assert len(push.output) < 20_000  # the key is not echoed back
    assert_clean_refusal(server, push.output, None)


def test_nul_bytes_past_the_first_block(server: Server, clone: Clone) -> None:
    clone.write("nul.yaml", (CM.format(name="n") + "  pad: '" + "x" * 10_000 + "'\n").encode() + b"  z: \x00\n")
    clone.commit()
    push = clone.push()
    assert "nul.yaml:1:1: error [file-binary] binary content (NUL bytes) in a file named like a manifest" in push.remote_lines()
    assert_clean_refusal(server, push.output, None)


def test_crlf_and_bom_files_keep_their_lines(server: Server, clone: Clone) -> None:
    clone.write("crlf.yaml", b"\xef\xbb\xbf" + CM.format(name="crlf").replace("\n", "\r\n").encode())
    clone.write("bad.yaml", b"\xef\xbb\xbf" + CM.format(name="bad").replace("k: v", "k: 1").replace("\n", "\r\n").encode())
    clone.commit()
    push = clone.push()
    lines = push.remote_lines()
    assert not [x for x in lines if x.startswith("crlf.yaml")], push.output
    assert "bad.yaml:6:6: error [schema-invalid] configmap/bad: data.k: 1 is not of type string" in lines
    assert_clean_refusal(server, push.output, None)


def test_paths_with_spaces_newlines_and_non_utf8_bytes(server: Server, clone: Clone) -> None:
    bad = CM.format(name="bad").replace("k: v", "k: 1")
    names = ["with space/a b.yaml", "new\nline.yaml", os.fsdecode(b"caf\xe9.yaml")]
    for name in names:
        (clone.path / name).parent.mkdir(parents=True, exist_ok=True)
        (clone.path / name).write_text(bad.replace("name: bad", f"name: bad-{len(name)}"), encoding="utf-8")
    clone.commit()
    push = clone.push()
    lines = rule_lines(push.remote_lines(), "schema-invalid")
    assert_clean_refusal(server, push.output, None)
    assert any(x.startswith("with space/a b.yaml:6:6: error [schema-invalid]") for x in lines), push.output
    # Control characters and undecodable bytes are shown escaped, on one line each.
    assert any(x.startswith('"new\\nline.yaml":6:6: error [schema-invalid]') for x in lines), push.output
    assert any(x.startswith('"caf\\xe9.yaml":6:6: error [schema-invalid]') for x in lines), push.output


def test_a_tree_entry_named_dot_dot(server: Server, clone: Clone) -> None:
    """git refuses `..` in the index; a crafted tree (git mktree) can still carry it. Never a path outside."""
    blob = git("hash-object", "-w", "--stdin", cwd=clone.path, input=CM.format(name="esc").replace("k: v", "k: 1")).stdout.strip()
    inner = git("mktree", cwd=clone.path, input=f"100644 blob {blob}\tpasswd.yaml\n").stdout.strip()
    top = git("mktree", cwd=clone.path, input=f"040000 tree {inner}\t..\n100644 blob {blob}\tok.yaml\n").stdout.strip()
    commit_tree(clone, top)
    push = clone.push()
    assert not push.accepted
    assert "Traceback" not in push.output
    assert server.rev() is None
    lines = push.remote_lines()
    assert any("ok.yaml:6:6: error [schema-invalid]" in x for x in lines), push.output


def test_symlink_named_kustomization_pointing_at_etc_passwd(server: Server, clone: Clone) -> None:
    clone.write("apps/web.yaml", DEPLOYMENT)
    os.symlink("/etc/passwd", clone.path / "apps" / "kustomization.yaml")
    clone.commit()
    push = clone.push()
    assert not push.accepted
    assert any(x.startswith("apps/kustomization.yaml:1:1: error [kustomize-unsafe] kustomization file is a symbolic link")
               for x in push.remote_lines()), push.output
    assert "root:" not in push.output


@pytest.mark.parametrize("text, needle", [
    ("resources:\n  - /etc/passwd\n", "absolute"),
    ("resources:\n  - ../../../../../../etc/passwd\n", "outside the repository"),
    ("configMapGenerator:\n  - name: x\n    files: [/etc/passwd]\n", "absolute"),
    ("configMapGenerator:\n  - name: x\n    files: [../../../etc/passwd]\n", "outside the repository"),
    ("patches:\n  - path: /etc/passwd\n", "absolute"),
    ("secretGenerator:\n  - name: x\n    envs: [../../../../proc/self/environ]\n", "outside the repository"),
])
def test_kustomization_pointing_outside_or_at_etc_passwd(server: Server, clone: Clone, text: str, needle: str) -> None:
    clone.write("apps/web.yaml", DEPLOYMENT)
    clone.write("apps/kustomization.yaml", "resources: [web.yaml]\n" + text if not text.startswith("resources") else text)
    clone.commit()
    push = clone.push()
    assert not push.accepted
    unsafe = rule_lines(push.remote_lines(), "kustomize-unsafe")
    assert unsafe and all(x.startswith("apps/kustomization.yaml:") for x in unsafe), push.output
    assert any(needle in x for x in unsafe), unsafe
    assert "root:x:0:0" not in push.output and "PATH=" not in push.output


def test_symlinked_folder_does_not_lead_a_kustomization_outside(server: Server, clone: Clone) -> None:
    os.makedirs(clone.path / "apps")
    os.symlink("/etc", clone.path / "etc-link")
    clone.write("apps/kustomization.yaml", "configMapGenerator:\n  - name: x\n    files: [../etc-link/passwd]\n")
    clone.commit()
    push = clone.push()
    assert not push.accepted
    assert "root:x:0:0" not in push.output
    assert rule_lines(push.remote_lines(), "kustomize-build") or rule_lines(push.remote_lines(), "kustomize-unsafe"), push.output


SECRET_BODY = b"aws_secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n: : not yaml [\n"


def big_blob(clone: Clone, size: int) -> str:
    """A blob of `size` bytes written straight into the object store (a stream, never held in memory)."""
    head = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\n" + SECRET_BODY
    proc = subprocess.Popen(["git", "hash-object", "-w", "--stdin"], cwd=clone.path, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(head)
    chunk = b"#" * (1 << 20)
    left = size - len(head)
    while left > 0:
        proc.stdin.write(chunk[: min(left, len(chunk))])
        left -= len(chunk)
    proc.stdin.close()
    out = proc.stdout.read().decode().strip() if proc.stdout else ""
    assert proc.wait() == 0
    return out


def push_big(server: Server, clone: Clone, size: int) -> list[str]:
    oid = big_blob(clone, size)
    clone.write("apps/web.yaml", DEPLOYMENT)
    # A kustomization that kubectl must render: its private copy of the tree must not read the big file.
    clone.write("apps/kustomization.yaml", "resources: [web.yaml]\ncommonLabels: {team: a}\n")
    git("add", "-A", cwd=clone.path)
    git("update-index", "--add", "--cacheinfo", f"100644,{oid},apps/big.yaml", cwd=clone.path)
    git("update-index", "--add", "--cacheinfo", f"100644,{oid},apps/kustomization.yml", cwd=clone.path)
    git("commit", "-q", "-m", "big", cwd=clone.path)
    push = clone.push()
    assert not push.accepted
    assert "Traceback" not in push.output and "internal error" not in push.output, push.output
    return push.remote_lines()


def test_blob_over_the_size_limit_is_refused_by_size_and_never_read(server: Server, clone: Clone) -> None:
    """The same code path as a 1 GB blob, at a size a test can push quickly: limits.max_file_bytes = 1 MiB."""
    server.configure("limits:\n  max_file_bytes: 1048576\n")
    lines = push_big(server, clone, 3 * 1024 * 1024)
    big = [x for x in lines if x.startswith("apps/big.yaml")]
    assert big == ["apps/big.yaml:1:1: error [file-too-large] 3145728 bytes is over the limit of 1048576 bytes"], lines
    # Its content (a credential, broken YAML) would give findings if anything had read it.
    assert not [x for x in lines if "secret" in x.lower() or "wJalrX" in x or "yaml-syntax" in x], lines
    assert any(x.startswith("apps/kustomization.yml:1:1: error [file-too-large]") for x in lines), lines


@pytest.mark.skipif(os.environ.get("GITOPS_HOOKS_SLOW_TESTS") != "1",
                    reason="set GITOPS_HOOKS_SLOW_TESTS=1: writes and pushes a 1 GB blob (about a minute)")
def test_one_gigabyte_blob_is_refused_without_reading_it(server: Server, clone: Clone) -> None:
    # Measure the hook's own peak memory: a wrapper runs the installed hook and reports its children's max RSS.
    hook = server.path / "hooks" / "pre-receive"
    hook.rename(server.path / "hooks" / "pre-receive.real")
    hook.write_text(f"#!{sys.executable}\nimport resource, subprocess, sys\n"
                    f"rc = subprocess.call([{str(server.path / 'hooks' / 'pre-receive.real')!r}])\n"
                    "kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
                    "print(f'hook max rss: {kb // 1024} MiB', file=sys.stderr)\nsys.exit(rc)\n")
    hook.chmod(0o755)
    lines = push_big(server, clone, 1 << 30)
    assert "apps/big.yaml:1:1: error [file-too-large] 1073741824 bytes is over the limit of 20971520 bytes" in lines
    rss = next(int(m.group(1)) for x in lines if (m := re.match(r"hook max rss: (\d+) MiB", x)))
    print(f"1 GB blob: hook peak RSS {rss} MiB")
    assert rss < 400, f"the hook used {rss} MiB: it read the blob"
