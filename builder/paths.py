"""Where clusterbake keeps things outside the repository."""

from __future__ import annotations

import os
from pathlib import Path

from builder.errors import EnvironmentProblem


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


def data_dir(variable: str, name: str) -> Path:
    """$variable if set (it must name a directory: exit 2 otherwise), else the repository's `name`/."""
    explicit = os.environ.get(variable)
    if not explicit:
        return repo_root() / name
    path = Path(explicit)
    if not path.is_dir():
        what = "does not exist" if not os.path.lexists(path) else "is not a directory"
        raise EnvironmentProblem(f"${variable}: {explicit[:200]!r} {what}",
                                 hint=f"point {variable} at a directory like the repository's {name}/, or unset it")
    return path
