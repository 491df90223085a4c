"""`gitops-hooks validate` as a developer or CI runs it: real files, real git, the real command."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import CORPUS, DEPLOYMENT, EXE, Clone, Server, git, need_corpus, run_suite

BAD_DEPLOYMENT = DEPLOYMENT.replace("replicas: 2", "replicas: two")
BAD_LINE = ("apps/web.yaml:7:13: error [schema-invalid] deployment.apps/web: "
            "spec.replicas: 'two' is not of type integer")
WIDGET = """\
apiVersion: example.com/v1
kind: Widget
metadata:
  name: gadget
  namespace: apps
"""


def make_repo(path: Path) -> Path:
    git("init", "--quiet", "--initial-branch=main", str(path))
    git("config", "user.name", "Dev", cwd=path)
    git("config", "user.email", "dev@example.com", cwd=path)
    return path


def write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")


def commit_all(root: Path, message: str = "change") -> None:
    git("add", "-A", cwd=root)
    git("commit", "--quiet", "-m", message, cwd=root)


def finding_lines(text: str) -> list[str]:
    levels = ("error", "warning", "info")
    return [line for line in text.splitlines() if any(f": {s} [" in line for s in levels)]


def test_clean_tree_exits_0(tmp_path: Path) -> None:
    write(tmp_path, "apps/web.yaml", DEPLOYMENT)
    proc = run_suite("validate", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 files, 1 manifests, 1 objects: 0 errors, 0 warnings" in proc.stdout
    assert proc.stderr == ""


def test_error_exits_1_with_file_line_column_and_rule(tmp_path: Path) -> None:
    write(tmp_path, "apps/web.yaml", BAD_DEPLOYMENT)
    proc = run_suite("validate", cwd=tmp_path)
    assert proc.returncode == 1
    assert finding_lines(proc.stdout) == [BAD_LINE]


def test_warnings_alone_exit_0(tmp_path: Path) -> None:
    write(tmp_path, "apps/widget.yaml", WIDGET)
    proc = run_suite("validate", cwd=tmp_path)
    assert proc.returncode == 0
    [line] = finding_lines(proc.stdout)
    assert line.startswith("apps/widget.yaml:1:1: warning [schema-unknown-kind]")


def test_paths_choose_what_is_checked(tmp_path: Path) -> None:
    write(tmp_path, "apps/web.yaml", BAD_DEPLOYMENT)
    write(tmp_path, "ok/web.yaml", DEPLOYMENT.replace("namespace: apps", "namespace: ok"))
    assert run_suite("validate", "ok", cwd=tmp_path).returncode == 0
    assert run_suite("validate", "ok/web.yaml", cwd=tmp_path).returncode == 0
    proc = run_suite("validate", "apps/web.yaml", cwd=tmp_path)
    assert proc.returncode == 1
    assert finding_lines(proc.stdout) == [BAD_LINE]


def test_working_clone_skips_what_gitignore_leaves_out(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    write(repo, ".gitignore", "build/\n")
    write(repo, "build/web.yaml", BAD_DEPLOYMENT)
    write(repo, "apps/web.yaml", DEPLOYMENT)
    proc = run_suite("validate", cwd=repo)
    assert proc.returncode == 0, proc.stdout
    assert "1 files, 1 manifests" not in proc.stdout  # .gitignore and apps/web.yaml are checked, build/ not
    assert "2 files, 1 manifests, 1 objects" in proc.stdout
    named = run_suite("validate", "build/web.yaml", cwd=repo)  # a file named explicitly is checked
    assert named.returncode == 1
    assert finding_lines(named.stdout) == [BAD_LINE.replace("apps/web.yaml", "build/web.yaml")]


def test_staged_checks_the_index_not_the_working_copy(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    write(repo, "apps/web.yaml", BAD_DEPLOYMENT)
    git("add", "apps/web.yaml", cwd=repo)
    write(repo, "apps/web.yaml", DEPLOYMENT)  # fixed on disk, not staged
    staged = run_suite("validate", "--staged", cwd=repo)
    assert staged.returncode == 1
    assert finding_lines(staged.stdout) == [BAD_LINE]
    assert "staged changes" in staged.stdout
    assert run_suite("validate", cwd=repo).returncode == 0

    git("add", "apps/web.yaml", cwd=repo)  # now the index is good ...
    write(repo, "apps/web.yaml", BAD_DEPLOYMENT)  # ... and the disk is broken
    assert run_suite("validate", "--staged", cwd=repo).returncode == 0
    assert run_suite("validate", cwd=repo).returncode == 1


def test_staged_from_a_subfolder_checks_the_whole_index(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    write(repo, "apps/web.yaml", BAD_DEPLOYMENT)
    write(repo, "docs/readme.txt", "hello\n")
    git("add", "-A", cwd=repo)
    proc = run_suite("validate", "--staged", cwd=repo / "docs")
    assert proc.returncode == 1
    assert finding_lines(proc.stdout) == [BAD_LINE]


def test_rev_checks_a_commit(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    write(repo, "apps/web.yaml", DEPLOYMENT)
    commit_all(repo, "good")
    write(repo, "apps/web.yaml", BAD_DEPLOYMENT)
    commit_all(repo, "bad")
    write(repo, "apps/web.yaml", DEPLOYMENT)  # the working copy does not matter
    head = run_suite("validate", "--rev", "HEAD", cwd=repo)
    assert head.returncode == 1
    assert finding_lines(head.stdout) == [BAD_LINE]
    sha = git("rev-parse", "HEAD~1", cwd=repo).stdout.strip()
    before = run_suite("validate", "--rev", "HEAD~1", cwd=repo)
    assert before.returncode == 0
    assert f"HEAD~1 ({sha[:12]})" in before.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--rev", "HEAD", "--staged"], "--rev and --staged exclude each other"),
    (["--rev", "no-such-branch"], "--rev no-such-branch: not a commit in this repository"),
    (["--staged", "apps"], "PATHS cannot be combined with --rev or --staged"),
    (["--output", "xml"], "Invalid value for '--output'"),
    (["no/such/path"], "does not exist"),
])
def test_usage_errors_exit_2_with_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    repo = make_repo(tmp_path / "repo")
    write(repo, "apps/web.yaml", DEPLOYMENT)
    commit_all(repo)
    proc = run_suite("validate", *args, cwd=repo)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_folder_paths_through_links(tmp_path: Path) -> None:
    """Files are named relative to the folder checked; a linked file is reported, not followed; a folder
    reached through a link is named by its real place, which is outside."""
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {}\n  namespace: default\n  uid: abc\n"
    write(tmp_path / "elsewhere", "deep/cm.yaml", cm.format("far"))
    work = tmp_path / "work"
    write(work, "apps/cm.yaml", cm.format("near"))
    (work / "linked").symlink_to(tmp_path / "elsewhere")
    (work / "link.yaml").symlink_to("apps/cm.yaml")
    proc = run_suite("validate", ".", "linked/deep", cwd=work)
    assert proc.returncode == 1
    assert [line.split(" ", 3)[:3] for line in finding_lines(proc.stdout)] == [
        [f"{(tmp_path / 'elsewhere').resolve()}/deep/cm.yaml:6:3:", "error", "[live-state-field]"],
        ["apps/cm.yaml:6:3:", "error", "[live-state-field]"],
        ["link.yaml:1:1:", "info", "[tree-symlink]"],
    ]
    assert "3 files, 2 manifests, 2 objects" in proc.stdout


def test_staged_outside_a_repository_is_a_usage_error(tmp_path: Path) -> None:
    proc = run_suite("validate", "--staged", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"gitops-hooks validate: --rev and --staged need a git repository; "
                                   f"{tmp_path} is not in one")


def test_staged_in_a_bare_repository_is_a_usage_error(server: Server) -> None:
    proc = run_suite("validate", "--staged", cwd=server.path)
    assert proc.returncode == 2
    assert "--staged needs a working clone" in proc.stderr


@pytest.mark.parametrize(("text", "message"), [
    ("strict: [oops\n", "invalid YAML"),
    ("strict: maybe\n", "strict"),
    ("rules: {schema-invalid: fatal}\n", "rules/schema-invalid"),
    ("environments:\n  prod: {ref: main, cluster: {in_cluster: true}}\n", "holds environments"),
    ("schema_dirs: [/nonexistent/crds]\n", "schema_dirs: /nonexistent/crds is not a folder on this machine"),
    ("schema_dirs: [crds]\n", "schema_dirs: crds is not a folder on this machine; `gitops-hooks policy export"),
])
def test_broken_policy_file_exits_2(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path, "apps/web.yaml", DEPLOYMENT)
    write(tmp_path, "policy.yaml", text)
    proc = run_suite("validate", "--policy", "policy.yaml", "apps", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_repository_policy_tightens_and_cannot_loosen(tmp_path: Path) -> None:
    write(tmp_path, "apps/widget.yaml", WIDGET)
    write(tmp_path, ".gitops-hooks.yaml", "rules:\n  schema-unknown-kind: error\n")
    proc = run_suite("validate", cwd=tmp_path)
    assert proc.returncode == 1
    assert finding_lines(proc.stdout)[0].startswith("apps/widget.yaml:1:1: error [schema-unknown-kind]")

    write(tmp_path, "apps/web.yaml", BAD_DEPLOYMENT)
    write(tmp_path, "apps/widget.yaml", DEPLOYMENT.replace("name: web", "name: other"))
    write(tmp_path, ".gitops-hooks.yaml", "rules:\n  schema-invalid: warning\n")
    proc = run_suite("validate", cwd=tmp_path)
    assert proc.returncode == 1
    assert finding_lines(proc.stdout) == [
        ".gitops-hooks.yaml:1:1: warning [policy-loosening-ignored] rules.schema-invalid: warning is looser "
        "than error; the server's setting stands",
        BAD_LINE,
    ]


def test_staged_reads_the_repository_policy_from_the_index(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    write(repo, "apps/widget.yaml", WIDGET)
    write(repo, ".gitops-hooks.yaml", "rules:\n  schema-unknown-kind: error\n")
    git("add", "-A", cwd=repo)
    (repo / ".gitops-hooks.yaml").unlink()  # only the staged copy says "error"
    assert run_suite("validate", cwd=repo).returncode == 0
    assert run_suite("validate", "--staged", cwd=repo).returncode == 1


# ---------------------------------------------------------------------------- same findings as the server

SERVER_POLICY = """\
version: 1
rules:
  schema-unknown-kind: error
