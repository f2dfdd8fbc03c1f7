"""Compressed release images: multi-threaded xz (what Raspberry Pi Imager and bmaptool read), optionally zstd.

xz runs with -T0 (every core) and --block-size, so the output is split into independent
blocks that can also be decompressed in parallel. `fast` trades
size for time (-1 instead of -6); the tests and quick local releases use it.
"""

from __future__ import annotations

from pathlib import Path

from builder.command import run
from builder.progress import step

XZ_BLOCK_SIZE = 64 << 20


def compress_xz(image: Path, dest: Path, *, fast: bool = False) -> Path:
    level = "-1" if fast else "-6"
    with step(f"xz {level} {dest.name}"), open(dest, "wb") as out:
        run(["xz", "--threads=0", f"--block-size={XZ_BLOCK_SIZE}", level, "--check=crc64", "--stdout", image],
            stdout=out, label="xz")
    return dest


def compress_zstd(image: Path, dest: Path, *, fast: bool = False) -> Path:
    level = "-3" if fast else "-19"
    with step(f"zstd {level} {dest.name}"):
        run(["zstd", "--threads=0", level, "--quiet", "--force", "-o", dest, image], label="zstd")
    return dest
