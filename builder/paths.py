"""Where clusterbake keeps things outside the repository."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$CLUSTERBAKE_CACHE, else $XDG_CACHE_HOME/clusterbake, else ~/.cache/clusterbake."""
    explicit = os.environ.get("CLUSTERBAKE_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "clusterbake"


def repo_root() -> Path:
    """The checkout this package runs from: profiles/ and overlays/ live here."""
    return Path(__file__).resolve().parent.parent
