"""The `CLUSTERBAKE_*` environment settings: each declared once below, read and validated together.

The CLI reads them at start (`settings()`), before the cluster file, so a bad one stops the run
in its first millisecond with one line and exit 2, whatever the command would have needed. They
get the cluster file's grammar: ASCII digits within bounds (Python's `int` takes `٣` as 3),
URLs by the same rules, no control character anywhere (a newline in the Debian mirror became a
line of its own in the container's `debian.sources`). The object is frozen; modules ask for it
instead of reading `os.environ`. Reading is cached per environment: a process that changes its
own `CLUSTERBAKE_*` variables (tests, `bench`) gets them validated again, once.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.config.grammar import control_problem, shown, url_problem
from builder.errors import EnvironmentProblem

PREFIX = "CLUSTERBAKE_"
DIGITS_RE = re.compile(r"[0-9]{1,6}")       # ASCII only, and short: no 5,000-digit int() to convert
MAX_JOBS = 256
MAX_LAYER_CACHE_GIB = 65536                  # 64 TiB
MAX_PATH = 4096                              # PATH_MAX
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_LAYER_CACHE_GIB = 16


@dataclass(frozen=True)
class Settings:
    cache: Path | None              # CLUSTERBAKE_CACHE (None: $XDG_CACHE_HOME/clusterbake)
    profiles: Path | None           # CLUSTERBAKE_PROFILES (None: the repository's profiles/)
    overlays: Path | None           # CLUSTERBAKE_OVERLAYS (None: the repository's overlays/)
    jobs: int | None                # CLUSTERBAKE_JOBS (None: one per core)
    layer_cache_gib: int            # CLUSTERBAKE_LAYER_CACHE_GIB
    debian_mirror: str              # CLUSTERBAKE_DEBIAN_MIRROR


def _whole(minimum: int, maximum: int, example: str) -> Callable[[str, str], int]:
    def parse(name: str, text: str) -> int:
        if not DIGITS_RE.fullmatch(text) or not minimum <= int(text) <= maximum:
            _fail(name, text, f"is not a whole number from {minimum} to {maximum} (ASCII digits)",
                  f"e.g. {name}={example}, or unset it")
        return int(text)
    return parse


def _directory(name: str, text: str) -> Path:
    _plain(name, text, MAX_PATH)
    path = Path(text)
    if not path.is_dir():
        what = "does not exist" if not os.path.lexists(path) else "is not a directory"
        _fail(name, text, what, f"point {name} at a directory like the repository's "
                                f"{name.removeprefix(PREFIX).lower()}/, or unset it")
    return path


def _cache(name: str, text: str) -> Path:
    _plain(name, text, MAX_PATH)
    return Path(text)


def _mirror(name: str, text: str) -> str:
    """An http(s) URL of a Debian mirror: it becomes `URIs:` in debian.sources and debootstrap's argument."""
    hint = f"e.g. {name}=https://snapshot.debian.org/archive/debian/20251201T000000Z, or unset it"
    _plain(name, text, 512)
    if not text.isascii():
        _fail(name, text, "holds non-ASCII characters", hint)
    problem = url_problem(text, paths=False)
    if problem is None and urllib.parse.urlsplit(text).scheme.lower() not in ("http", "https"):
        problem = "is not an http(s) URL (debootstrap and apt fetch the mirror over HTTP)"
    if problem is None and ("?" in text or "#" in text):
        problem = "holds a query or fragment ('?', '#'), which a mirror's URL has not"
    if problem is not None:
        _fail(name, text, problem, hint)
    return text.rstrip("/")


def _plain(name: str, text: str, limit: int) -> None:
    problem = control_problem(text)
    if problem is not None:
        _fail(name, text, problem, f"set {name} to one line of plain text")
    if len(text) > limit:
        _fail(name, text, f"is {len(text)} characters long; at most {limit}", f"is {name} set to the right value?")


def _fail(name: str, text: str, problem: str, hint: str) -> None:
    raise EnvironmentProblem(f"{name}={shown(text)} {problem}", hint=hint)


# name, parser, value when unset, help: the one table of settings.
SETTINGS: tuple[tuple[str, Callable[[str, str], Any], Any, str], ...] = (
    ("CACHE", _cache, None, "the cache directory (default $XDG_CACHE_HOME/clusterbake)"),
    ("PROFILES", _directory, None, "the role profiles (default the repository's profiles/)"),
    ("OVERLAYS", _directory, None, "the overlay trees (default the repository's overlays/)"),
    ("JOBS", _whole(1, MAX_JOBS, "2"), None, "layers built at once (default one per core)"),
    ("LAYER_CACHE_GIB", _whole(0, MAX_LAYER_CACHE_GIB, "32"), DEFAULT_LAYER_CACHE_GIB,
     "disk kept for cached layers, in GiB"),
    ("DEBIAN_MIRROR", _mirror, DEFAULT_MIRROR, "the container base's Debian mirror (http or https)"),
)

_read: dict[tuple[tuple[str, str], ...], Settings] = {}


def read_settings(environ: Mapping[str, str]) -> Settings:
    """Every setting from `environ`, validated; an empty value counts as unset."""
    values = {}
    for key, parse, default, _help in SETTINGS:
        name = PREFIX + key
        text = environ.get(name, "")
        values[key.lower()] = parse(name, text) if text else default
    return Settings(**values)


def settings() -> Settings:
    """This process's settings, read from its environment once (again only if it changed)."""
    key = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(PREFIX)))
    if key not in _read:
        _read.clear()
        _read[key] = read_settings(os.environ)
    return _read[key]