environments:
  prod:
    ref: main
    path: apps
    cluster: {kubeconfig: /srv/secret/prod-admin.kubeconfig, context: prod-admin}
    variables: {DB_PASSWORD: hunter2-not-for-clients}
"""


def test_validate_rev_reports_what_the_gate_reports(server: Server, clone: Clone) -> None:
    clone.write("apps/web.yaml", BAD_DEPLOYMENT)
    clone.write("apps/widget.yaml", WIDGET)
    clone.write("apps/dup.yaml", DEPLOYMENT + "---\n" + DEPLOYMENT)
    clone.commit("three problems")
    push = clone.push()
    assert not push.accepted
    local = run_suite("validate", "--rev", "HEAD", cwd=clone.path)
    assert local.returncode == 1
    remote = finding_lines("\n".join(push.remote_lines()))
    assert len(remote) >= 3
    assert finding_lines(local.stdout) == remote


def test_same_findings_as_the_gate_on_the_real_corpora(server: Server, clone: Clone) -> None:
    need_corpus()
    for name in ("kube-prometheus", "microservices-demo", "flux2-kustomize-helm-example"):
        clone.copy_tree(CORPUS / name, name)
    clone.commit("three real repositories")
    push = clone.push()
    remote = finding_lines("\n".join(push.remote_lines()))
    local = run_suite("validate", "--rev", "HEAD", cwd=clone.path)
    assert local.returncode == (0 if push.accepted else 1)
    assert len(remote) >= 10
    assert finding_lines(local.stdout) == remote


def test_exported_server_policy_gives_the_servers_findings(
    server: Server, clone: Clone, tmp_path: Path
) -> None:
    server.configure(SERVER_POLICY)
    assert run_suite("config", "check", str(server.path)).returncode == 0
    exported = run_suite("policy", "export", str(server.path))
    assert exported.returncode == 0, exported.stderr
    secrets = ("hunter2-not-for-clients", "/srv/secret/prod-admin.kubeconfig", "prod-admin", "DB_PASSWORD")
    for secret in secrets:
        assert secret not in exported.stdout
    data = yaml.safe_load(exported.stdout)
    assert "environments" not in data
    assert data["rules"] == {"schema-unknown-kind": "error"}
    policy = tmp_path / "server-policy.yaml"
    policy.write_text(exported.stdout, encoding="utf-8")

    clone.write("apps/widget.yaml", WIDGET)
    clone.commit("a custom kind without a schema")
    push = clone.push()
    assert not push.accepted  # the server makes the warning an error
    with_policy = run_suite("validate", "--policy", str(policy), cwd=clone.path)
    assert with_policy.returncode == 1
    assert finding_lines(with_policy.stdout) == finding_lines("\n".join(push.remote_lines()))
    assert run_suite("validate", cwd=clone.path).returncode == 0  # the defaults only warn


WIDGET_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {type: integer}
"""


