"""Where the suite runs: its own executable, and the gate's log inside the bare repository (written by
every hook and command that fails inside)."""

from __future__ import annotations

import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

from .config import CONFIG_DIR


def log_dir(git_dir: Path) -> Path:
    return git_dir / CONFIG_DIR / "log"


def write_log(git_dir: Path, text: str) -> Path | None:
    """Append to the gate's log inside the bare repository; never raises."""
    try:
        d = log_dir(git_dir)
        d.mkdir(parents=True, exist_ok=True)
        path = d / "gitops-hooks.log"
        with path.open("a", encoding="utf-8") as fh:
            fh.write(f"--- {datetime.now(UTC).isoformat()} pid {os.getpid()}\n{text}\n")
        return path
    except OSError:
        return None


def suite_executable() -> str | None:
    """The `gitops-hooks` executable of this environment (beside the running Python), else on PATH."""
    exe = Path(sys.executable).parent / "gitops-hooks"
    if exe.exists():
        return str(exe)
    return shutil.which("gitops-hooks")


NO_EXECUTABLE = "cannot find the gitops-hooks executable of this environment"
