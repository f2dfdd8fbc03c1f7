"""SHA-256 of a file, read in chunks so memory stays flat, with a progress display."""

from __future__ import annotations

import hashlib
from pathlib import Path

from builder.progress import progress

CHUNK = 1 << 20


def sha256_file(path: Path, label: str | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f, progress(path.stat().st_size, label or f"SHA-256 {path.name}") as bar:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()
