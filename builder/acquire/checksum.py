"""SHA-256: a file's, computed in chunks with a progress display, and the one a download is
expected to have, read from a sha256sum-format list."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from builder.config.sources import Source
from builder.errors import InputError
from builder.progress import progress

CHUNK = 1 << 20

# `<hex>  <name>` (text mode), `<hex> *<name>` (binary mode) or a bare `<hex>`.
SUM_LINE_RE = re.compile(r"^(?P<hex>[0-9a-fA-F]{64})(?:\s+\*?(?P<name>.+?))?\s*$")


def expected_sha256(listing: str, image_name: str, source: Source) -> str:
    """Pick the hash of `image_name` from a sha256sum listing fetched from `source`."""
    entries: list[tuple[str, str | None]] = []
    for line in listing.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = SUM_LINE_RE.match(line.strip())
        if match is None:
            raise InputError(f"{source.where}: not in sha256sum format: {line.strip()[:80]!r}",
                             hint="point the setting at the image's .sha256 file ('<hex>  <name>' lines)")
        name = match.group("name")
        entries.append((match.group("hex").lower(), name.strip().rsplit("/", 1)[-1] if name else None))
    for hexdigest, name in entries:
        if name == image_name:
            return hexdigest
    if len(entries) == 1 and entries[0][1] is None:
        return entries[0][0]
    listed = ", ".join(name for _, name in entries if name) or "nothing"
    raise InputError(f"{source.where}: lists no SHA-256 for {image_name} (it lists {listed})",
                     hint="base_image.url and base_image.sha256_url must name the same image")


def sha256_file(path: Path, label: str | None = None) -> str:
    """The SHA-256 of a file, read in chunks so memory stays flat."""
    digest = hashlib.sha256()
    with path.open("rb") as f, progress(path.stat().st_size, label or f"SHA-256 {path.name}") as bar:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()
