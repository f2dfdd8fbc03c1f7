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
import hashlib
from dataclasses import dataclass
from pathlib import Path

from builder.cache import install, locked, write_atomically


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
        install(verified, dest)
        return dest

    def forget(self, sha256: str, suffix: str) -> None:
        """Drop everything known about this image (a failed check, or a changed trust anchor)."""
        for path in (self.raw(sha256), self.archive(sha256, suffix), self.trust_record(sha256)):
            path.unlink(missing_ok=True)

    def locked(self, sha256: str) -> contextlib.AbstractContextManager[bool]:
        """Hold the lock for one image, so concurrent fetches of it take turns."""
        return locked(self.root / "locks" / f"{sha256}.lock")
