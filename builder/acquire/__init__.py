"""Acquire the base image: download, verify (SHA-256 and pinned GPG key), decompress, cache.

Order matters for trust and for failing early: the expected hash, the pinned key and
the signature (all small) come first, then the image; its SHA-256 and its signature are
both checked while it is still a partial file, and only then is it renamed into the
cache. The raw image is decompressed from the cached archive, by temp file and rename.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import requests

from builder.acquire.checksum import expected_sha256, sha256_file
from builder.acquire.decompress import compression_of, decompress
from builder.acquire.download import Downloader
from builder.acquire.image_store import ImageCache
from builder.acquire.signature import (
    PinnedKeyring,
    PublicKey,
    pinned_keyring,
    pinned_signer,
    public_keys,
    signature_issuer,
)
from builder.cache import install, write_atomically
from builder.config.model import BaseImage
from builder.config.sources import Source
from builder.errors import ClusterbakeError, EnvironmentProblem, InputError, VerificationError
from builder.progress import step

log = logging.getLogger("clusterbake.acquire")

SIGNATURE_LIMIT = 64 << 10
KEY_LIMIT = 1 << 20


def fetch_base(base: BaseImage, *, cache: Path, offline: bool = False) -> Path:
    """Return the path of the verified, decompressed raw image in the cache."""
    # `base` is as the loader made it: every source resolved, sha256 and fingerprints normalised.
    image = base.image
    compression = compression_of(image.name)
    suffix = ".img" + compression
    store = ImageCache(cache)
    with step(f"fetch base image {image.name}"), _session() as session:
        downloads = Downloader(session, offline=offline)
        sha256 = _expected_hash(base, image, store, downloads)
        with store.locked(sha256):
            cached = _from_cache(store, sha256, suffix, base.fingerprints, image, offline=offline)
            if cached is not None:
                return cached
            if offline:
                raise InputError(f"{image.where}: not in the cache ({cache}); run without --offline",
                                 hint="run once without --offline to download and verify it")
            archive = _download_verified(base, image, sha256, suffix, store, downloads)
            return _raw_image(store, sha256, archive, suffix, image)


def _expected_hash(base: BaseImage, image: Source, store: ImageCache, downloads: Downloader) -> str:
    if base.sha256 is not None:
        return base.sha256
    source = base.sha256_list
    assert source is not None  # the loader demands exactly one of the two
    cached = store.listing(source.url or str(source.path))
    if downloads.offline and cached.exists():
        return expected_sha256(cached.read_text(errors="replace"), image.name, source)
    data = downloads.small(source)
    sha256 = expected_sha256(data.decode(errors="replace"), image.name, source)
    write_atomically(cached, data)
    return sha256


def _from_cache(store: ImageCache, sha256: str, suffix: str, pinned: tuple[str, ...], image: Source, *,
                offline: bool) -> Path | None:
    trusted_by = store.trusted_by(sha256)
    if trusted_by is None:
        return None
    if trusted_by not in pinned:
        if offline:
            raise InputError(f"the cached image {sha256[:12]}… was verified with key {trusted_by}, but "
                             f"base_image.fingerprint pins {' and '.join(pinned)}; run without --offline",
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


def _download_verified(base: BaseImage, image: Source, sha256: str, suffix: str, store: ImageCache,
                       downloads: Downloader) -> Path:
    """Download the image into partial/, verify hash and signature, admit it to the cache."""
    signature_source = base.signature
    signature = downloads.small(signature_source, limit=SIGNATURE_LIMIT)
    with _keyring(base, signature, signature_source, store, downloads) as keyring:
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
        return store.admit(partial, sha256, suffix, keyring.fingerprint)


def _verify(file: Path, base: BaseImage, image: Source, expected: str, keyring: PinnedKeyring,
            signature: bytes, signature_source: Source) -> VerificationError | None:
    """Check both; the pair of verdicts tells a corrupt download from a wrong pinned hash."""
    with step(f"verify SHA-256 and signature of {image.name}"):
        actual = sha256_file(file, f"SHA-256 {image.name}")
        verdict = keyring.check(signature, file)
    if actual == expected and verdict.good:
        log.info("    SHA-256 matches and the signature is good (key %s)", keyring.fingerprint)
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
def _keyring(base: BaseImage, signature: bytes, signature_source: Source, store: ImageCache,
             downloads: Downloader) -> Iterator[PinnedKeyring]:
    """A keyring holding the one pinned key that made `signature`, and nothing else."""
    issuer = signature_issuer(signature)
    if issuer is None:
        raise VerificationError(f"{signature_source.where}: not a valid OpenPGP detached signature",
                                hint="base_image.signature_url must name the image's .sig file")
    fingerprint, key, origin = _signer_key(base, issuer, signature_source, store, downloads)
    with pinned_keyring(key, fingerprint, origin) as keyring:
        yield keyring


def _signer_key(base: BaseImage, issuer: str, signature_source: Source, store: ImageCache,
                downloads: Downloader) -> tuple[str, bytes, str]:
    """The pinned key that made the signature: from the cache, else from the first signing_key source that
    holds it (a source that fails or lacks it is skipped). Kept in the cache only as that one key."""
    pinned = base.fingerprints
    for fingerprint in pinned:
        cached = store.key(fingerprint)
        if not cached.exists():
            continue
        held = public_keys(cached.read_bytes())
        if [k.fingerprint for k in held] != [fingerprint]:
            # Whatever replaced the cached key file is not the pinned key: drop it, fetch again.
            log.warning("    cached key %s does not hold exactly key %s; fetching it again", cached, fingerprint)
            cached.unlink(missing_ok=True)
        elif held[0].made(issuer):
            return fingerprint, cached.read_bytes(), f"cached key {cached}"
    sources = base.keys
    problems: list[ClusterbakeError] = []
    for source in sources:
        try:
            fingerprint, key = pinned_signer(downloads.small(source, limit=KEY_LIMIT), issuer, pinned, source.where)
        except (InputError, VerificationError, EnvironmentProblem) as exc:
            if source is not sources[-1]:
                log.warning("    %s; trying the next signing_key source", exc.message)
            problems.append(exc)
            continue
        write_atomically(store.key(fingerprint), key)
        return fingerprint, key, source.where
    if not any(PublicKey(fingerprint).made(issuer) for fingerprint in pinned):
        raise VerificationError(
            f"{signature_source.where}: signature made by key {issuer}, which base_image.fingerprint does not pin "
            f"(it pins {' and '.join(pinned)})",
            hint=f"if the publisher has rotated its signing key, check {issuer} against its announcement, then add "
                 "it to base_image.fingerprint (a list keeps the old key during the change) and point "
                 "base_image.signing_key at the new key")
    if len(problems) == 1:
        raise problems[0]
    kind = EnvironmentProblem if all(isinstance(p, EnvironmentProblem) for p in problems) else VerificationError
    raise kind(f"base_image.signing_key: none of its {len(problems)} sources gave the pinned key {issuer} that "
               "made the signature: " + "; ".join(p.message for p in problems),
               hint="add a source that holds that key (its URL, a keyserver's by-fingerprint URL, or a file)")


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
