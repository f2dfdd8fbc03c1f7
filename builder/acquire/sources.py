"""Where each base-image file comes from: an http(s) URL or a local file.

The cluster file may name a file by URL, by file:// URL or by a path relative to the
cluster file. Each resolved source remembers which setting named it, so that every
message can say which line of the cluster file to fix.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from builder.errors import InputError


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
    """Resolve `ref` (URL, file:// URL or path relative to the cluster file)."""
    try:
        parts = urllib.parse.urlsplit(ref)
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
    except ValueError as exc:
        raise InputError(f"{setting}: {ref[:80]!r} is not a valid URL ({exc})",
                         hint=f"check {setting} in the cluster file") from None
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise InputError(f"{setting}: {ref!r} has no host name", hint=f"check {setting} in the cluster file")
        return Source(setting, ref, url=ref)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InputError(f"{setting}: {ref!r} names a remote host; file:// URLs must be local",
                             hint="use file:///absolute/path or http(s)://")
        return Source(setting, ref, path=Path(urllib.request.url2pathname(parts.path)))
    if scheme:
        raise InputError(f"{setting}: {ref!r}: unsupported URL scheme '{parts.scheme}'",
                         hint="use http://, https://, file:// or a path relative to the cluster file")
    return Source(setting, ref, path=(cluster_dir / ref).resolve())