def test_exported_folders_travel_with_the_policy(server: Server, clone: Clone, tmp_path: Path) -> None:
    """The server knows Widget from its schema_dirs; `policy export --output-dir` copies them for clients."""
    crds = tmp_path / "server-crds"
    write(crds, "widget.yaml", WIDGET_CRD)
    write(crds, "README.txt", "not a manifest: not copied\n")
    server.configure(f"version: 1\nschema_dirs: [{crds}]\n")
    clone.write("apps/widget.yaml", WIDGET + "spec:\n  size: big\n")
    clone.commit("a widget of the wrong size")
    push = clone.push()
    assert not push.accepted
    remote = finding_lines("\n".join(push.remote_lines()))
    assert any("[schema-invalid]" in line for line in remote)

    exported = run_suite("policy", "export", str(server.path), "--output-dir", str(tmp_path / "export"))
    assert exported.returncode == 0, exported.stderr
    policy = tmp_path / "export" / "policy.yaml"
    assert yaml.safe_load(policy.read_text(encoding="utf-8"))["schema_dirs"] == ["schema_dirs/00-server-crds"]
    assert sorted(p.name for p in (tmp_path / "export" / "schema_dirs" / "00-server-crds").iterdir()) == [
        "widget.yaml"]
    (crds / "widget.yaml").unlink()  # the client has only the copy
    local = run_suite("validate", "--policy", str(policy), cwd=clone.path)
    assert local.returncode == 1
    assert finding_lines(local.stdout) == remote
    without = run_suite("validate", cwd=clone.path)  # without the server's CRDs, Widget is unknown
    assert "[schema-unknown-kind]" in without.stdout


