"""Acquire the base image: download, verify (SHA-256 and pinned GPG key), decompress, cache.

Order matters for trust and for failing early: the expected hash, the pinned key and
the signature (all small) come first, then the image; its SHA-256 and its signature are
both checked while it is still a partial file, and only then is it renamed into the
cache. The raw image is decompressed from the cached archive, by temp file and rename.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import requests

from builder.acquire.cache import ImageCache
from builder.acquire.checksum import expected_sha256
from builder.acquire.decompress import compression_of, decompress
from builder.acquire.download import Downloader
from builder.acquire.signature import PinnedKeyring, pinned_keyring
from builder.acquire.sources import Source, resolve
from builder.cache import install, write_atomically
from builder.config.model import BaseImage
from builder.digest import sha256_file
from builder.errors import InputError, VerificationError
from builder.progress import step

log = logging.getLogger("clusterbake.acquire")

SIGNATURE_LIMIT = 64 << 10
KEY_LIMIT = 1 << 20


def fetch_base(base: BaseImage, *, cluster_dir: Path, cache: Path, offline: bool = False) -> Path:
    """Return the path of the verified, decompressed raw image in the cache."""
    # The loader normalises these; callers that build a BaseImage themselves may not have.
    base = dataclasses.replace(base, fingerprint=base.fingerprint.replace(" ", "").upper(),
                               sha256=base.sha256.lower() if base.sha256 else None)
    image = resolve("base_image.url", base.url, cluster_dir)
    compression = compression_of(image.name)
    suffix = ".img" + compression
    store = ImageCache(cache)
    with step(f"fetch base image {image.name}"), _session() as session:
        downloads = Downloader(session, offline=offline)
        sha256 = _expected_hash(base, image, cluster_dir, store, downloads)
        with store.locked(sha256):
            cached = _from_cache(store, sha256, suffix, base.fingerprint, image, offline=offline)
            if cached is not None:
                return cached
            if offline:
                raise InputError(f"{image.where}: not in the cache ({cache}); run without --offline",
                                 hint="run once without --offline to download and verify it")
            archive = _download_verified(base, image, sha256, suffix, cluster_dir, store, downloads)
            return _raw_image(store, sha256, archive, suffix, image)


def _expected_hash(base: BaseImage, image: Source, cluster_dir: Path, store: ImageCache,
                   downloads: Downloader) -> str:
    if base.sha256 is not None:
        return base.sha256
    assert base.sha256_url is not None  # the loader demands exactly one of the two
    source = resolve("base_image.sha256_url", base.sha256_url, cluster_dir)
    cached = store.listing(source.url or str(source.path))
    if downloads.offline and cached.exists():
        return expected_sha256(cached.read_text(errors="replace"), image.name, source)
    data = downloads.small(source)
    sha256 = expected_sha256(data.decode(errors="replace"), image.name, source)
    write_atomically(cached, data)
    return sha256


def _from_cache(store: ImageCache, sha256: str, suffix: str, fingerprint: str, image: Source, *,
                offline: bool) -> Path | None:
    trusted_by = store.trusted_by(sha256)
    if trusted_by is None:
        return None
    if trusted_by != fingerprint:
        if offline:
            raise InputError(f"the cached image {sha256[:12]}… was verified with key {trusted_by}, but "
                             f"base_image.fingerprint pins {fingerprint}; run without --offline",
                             hint="run once without --offline to verify it against the pinned key")
        log.info("    the cached image was verified with another key (%s); fetching it again", trusted_by)
        store.forget(sha256, suffix)
        return None
    raw = store.raw(sha256)
    if raw.exists():
        log.info("    using the cached, verified image %s", raw)
        return raw
    archive = store.archive(sha256, suffix)
    if archive.exists():
        return _raw_image(store, sha256, archive, suffix, image)
    return None


def _download_verified(base: BaseImage, image: Source, sha256: str, suffix: str, cluster_dir: Path,
                       store: ImageCache, downloads: Downloader) -> Path:
    """Download the image into partial/, verify hash and signature, admit it to the cache."""
    with _keyring(base, cluster_dir, store, downloads) as keyring:
        signature_source = resolve("base_image.signature_url", base.signature_url, cluster_dir)
        signature = downloads.small(signature_source, limit=SIGNATURE_LIMIT)
        partial = store.partial(sha256, suffix)
        with step(f"download {image.name}"):
            resumed = downloads.to_file(image, partial)
        failure = _verify(partial, base, image, sha256, keyring, signature, signature_source)
        if failure is not None and resumed:
            # The kept bytes may come from an older file at the same URL: try once afresh.
            log.warning("    %s; downloading it again from the start", failure.message)
            partial.unlink(missing_ok=True)
            with step(f"download {image.name} again"):
                downloads.to_file(image, partial)
            failure = _verify(partial, base, image, sha256, keyring, signature, signature_source)
        if failure is not None:
            partial.unlink(missing_ok=True)
            raise failure
        return store.admit(partial, sha256, suffix, base.fingerprint)


def _verify(file: Path, base: BaseImage, image: Source, expected: str, keyring: PinnedKeyring,
            signature: bytes, signature_source: Source) -> VerificationError | None:
    """Check both; the pair of verdicts tells a corrupt download from a wrong pinned hash."""
    with step(f"verify SHA-256 and signature of {image.name}"):
        actual = sha256_file(file, f"SHA-256 {image.name}")
        verdict = keyring.check(signature, file)
    if actual == expected and verdict.good:
        log.info("    SHA-256 matches and the signature is good (key %s)", base.fingerprint)
        return None
    if actual == expected:
        return VerificationError(f"{signature_source.where}: {verdict.problem}",
                                 hint="only a signature by the key pinned in base_image.fingerprint is accepted")
    if verdict.good:
        setting = "base_image.sha256" if base.sha256 else "base_image.sha256_url"
        return VerificationError(
            f"{image.where}: SHA-256 is {actual}, but {setting} says {expected}; the file carries a good "
            f"signature by the pinned key, so the expected hash is what is wrong",
            hint=f"correct {setting}: the signed image's SHA-256 is {actual}")
    return VerificationError(
        f"{image.where}: the download is corrupt: its SHA-256 {actual} is not the expected {expected}, "
        f"and its signature does not verify ({verdict.problem})",
        hint="run again to download it afresh; if this persists the server holds a damaged file")


@contextlib.contextmanager
def _keyring(base: BaseImage, cluster_dir: Path, store: ImageCache, downloads: Downloader) -> Iterator[PinnedKeyring]:
    """The pinned key, from the cache or fetched on first use (kept only if it is the pinned one)."""
    cached = store.key(base.fingerprint)
    with contextlib.ExitStack() as stack:
        keyring = None
        if cached.exists():
            try:
                keyring = stack.enter_context(
                    pinned_keyring(cached.read_bytes(), base.fingerprint, f"cached key {cached}"))
            except VerificationError as exc:
                # Whatever replaced the cached key file is not the pinned key: drop it, fetch again.
                log.warning("    %s; fetching the key again", exc.message)
                cached.unlink(missing_ok=True)
        if keyring is None:
            source = resolve("base_image.signing_key", base.signing_key, cluster_dir)
            data = downloads.small(source, limit=KEY_LIMIT)
            keyring = stack.enter_context(pinned_keyring(data, base.fingerprint, source.where))
            write_atomically(cached, data)
        yield keyring


def _raw_image(store: ImageCache, sha256: str, archive: Path, suffix: str, image: Source) -> Path:
    """The raw image decompressed from a verified archive (the archive itself if uncompressed)."""
    raw = store.raw(sha256)
    if archive == raw:
        return raw
    tmp = store.raw_partial(sha256)
    try:
        decompress(archive, tmp, compression_of(archive.name), origin=image.where)
        install(tmp, raw)
    except VerificationError:
        store.forget(sha256, suffix)
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return raw


@contextlib.contextmanager
def _session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        # The bytes must arrive as stored: a transparently gunzipped .img.gz would not hash right.
        session.headers.update({"User-Agent": "clusterbake", "Accept-Encoding": "identity"})
        yield session
