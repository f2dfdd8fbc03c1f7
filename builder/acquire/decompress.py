"""Stream a verified archive into the raw image with the fastest decompressor at hand.

The decompressor reads the archive file and writes the output file itself, so memory
stays flat whatever the size. Progress is the decompressor's position in the archive:
its stdin shares our open file description, so our view of the offset moves with it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from builder.command import require_tool, run
from builder.errors import CommandFailed, EnvironmentProblem, VerificationError
from builder.progress import Progress, progress, step


@dataclass(frozen=True)
class Decompressor:
    decompress: tuple[str, ...]  # reads stdin, writes stdout
    test: tuple[str, ...]  # reads stdin, writes nothing: tells a bad archive from a bad disk


# In order of preference for each format: multi-threaded where that is available.
DECOMPRESSORS: dict[str, tuple[Decompressor, ...]] = {
    ".xz": (Decompressor(("xz", "-d", "-c", "-T0"), ("xz", "-t", "-T0")),),
    ".gz": (Decompressor(("pigz", "-d", "-c"), ("pigz", "-t")), Decompressor(("gzip", "-d", "-c"), ("gzip", "-t"))),
    ".zst": (Decompressor(("zstd", "-d", "-c", "-q"), ("zstd", "-t", "-q")),),
}


def compression_of(name: str) -> str:
    """".xz", ".gz", ".zst", or "" for a raw .img."""
    for suffix in DECOMPRESSORS:
        if name.endswith(".img" + suffix):
            return suffix
    return ""


def pick_decompressor(compression: str) -> Decompressor:
    choices = DECOMPRESSORS[compression]
    for choice in choices:
        if shutil.which(choice.decompress[0]):
            return choice
    require_tool(choices[0].decompress[0])  # raises, naming the package to install
    raise AssertionError("unreachable")


def decompress(archive: Path, dest: Path, compression: str, *, origin: str) -> None:
    """Write the decompressed content of `archive` to `dest` (truncated first).

    `origin` names the archive in messages (where it came from, not its cache name).

    A corrupt or truncated archive raises VerificationError; a failure to write
    (disk full) raises EnvironmentProblem.
    """
    tool = pick_decompressor(compression)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with step(f"decompress with {tool.decompress[0]}"):
        try:
            with archive.open("rb") as src, dest.open("wb") as out, \
                    progress(archive.stat().st_size, f"{tool.decompress[0]} -d") as bar, \
                    _following(src.fileno(), bar):
                run(tool.decompress, stdin=src, stdout=out)
        except CommandFailed as exc:
            if _archive_is_damaged(tool, archive):
                raise VerificationError(
                    f"{origin}: the archive is corrupt or truncated ({exc.message})",
                    hint="the signed file itself is damaged: report it to the publisher or use another image",
                ) from None
            raise EnvironmentProblem(f"could not write {dest}: {exc.message}",
                                     hint="check free space in the cache directory") from None


def _archive_is_damaged(tool: Decompressor, archive: Path) -> bool:
    with archive.open("rb") as src:
        return run(tool.test, stdin=src, check=False).returncode != 0


@contextlib.contextmanager
def _following(fd: int, bar: Progress) -> Iterator[None]:
    """Report how far the reader of `fd` has got, twice a second, until the block ends."""
    stop = threading.Event()

    def follow() -> None:
        done = 0
        while True:
            stopped = stop.wait(0.5)
            with contextlib.suppress(OSError):
                position = os.lseek(fd, 0, os.SEEK_CUR)
                bar.update(position - done)
                done = position
            if stopped:
                return

    thread = threading.Thread(target=follow, name="decompress progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
