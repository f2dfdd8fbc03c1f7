"""Where clusterbake keeps things outside the repository."""

from __future__ import annotations

import os
from pathlib import Path

from builder.settings import settings


def cache_root() -> Path:
    """$CLUSTERBAKE_CACHE, else $XDG_CACHE_HOME/clusterbake, else ~/.cache/clusterbake."""
    explicit = settings().cache
    if explicit is not None:
        return explicit
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "clusterbake"


def repo_root() -> Path:
    """The checkout this package runs from: profiles/ and overlays/ live here."""
    return Path(__file__).resolve().parent.parent


def data_dir(name: str) -> Path:
    """$CLUSTERBAKE_PROFILES or $CLUSTERBAKE_OVERLAYS if set (checked in builder.settings), else the repository's."""
    explicit: Path | None = getattr(settings(), name)
    return explicit if explicit is not None else repo_root() / name