def test_transition_rules_compare_with_what_the_server_holds(server: Server, clone: Clone) -> None:
    """CEL `oldSelf` rules judge a change against the ref's old tree: the client uses the branch's upstream."""
    immutable = WIDGET_CRD.replace(
        "                size: {type: integer}\n",
        "                size:\n"
        "                  type: integer\n"
        "                  x-kubernetes-validations:\n"
        "                    - {rule: self == oldSelf, message: size is immutable}\n")
    clone.write("crds/widget.yaml", immutable)
    clone.write("apps/widget.yaml", WIDGET + "spec:\n  size: 1\n")
    clone.commit("a widget")
    assert clone.push().accepted
    git("branch", "--set-upstream-to=origin/main", cwd=clone.path)
    clone.write("apps/widget.yaml", WIDGET + "spec:\n  size: 2\n")
    clone.commit("resize it")

    local = run_suite("validate", "--rev", "HEAD", cwd=clone.path)
    push = clone.push()
    assert not push.accepted
    remote = finding_lines("\n".join(push.remote_lines()))
    assert any("size is immutable" in line for line in remote)
    assert local.returncode == 1
    assert finding_lines(local.stdout) == remote
    assert run_suite("validate", "--rev", "HEAD", "--base", "HEAD", cwd=clone.path).returncode == 0


