"""Installing for hosting platforms whose hooks live in per-hook folders (docs/hosting.md): GitLab's
`custom_hooks/<hook>.d/` and Gitea's and Forgejo's `hooks/<hook>.d/`, each run by the platform's own
dispatcher, here the scripts that do what the platforms' do, with real git and real pushes."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import BROKEN_DEPLOYMENT, DEPLOYMENT, GIT_ENV, TEST_HOME, Clone, Push, Server, git, run_suite

from gitops_hooks.gateclient import settle

# What Gitea and Forgejo write as `hooks/pre-receive`, `hooks/post-receive` (and `update`) of every
# repository: run each executable of `hooks/<hook>.d/` with the push's input, all of them, and fail with
# the first non-zero exit code. Their own hook is `hooks/<hook>.d/gitea`.
GITEA_DISPATCHER = """#!/usr/bin/env bash
data=$(cat)
exitcodes=""
hookname=$(basename $0)
GIT_DIR=${GIT_DIR:-$(dirname $0)/..}

for hook in ${GIT_DIR}/hooks/${hookname}.d/*; do
  test -x "${hook}" && test -f "${hook}" || continue
  echo "${data}" | "${hook}"
  exitcodes="${exitcodes} $?"
done

for i in ${exitcodes}; do
  [ ${i} -eq 0 ] || exit ${i}
done
"""

# What Gitaly does for a repository's server hooks, as git's `hooks/<hook>`: run `custom_hooks/<hook>`,
# then every executable of `custom_hooks/<hook>.d/` in name order (not editor backups, `*~`), each with
# the push's input; the first that fails ends the run with its exit code.
GITALY_RUNNER = """#!/bin/sh
data=$(cat)
hookname=${0##*/}
for hook in custom_hooks/$hookname custom_hooks/$hookname.d/*; do
  case $hook in *~) continue ;; esac
  test -f "$hook" && test -x "$hook" || continue
  printf '%s\\n' "$data" | "$hook" || exit $?
done
"""

# A platform's own hook (Gitea's `gitea`, an administrator's hook on GitLab): notes each run in a file.
RECORDING_HOOK = """#!/bin/sh
while read -r old new ref; do echo "{name} $ref" >> {log}; done
"""


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)
    return path


class Hosted(Server):
    """A bare repository whose hooks a platform's dispatcher runs; the suite installed with --hooks-dir."""

    def __init__(self, path: Path, dispatcher: str, folders: tuple[str, ...]) -> None:
        git("init", "-q", "--bare", "--initial-branch=main", str(path))
        self.path, self.runs = path, path / "platform-hook-runs.log"
        self.config_path = path / "gitops-hooks" / "config.yaml"
        for hook in ("pre-receive", "post-receive"):
            executable(path / "hooks" / hook, dispatcher)
        for folder in folders:
            proc = run_suite("install", str(path), "--hooks-dir", str(path / folder))
            assert proc.returncode == 0, proc.stderr

    def platform_hook(self, where: str) -> None:
        executable(self.path / where, RECORDING_HOOK.format(name=where, log=self.runs))

    def hook_runs(self) -> list[str]:
        return self.runs.read_text(encoding="utf-8").splitlines() if self.runs.exists() else []


def push_within(clone: Clone, seconds: float = 120) -> Push:
    """`git push` that must end in time: a hook that runs itself again and again fails the test."""
    env = {**os.environ, **GIT_ENV, "HOME": TEST_HOME}
    env.pop("GIT_DIR", None)
    proc = subprocess.Popen(["git", "push", "--porcelain", "origin", "HEAD:refs/heads/main"], cwd=clone.path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"the push did not end within {seconds:g} s: a hook runs itself again and again")
    settle()
    return Push(proc.returncode, err + out)


def gate_lines(push: Push) -> list[str]:
    return [line for line in push.remote_lines() if line.startswith("gitops-hooks: ")]


def good_then_bad(server: Hosted, tmp_path: Path) -> list[str]:
    """Push a good commit (accepted once: one verdict, one post-receive answer), then a broken one
    (refused once); the platform hooks' runs after the good push."""
    clone = Clone(server, tmp_path / "work")
    clone.write("apps/web.yaml", DEPLOYMENT)
    clone.commit("good")
    good = push_within(clone)
    assert good.accepted, good.output
    sha = git("rev-parse", "HEAD", cwd=clone.path).stdout.strip()
    assert gate_lines(good) == ["gitops-hooks: accepted",
                                f"gitops-hooks: refs/heads/main {sha[:12]}: accepted, not applied: "
                                "no target configured"]
    runs = server.hook_runs()
    clone.write("apps/web.yaml", BROKEN_DEPLOYMENT)
    clone.commit("bad")
    bad = push_within(clone)
    assert not bad.accepted
    assert any(line.startswith("apps/web.yaml:7:13: error [schema-invalid]") for line in bad.remote_lines())
    assert sum("push refused" in line for line in gate_lines(bad)) == 1
    assert server.rev() == sha
    return runs


def test_hooks_dir_for_pre_receive_holds_only_the_pre_receive_hook(tmp_path: Path) -> None:
    # GitLab runs every executable in custom_hooks/pre-receive.d/ before the refs move: a post-receive
    # hook there would reconcile a push that the gate has not judged yet. The gate's file is named
    # gitops-hooks: Gitea's web editor shows and rewrites hooks/pre-receive.d/pre-receive.
    folder = tmp_path / "repo.git" / "custom_hooks" / "pre-receive.d"
    proc = run_suite("install", str(tmp_path / "repo.git"), "--hooks-dir", str(folder))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["gitops-hooks"]
    assert "exec \"$GITOPS_HOOKS\" pre-receive" in (folder / "gitops-hooks").read_text(encoding="utf-8")
    assert (f"{folder} is run as the pre-receive hook, so it holds only that one; install the post-receive "
            f"hook with --hooks-dir {folder.with_name('post-receive.d')}") in proc.stdout


def test_reinstalling_into_a_hook_folder_removes_what_an_earlier_install_put_there(tmp_path: Path) -> None:
    repo = tmp_path / "repo.git"
    folder = repo / "custom_hooks" / "pre-receive.d"
    assert run_suite("install", str(repo), "--hooks-dir", str(tmp_path / "scripts")).returncode == 0
    folder.mkdir(parents=True)
    for name in ("pre-receive", "post-receive"):  # both scripts in one folder, as install wrote them before
        (tmp_path / "scripts" / name).rename(folder / name)
    executable(folder / "00-admin", "#!/bin/sh\nexit 0\n")
    proc = run_suite("install", str(repo), "--hooks-dir", str(folder))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["00-admin", "gitops-hooks"]
    assert f"removed {folder / 'post-receive'}: a hook script of the suite that does not belong in pre-receive.d" \
        in proc.stdout


def test_gitlab_custom_hook_folders_gate_and_apply_each_push_once(tmp_path: Path, gate_runtime: Path) -> None:
    server = Hosted(tmp_path / "repo.git", GITALY_RUNNER,
                    ("custom_hooks/pre-receive.d", "custom_hooks/post-receive.d"))
    custom = server.path / "custom_hooks"
    assert sorted(p.name for p in (custom / "pre-receive.d").iterdir()) == ["gitops-hooks"]
    assert sorted(p.name for p in (custom / "post-receive.d").iterdir()) == ["gitops-hooks"]
    assert "exec \"$GITOPS_HOOKS\" post-receive" in (custom / "post-receive.d" / "gitops-hooks").read_text()
    server.platform_hook("custom_hooks/pre-receive.d/zz-admin")  # another hook GitLab runs, after the gate
    after_good = good_then_bad(server, tmp_path)
    assert after_good == ["custom_hooks/pre-receive.d/zz-admin refs/heads/main"]
    assert server.hook_runs() == after_good  # the gate refused: GitLab ran nothing after it


def test_gitlab_single_hook_file_leaves_the_hook_folder_to_gitlab(tmp_path: Path, gate_runtime: Path) -> None:
    # `custom_hooks/pre-receive` runs first, then GitLab runs `custom_hooks/pre-receive.d/*` itself: the
    # gate must not run that folder a second time.
    server = Hosted(tmp_path / "repo.git", GITALY_RUNNER, ("custom_hooks",))
    assert {"pre-receive", "post-receive"} <= {p.name for p in (server.path / "custom_hooks").iterdir()}
    server.platform_hook("custom_hooks/pre-receive.d/admin")
    server.platform_hook("custom_hooks/post-receive.d/admin")
    clone = Clone(server, tmp_path / "work")
    clone.write("apps/web.yaml", DEPLOYMENT)
    clone.commit("good")
    push = push_within(clone)
    assert push.accepted, push.output
    assert gate_lines(push)[0] == "gitops-hooks: accepted"
    assert server.hook_runs() == ["custom_hooks/pre-receive.d/admin refs/heads/main",
                                  "custom_hooks/post-receive.d/admin refs/heads/main"]


def test_gitea_hook_folders_gate_each_push_once(tmp_path: Path, gate_runtime: Path) -> None:
    server = Hosted(tmp_path / "repo.git", GITEA_DISPATCHER, ("hooks/pre-receive.d", "hooks/post-receive.d"))
    server.platform_hook("hooks/pre-receive.d/gitea")
    server.platform_hook("hooks/post-receive.d/gitea")
    server.platform_hook("hooks/pre-receive.d/pre-receive")  # what Gitea's web editor writes: "Git Hooks"
    assert sorted(p.name for p in (server.path / "hooks" / "pre-receive.d").iterdir()) == [
        "gitea", "gitops-hooks", "pre-receive"]
    after_good = good_then_bad(server, tmp_path)
    pre_receive = ["hooks/pre-receive.d/gitea refs/heads/main", "hooks/pre-receive.d/pre-receive refs/heads/main"]
    assert after_good == [*pre_receive, "hooks/post-receive.d/gitea refs/heads/main"]
    assert server.hook_runs()[3:] == pre_receive  # Gitea runs them all, the push is refused


def test_gitea_hook_folders_with_scripts_of_an_older_install(tmp_path: Path, gate_runtime: Path) -> None:
    # Hook scripts written before they said where they are (GITOPS_HOOKS_HOOK): the gate finds its own
    # script in hooks/pre-receive.d, so that folder is Gitea's to run.
    server = Hosted(tmp_path / "repo.git", GITEA_DISPATCHER, ("hooks/pre-receive.d", "hooks/post-receive.d"))
    for hook in ("pre-receive", "post-receive"):
        script = server.path / "hooks" / f"{hook}.d" / "gitops-hooks"
        text = script.read_text(encoding="utf-8")
        assert "GITOPS_HOOKS_HOOK" in text
        script.rename(script.with_name(hook))  # where and how an older install wrote it
        script.with_name(hook).write_text("".join(line for line in text.splitlines(keepends=True)
                                                  if "GITOPS_HOOKS_HOOK" not in line), encoding="utf-8")
    server.platform_hook("hooks/pre-receive.d/gitea")
    after_good = good_then_bad(server, tmp_path)
    assert after_good == ["hooks/pre-receive.d/gitea refs/heads/main"]
