"""After a push is accepted: hand the accepted state to reconciliation, or say there is no target."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from . import config as configmod
from .gitrepo import parse_ref_updates

PREFIX = "gitops-hooks"


def main(stdin_text: str, git_dir: Path, env: Mapping[str, str], out: TextIO = sys.stderr) -> int:
    """post-receive cannot refuse anything: report, record, and always exit 0."""
    try:
        server = configmod.load_server_config(git_dir)
        updates = parse_ref_updates(stdin_text)
    except (configmod.ConfigError, ValueError) as exc:
        out.write(f"{PREFIX}: accepted, not applied: {str(exc).splitlines()[0]}\n")
        return 0
    if not server.get("environments"):
        for u in updates:
            if not u.is_delete:
                out.write(f"{PREFIX}: {u.ref} {u.short()}: accepted, not applied: no target configured\n")
        return 0
    out.write(f"{PREFIX}: environments are configured but reconciliation is not built yet: not applied\n")
    return 0
