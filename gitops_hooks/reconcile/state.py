"""Per-environment state in `<bare>/gitops-hooks/state/`: the reconcile lock and the pending record.

The pending record says "this environment has accepted changes not yet applied". It is written before a
reconcile starts and removed only after one succeeds, so a crash, a kill -9 or a cluster outage leaves it
behind for the next push or `gitops-hooks reconcile` to pick up. Writes are atomic (temp file + rename).
The lock is an flock on a file: the kernel releases it when its holder dies.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from ..config import CONFIG_DIR


@dataclass(frozen=True)
class Pending:
    commit: str
    ref: str
    pusher: str
    since: str
    attempts: int = 0
    last_error: str = ""


def state_dir(git_dir: Path) -> Path:
    d = git_dir / CONFIG_DIR / "state"
    d.mkdir(parents=True, exist_ok=True)
    return d


def pending_path(git_dir: Path, env: str) -> Path:
    return state_dir(git_dir) / f"{env}.pending.json"


def read_pending(git_dir: Path, env: str) -> Pending | None:
    try:
        data = json.loads(pending_path(git_dir, env).read_text(encoding="utf-8"))
        return Pending(**data)
    except (OSError, ValueError, TypeError):
        return None


def write_pending(git_dir: Path, env: str, pending: Pending) -> None:
    atomic_write(pending_path(git_dir, env), json.dumps(asdict(pending), indent=1))


def clear_pending(git_dir: Path, env: str, commit: str) -> bool:
    """Remove the record if it still names `commit`; a newer push's record stays."""
    current = read_pending(git_dir, env)
    if current is None or current.commit != commit:
        return current is None
    try:
        pending_path(git_dir, env).unlink()
    except FileNotFoundError:
        pass
    return True


def pending_envs(git_dir: Path) -> list[str]:
    d = git_dir / CONFIG_DIR / "state"
    if not d.is_dir():
        return []
    return sorted(p.name[: -len(".pending.json")] for p in d.glob("*.pending.json"))


def atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


@contextmanager
def locked(path: Path, blocking: bool) -> Iterator[bool]:
    """Hold an exclusive flock on `path`; yields False (without waiting) when another process has it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fh: IO[Any] = path.open("a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    finally:
        fh.close()


def env_lock(git_dir: Path, env: str, blocking: bool = False) -> Any:
    return locked(state_dir(git_dir) / f"{env}.lock", blocking)
