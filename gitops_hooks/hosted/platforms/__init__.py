"""The platforms, in the order deliveries are matched: Gitea and Forgejo before GitHub (they also send
`X-GitHub-Event` and `X-Hub-Signature-256`), then GitLab and Bitbucket, GitHub last.

Each module exposes `PLATFORMS` (Platform instances) and `reporter(platform, repository, credentials,
http)`. A module that is not there is left out; adding a platform is one module and one line below.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType

from ..http import Http
from ..model import Credentials, Platform, Reporter

ORDER = ("gitea", "gitlab", "bitbucket", "github")


def _modules() -> list[ModuleType]:
    out = []
    for name in ORDER:
        try:
            out.append(importlib.import_module(f"{__name__}.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    return out


MODULES = _modules()
PLATFORMS: list[Platform] = [p for m in MODULES for p in m.PLATFORMS]
_BY_NAME = {p.name: m for m in MODULES for p in m.PLATFORMS}


def detect(headers: Mapping[str, str]) -> Platform | None:
    """The first platform whose headers these are (names lower-cased)."""
    return next((p for p in PLATFORMS if p.matches(headers)), None)


def available() -> list[str]:
    return [p.name for p in PLATFORMS]


def reporter(platform: str, repository: str, creds: Credentials, http: Http) -> Reporter:
    module = _BY_NAME.get(platform)
    if module is None:
        raise KeyError(f"no platform module for {platform}")
    made: Reporter = module.reporter(platform, repository, creds, http)
    return made
