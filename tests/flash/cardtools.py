"""A loop device standing in for an SD card, and small sparse images with known content."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

MIB = 1 << 20


@contextlib.contextmanager
def loop_card(backing: Path, size: int, *, fill: bytes | None = None) -> Iterator[Path]:
    """Attach a (sparse, or `fill`-patterned) file of `size` bytes as a loop device; detach it afterwards."""
    with open(backing, "wb") as out:
        if fill is None:
            out.truncate(size)
        else:
            block = (fill * (MIB // len(fill) + 1))[:MIB]
            for _ in range(size // MIB):
                out.write(block)
    device = subprocess.run(["losetup", "--offset", "0", "--sizelimit", str(size), "--find", "--show", backing],
                            check=True, capture_output=True, text=True).stdout.strip()
    try:
        yield Path(device)
    finally:
        subprocess.run(["losetup", "-d", device], check=False)


def sparse_image(path: Path, size: int, chunks: dict[int, bytes]) -> Path:
    """A sparse file of `size` bytes holding `chunks` (offset → data); holes elsewhere."""
    with open(path, "wb") as out:
        out.truncate(size)
        for offset, data in chunks.items():
            out.seek(offset)
            out.write(data)
    return path


def sha256_prefix(path: Path, length: int) -> str:
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        left = length
        while left:
            chunk = os.read(fd, min(4 * MIB, left))
            assert chunk, f"{path} ended early"
            digest.update(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()