def test_ref_policies_apply_to_the_current_branch_or_ref(server: Server, tmp_path: Path) -> None:
    server.configure("version: 1\nref_policies:\n  main:\n    rules: {schema-unknown-kind: error}\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text(run_suite("policy", "export", str(server.path)).stdout, encoding="utf-8")
    repo = make_repo(tmp_path / "repo")
    write(repo, "apps/widget.yaml", WIDGET)
    assert run_suite("validate", "--policy", str(policy), cwd=repo).returncode == 1  # on main
    assert run_suite("validate", "--policy", str(policy), "--ref", "refs/heads/dev", cwd=repo).returncode == 0
    git("checkout", "--quiet", "-b", "dev", cwd=repo)
    assert run_suite("validate", "--policy", str(policy), cwd=repo).returncode == 0


def test_policy_export_of_an_unguarded_folder_exits_2(tmp_path: Path) -> None:
    proc = run_suite("policy", "export", str(tmp_path))
    assert proc.returncode == 2
    assert "gitops-hooks/config.yaml" in proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------- progress

def many_manifests(root: Path, count: int) -> None:
    for i in range(count):
        text = f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\n  namespace: apps\n"
        write(root, f"apps/cm-{i:05}.yaml", text)


def run_on_terminal(cwd: Path, env: dict[str, str]) -> tuple[int, str, bytes]:
    """Run validate with stderr on a pseudo-terminal (as in an interactive shell), stdout on a pipe."""
    master, slave = os.openpty()
    proc = subprocess.Popen([EXE, "validate"], cwd=cwd, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closed: the process is done with it
            break
        if not chunk:
            break
        seen += chunk
    out = proc.communicate()[0].decode()
    os.close(master)
    return proc.returncode, out, seen


@pytest.mark.parametrize("cores", [1, 2])
def test_progress_while_files_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cores: int) -> None:
    # The count moves while the files are being read (the long part of a cold run), not only after.
    from gitops_hooks import config, pipeline
    from gitops_hooks.gitrepo import FolderTree

    many_manifests(tmp_path / "tree", 300)
    monkeypatch.setattr(os, "cpu_count", lambda: cores)  # 2: a forked worker shares the queue
    events: list[tuple[str, int, int]] = []
    parse = pipeline.state.parse

    def parse_and_note(path: str, data: bytes, *rest: object) -> object:
        events.append(("read", 0, 0))  # (in this process: a forked worker's reads are not seen here)
        return parse(path, data, *rest)

    monkeypatch.setattr(pipeline.state, "parse", parse_and_note)
    policy = config.Policy(config.checked({}, "test"))
    result = pipeline.check_snapshot(FolderTree(tmp_path / "tree"), policy,
                                     progress=lambda done, total: events.append(("progress", done, total)))
    assert result.findings == []
    counts = [(done, total) for kind, done, total in events if kind == "progress"]
    assert counts[-1] == (300, 300)  # then every file is read, and checked
    assert all(total == 300 and done < total for done, total in counts[:-1])
    assert [done for done, _ in counts] == sorted(done for done, _ in counts)
    last_read = max(i for i, (kind, _, _) in enumerate(events) if kind == "read")
    during = [e for e in events[:last_read] if e[0] == "progress"]
    assert len(during) >= 20, events[:20]  # one per file this process took (about half of them with a worker)


def test_progress_on_a_terminal_and_none_otherwise(tmp_path: Path) -> None:
    # Progress shows once a run has taken 0.5 s: 5,000 files no longer take that long on a fast moment.
    many_manifests(tmp_path / "tree", 15000)
    cold = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}  # a cold client cache: a long run
    code, out, terminal = run_on_terminal(tmp_path / "tree", cold)
    assert code == 0
    assert b"gitops-hooks: reading files " in terminal
    assert b"/15000" in terminal
    assert terminal.endswith(b"\r\x1b[K")  # the progress line is cleared at the end
    assert "reading files" not in out  # the report itself carries no progress
    piped = subprocess.run([EXE, "validate"], cwd=tmp_path / "tree", capture_output=True, text=True,
                           env={**cold, "XDG_CACHE_HOME": str(tmp_path / "cache2")})
    assert piped.returncode == 0
    assert piped.stderr == ""
    assert finding_lines(piped.stdout) == finding_lines(out) == []
