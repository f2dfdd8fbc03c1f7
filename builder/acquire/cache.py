"""The acquisition cache: content-addressed, locked, and only ever filled by rename.

Layout under the cache root:
  images/<sha256>.img.xz      the verified download (named by its SHA-256)
  images/<sha256>.img         the raw image decompressed from it
  images/<sha256>.trusted-by  the pinned fingerprint whose signature admitted it
  partial/                    downloads and decompressions in progress (never trusted)
  keys/<FINGERPRINT>.asc      signing keys, kept because their fingerprint was the pinned one
  sums/<hash of URL>.sha256   checksum lists, so --offline works with sha256_url
  locks/<sha256>.lock         fcntl lock held while one process fetches that image
A file appears under images/ only after it was verified and fsync'd, so a crash or a
kill at any point leaves nothing that a later run would mistake for verified.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from builder.errors import EnvironmentProblem

log = logging.getLogger("clusterbake.acquire")


@dataclass(frozen=True)
class ImageCache:
    root: Path

    def archive(self, sha256: str, suffix: str) -> Path:
        return self.root / "images" / f"{sha256}{suffix}"

    def raw(self, sha256: str) -> Path:
        return self.root / "images" / f"{sha256}.img"

    def trust_record(self, sha256: str) -> Path:
        return self.root / "images" / f"{sha256}.trusted-by"

    def partial(self, sha256: str, suffix: str) -> Path:
        return self.root / "partial" / f"{sha256}{suffix}.part"

    def raw_partial(self, sha256: str) -> Path:
        return self.root / "partial" / f"{sha256}.img.decompressing"

    def key(self, fingerprint: str) -> Path:
        return self.root / "keys" / f"{fingerprint}.asc"

    def listing(self, url: str) -> Path:
        return self.root / "sums" / f"{hashlib.sha256(url.encode()).hexdigest()[:32]}.sha256"

    def trusted_by(self, sha256: str) -> str | None:
        """The fingerprint that admitted this image, or None if it was never admitted."""
        try:
            return self.trust_record(sha256).read_text().strip()
        except FileNotFoundError:
            return None

    def admit(self, verified: Path, sha256: str, suffix: str, fingerprint: str) -> Path:
        """Move a verified download into images/; returns its new path."""
        write_atomically(self.trust_record(sha256), fingerprint.encode() + b"\n")
        dest = self.archive(sha256, suffix)
        move_into_place(verified, dest)
        return dest

    def forget(self, sha256: str, suffix: str) -> None:
        """Drop everything known about this image (a failed check, or a changed trust anchor)."""
        for path in (self.raw(sha256), self.archive(sha256, suffix), self.trust_record(sha256)):
            path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def locked(self, sha256: str) -> Iterator[None]:
        """Hold the lock for one image, so concurrent fetches of it take turns."""
        path = self.root / "locks" / f"{sha256}.lock"
        _make_dirs(path.parent)
        # The lock file stays: deleting it would let a waiter lock an unlinked inode.
        with path.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("    another clusterbake is fetching this image; waiting for it")
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def move_into_place(source: Path, dest: Path) -> None:
    """fsync `source`, then rename it to `dest`: after a crash, `dest` is whole or absent."""
    _make_dirs(dest.parent)
    with source.open("rb") as f:
        os.fsync(f.fileno())
    source.replace(dest)
    _fsync_dir(dest.parent)


def write_atomically(dest: Path, data: bytes) -> None:
    """Write a small file by temp file and rename."""
    _make_dirs(dest.parent)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        move_into_place(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _make_dirs(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EnvironmentProblem(f"{path}: cannot create the cache directory: {exc.strerror}",
                                 hint="set CLUSTERBAKE_CACHE (or --cache) to a writable directory") from None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
