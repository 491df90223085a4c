"""One bare mirror per configured repository, under `state_dir/mirrors/<platform>/<repository>.git`.

The mirror is an ordinary bare repository of the suite: the service writes its policy to
`gitops-hooks/config.yaml`, so the gate (`prereceive.judge`), the result cache, the reconcile, its state
and `gitops-hooks history --repo <mirror>` work on it unchanged. Only what an event names is fetched,
from the configured clone URL (never a URL from a payload):

- a request: its head by the platform's ref (`refs/pull/N/head`) into FETCH_HEAD only, so that its
  commits stay "new" (reachable from no ref, as in a pre-receive quarantine), and the target branch
  into `refs/gitops-hooks/base/<branch>`;
- a push: the pushed ref into FETCH_HEAD only. `refs/heads/<branch>` of the mirror moves only when
  the job has judged the commit good: it is what reconciliation applies, the last good commit.

Credentials reach git through the environment (`GIT_CONFIG_COUNT`, `http.extraHeader`), never argv,
URLs or logs; git's own messages are scrubbed of the header before they are shown.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import config as configmod
from .config import Repository

GIT_TIMEOUT = 600
ZERO = "0" * 40


class MirrorError(Exception):
    """A fetch or a git command failed; the message is safe to log (no credentials)."""


@dataclass(frozen=True)
class Fetched:
    head: str  # the full commit id the event names, resolved in the mirror
    base: str  # the target branch's tip (request) or the mirror's last good tip (push); zeros when none


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", part).lstrip(".") or "_"


def mirror_path(state_dir: Path, repo: Repository) -> Path:
    parts = [_safe(p) for p in repo.name.split("/")]
    return state_dir / "mirrors" / repo.platform / Path(*parts[:-1]) / f"{parts[-1]}.git"


class Mirror:
    def __init__(self, state_dir: Path, repo: Repository, auth_header: str = "") -> None:
        self.repo = repo
        self.path = mirror_path(state_dir, repo)
        self._auth = auth_header

    # -- git
    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_CONFIG_", "GIT_DIR"))}
        env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="/bin/false", SSH_ASKPASS="/bin/false", LC_ALL="C")
        if self._auth:
            env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="http.extraHeader",
                       GIT_CONFIG_VALUE_0=f"Authorization: {self._auth}")
        return env

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(["git", "--git-dir", str(self.path), *args], capture_output=True, text=True,
                                  env=self._env(), timeout=GIT_TIMEOUT, stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            raise MirrorError(f"git {args[0]} took longer than {GIT_TIMEOUT} s") from None
        if check and proc.returncode != 0:
            raise MirrorError(f"git {args[0]} failed: {self._scrub(proc.stderr.strip())[-500:]}")
        return proc

    def _scrub(self, text: str) -> str:
        if self._auth:
            text = text.replace(self._auth, "***")
        return re.sub(r"://[^/@\s]+@", "://***@", text)

    # -- setup
    def ensure(self) -> None:
        """Create the mirror if missing and write its policy (every time: the configuration may change)."""
        if not (self.path / "HEAD").exists():
            self.path.mkdir(parents=True, exist_ok=True)
            subprocess.run(["git", "init", "--quiet", "--bare", str(self.path)], check=True, capture_output=True,
                           env=self._env())
            self.git("config", "gc.auto", "0")  # unreferenced request heads must stay until judged
        conf = configmod.server_config_path(self.path)
        text = yaml.safe_dump(dict(self.repo.policy), sort_keys=False)
        if not conf.exists() or conf.read_text(encoding="utf-8") != text:
            conf.parent.mkdir(parents=True, exist_ok=True)
            tmp = conf.with_suffix(".tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(conf)

    # -- refs
    def resolve(self, rev: str) -> str | None:
        proc = self.git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None

    def has_commit(self, sha: str) -> str | None:
        """The full id of `sha` (which may be short, as Bitbucket Cloud sends) if the mirror has it."""
        return self.resolve(sha) if re.fullmatch(r"[0-9a-fA-F]{7,64}", sha) else None

    def _fetch(self, *refspecs: str) -> None:
        self.git("fetch", "--quiet", "--no-tags", "--force", self.repo.clone_url, *refspecs)

    def fetch_request(self, head_ref: str, head_sha: str, base_ref: str) -> Fetched | None:
        """The request's head (None when it is gone: force-pushed away or the request deleted)."""
        branch = base_ref.removeprefix("refs/heads/")
        base_local = f"refs/gitops-hooks/base/{branch}"
        try:
            self._fetch(head_ref, f"+{base_ref}:{base_local}")
        except MirrorError:
            if self.has_commit(head_sha) is None:
                self._fetch(f"+{base_ref}:{base_local}")  # the base alone, to tell a gone head from an outage
                return None
        head = self.has_commit(head_sha)
        if head is None:
            return None
        return Fetched(head, self.resolve(base_local) or ZERO)

    def fetch_push(self, ref: str, sha: str) -> Fetched | None:
        """The pushed commit (None when it is gone from the remote)."""
        try:
            self._fetch(ref)
        except MirrorError:
            if self.has_commit(sha) is None:
                raise
        head = self.has_commit(sha)
        if head is None:
            return None
        return Fetched(head, self.resolve(ref) or ZERO)

    def advance(self, ref: str, new: str, old: str) -> None:
        """Move the mirror's ref to a judged-good commit (compare-and-swap on the old value)."""
        self.git("update-ref", "-m", "gitops-hooks serve: judged good", ref, new, old if old != ZERO else "")

    def push_notes(self) -> bool:
        """Send the audit notes to the remote's refs/notes/gitops; False when the credentials do not allow it."""
        if self.resolve("refs/notes/gitops") is None:
            return False
        proc = self.git("push", "--quiet", self.repo.clone_url, "+refs/notes/gitops:refs/notes/gitops", check=False)
        return proc.returncode == 0
