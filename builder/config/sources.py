"""Where each base-image file comes from: an http(s) URL or a local file.

The cluster file may name a file by URL, by file:// URL or by a path relative to the
cluster file. The loader resolves each reference once, as it loads the cluster file, so
acquisition only uses the result. Each source remembers which setting named it, so that
every message can say which line of the cluster file to fix.
"""

from __future__ import annotations

import errno
import os
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


@dataclass(frozen=True)
class Source:
    """One file named in the cluster file: exactly one of `url` and `path` is set."""

    setting: str  # e.g. "base_image.url"
    ref: str  # as written in the cluster file
    url: str | None = None
    path: Path | None = None

    @property
    def name(self) -> str:
        """The file name, as a checksum list would name it."""
        if self.path is not None:
            return self.path.name
        return PurePosixPath(urllib.parse.unquote(urllib.parse.urlsplit(self.ref).path)).name

    @property
    def where(self) -> str:
        """`setting: location`, the start of every message about this file."""
        return f"{self.setting}: {self.url or self.path}"


def resolve(setting: str, ref: str, cluster_dir: Path) -> Source:
    """Where `ref` (URL, file:// URL or path relative to `cluster_dir`, the cluster file's folder) points.

    `ref` has been checked (builder.config.grammar.url_problem: http(s) with a host, a local
    file:// URL, or a path); here it is only resolved.
    """
    parts = urllib.parse.urlsplit(ref)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return Source(setting, ref, url=ref)
    return Source(setting, ref, path=local_path(ref, cluster_dir))


def local_path(ref: str, cluster_dir: Path) -> Path:
    """The file a file:// URL or a path relative to the cluster file's folder names."""
    parts = urllib.parse.urlsplit(ref)
    if parts.scheme.lower() == "file":
        return Path(urllib.request.url2pathname(parts.path))
    return absolute(cluster_dir / ref)


def is_symlink_loop(path: Path) -> bool:
    try:
        path.resolve()
    except RuntimeError:
        return True
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def absolute(path: Path) -> Path:
    """`path` made absolute, its links resolved where they can be: a symlink loop is left for the
    reader to name (read_bytes says "is a symlink loop"), instead of a RuntimeError here."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        return Path(os.path.abspath(path))
