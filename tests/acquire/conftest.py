"""A small fake base image, published like Raspberry Pi publishes theirs, served on 127.0.0.1.

The "image" is a few MiB of bytes (no partitions: acquisition never looks inside), compressed
with the real xz, gzip and zstd, hashed, and signed with a key generated for the session.
Alongside the good files the publication holds the bad ones each failure test needs.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.acquire import download
from builder.demo.server import serve_directory
from builder.openpgp import create_signing_key, export_public_key, sign_detached, temporary_keyring
from tests.acquire.acquire_helpers import IMAGE, Publication, Served, sha256_of


def _fake_image() -> bytes:
    # Random-looking enough that the archives are not trivially small, compressible enough
    # that making them takes no time; 4 MiB plus an odd tail so no size is a round number.
    seed = hashlib.sha256(b"clusterbake acquire tests").digest()
    noise = b"".join(hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(16384))
    return noise + bytes(3 << 20) + noise[:12345]


@pytest.fixture(scope="session")
def publication(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Publication]:
    root = tmp_path_factory.mktemp("published")
    original = _fake_image()
    raw = root / IMAGE
    raw.write_bytes(original)
    for argv, suffix in ((["xz", "-T0", "-1", "-k"], ".xz"), (["gzip", "-1", "-k"], ".gz"),
                         (["zstd", "-q", "-1", "-k"], ".zst")):
        subprocess.run([*argv, str(raw)], check=True)
        assert (root / (IMAGE + suffix)).exists()
    xz = (root / (IMAGE + ".xz")).read_bytes()
    # Same name pattern as the good file but flipped in one byte, with the good file's signature.
    flipped = bytearray(xz)
    flipped[len(flipped) // 2] ^= 0x01
    (root / "flipped.img.xz").write_bytes(bytes(flipped))
    # A publisher's mistake: a cut-off archive, hashed and signed as if it were fine.
    (root / "truncated.img.xz").write_bytes(xz[: len(xz) * 2 // 3])

    with temporary_keyring() as homes:
        fingerprint = create_signing_key(homes / "good", "Clusterbake Test Signing Key")
        other = create_signing_key(homes / "other", "Somebody Else")
        export_public_key(homes / "good", fingerprint, root / "signing-key.asc")
        export_public_key(homes / "other", other, root / "other-key.asc")
        for name in (IMAGE, IMAGE + ".xz", IMAGE + ".gz", IMAGE + ".zst", "truncated.img.xz"):
            sign_detached(homes / "good", fingerprint, root / name, root / (name + ".sig"))
            (root / (name + ".sha256")).write_text(f"{sha256_of(root / name)}  {name}\n")
        shutil.copy(root / (IMAGE + ".xz.sig"), root / "flipped.img.xz.sig")
        sign_detached(homes / "good", fingerprint, root / (IMAGE + ".xz"), root / (IMAGE + ".xz.asc"), armor=True)
        sign_detached(homes / "other", other, root / (IMAGE + ".xz"), root / (IMAGE + ".xz.other-sig"))
    yield Publication(root, original, fingerprint, other)


@pytest.fixture
def served(publication: Publication) -> Iterator[Served]:
    with serve_directory(publication.root) as server:
        yield Served(publication, server)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(autouse=True)
def impatient_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries in milliseconds rather than seconds: the failures here are all deliberate."""
    monkeypatch.setattr(download, "POLICY", download.NetworkPolicy(
        connect_timeout=5, read_timeout=5, attempts=3, backoff=0.01, max_backoff=0.01))


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The CLI's main() installs its own log handler; put the old ones back afterwards."""
    logger = logging.getLogger("clusterbake")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]
