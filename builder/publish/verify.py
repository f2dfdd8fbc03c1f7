"""Check a release as a user would: `gpg --verify SHA256SUMS.asc SHA256SUMS`, `sha256sum -c`, os_list.json."""

from __future__ import annotations

import hashlib
import json
import logging
import lzma
from pathlib import Path
from urllib.parse import unquote, urlparse

from builder.errors import InputError, VerificationError
from builder.progress import step
from builder.publish.signing import public_keyring, verify_signature
from builder.publish.sums import SUMS, check_sums, read_sums

log = logging.getLogger("clusterbake")


def verify_release(dist: Path, *, key_file: Path | None = None, fingerprint: str | None = None,
                   deep: bool = True) -> list[str]:
    """Verify the release in `dist`; return the names of the files the signature covers.

    `deep` also decompresses every image to check the extracted size and SHA-256 that
    os_list.json promises Raspberry Pi Imager.
    """
    sums, signature = dist / SUMS, dist / f"{SUMS}.asc"
    for needed in (sums, signature):
        if not needed.is_file():
            raise InputError(f"{needed}: missing", hint="download SHA256SUMS and SHA256SUMS.asc with the images")
    with step("gpg --verify SHA256SUMS.asc SHA256SUMS"), public_keyring(key_file) as home:
        signed_by = verify_signature(signature, sums, home, fingerprint)
    log.info("  good signature by %s", signed_by)
    with step("sha256sum -c SHA256SUMS"):
        names = check_sums(sums)
    unlisted = sorted(p.name for p in dist.iterdir()
                      if p.is_file() and p.name not in names and p.name not in (SUMS, signature.name))
    if unlisted:
        log.warning("not covered by the signature (ignored): %s", ", ".join(unlisted))
    if "os_list.json" in names:
        check_os_list(dist / "os_list.json", read_sums(sums), deep=deep)
    return names


def check_os_list(path: Path, sums: dict[str, str], *, deep: bool) -> None:
    try:
        entries = json.loads(path.read_text())["os_list"]
    except (ValueError, KeyError, TypeError) as exc:
        raise VerificationError(f"{path}: not an Imager repository file ({exc})") from exc
    for entry in entries:
        name = Path(unquote(urlparse(str(entry["url"])).path)).name
        where = f"{path.name}: {entry.get('name', name)}"
        image = path.parent / name
        if name not in sums:
            raise VerificationError(f"{where}: {name} is not covered by SHA256SUMS")
        if entry["image_download_sha256"] != sums[name] or entry["image_download_size"] != image.stat().st_size:
            raise VerificationError(f"{where}: download size or SHA-256 differ from {name}")
        if deep:
            with step(f"decompress {name} to check the extracted image"):
                size, digest = _extracted(image)
            if (size, digest) != (entry["extract_size"], entry["extract_sha256"]):
                raise VerificationError(f"{where}: the extracted image ({size} bytes, {digest}) differs from the "
                                        f"listed one ({entry['extract_size']} bytes, {entry['extract_sha256']})")


def _extracted(image: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with lzma.open(image, "rb") as stream:
        while chunk := stream.read(4 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
