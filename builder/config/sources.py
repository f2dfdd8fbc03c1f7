"""Where each base-image file comes from: an http(s) URL or a local file.

The cluster file may name a file by URL, by file:// URL or by a path relative to the
cluster file. The loader resolves each reference once, as it loads the cluster file, so
acquisition only uses the result. Each source remembers which setting named it, so that
every message can say which line of the cluster file to fix.
"""

from __future__ import annotations

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
    if scheme == "file":
        return Source(setting, ref, path=Path(urllib.request.url2pathname(parts.path)))
    return Source(setting, ref, path=(cluster_dir / ref).resolve())
