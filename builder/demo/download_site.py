"""Publish the stand-in the way Raspberry Pi publishes Raspberry Pi OS, and serve it.

Beside the compressed image sit its `.sha256` (sha256sum format) and a detached binary
`.sig` over the `.img.xz`, made with a demo signing key generated once and kept in the
cache. Served over HTTP on 127.0.0.1, it lets the real acquisition path (download, hash,
signature against a pinned fingerprint) run with no access to Raspberry Pi's servers.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from builder.acquire.checksum import sha256_file
from builder.cache import cache_entry
from builder.command import run
from builder.demo.server import serve_directory
from builder.demo.standin import SUITE, build_standin
from builder.openpgp import create_signing_key, export_public_key, sign_detached, stop_agent
from builder.progress import step

KEY_NAME = "clusterbake demo signing key"
KEY_FILE = "demo-signing-key.asc"
MANIFEST = "published.json"


@dataclass(frozen=True)
class PublishedBase:
    """The published stand-in: compressed image, its checksum file, signature and key."""

    image: Path  # the .img.xz
    sha256: str  # hex digest of the .img.xz
    sha256_file: Path
    signature: Path
    key_file: Path
    fingerprint: str  # 40 upper-case hex digits


def publish_standin(cache: Path) -> PublishedBase:
    """Compress, checksum and sign the cached stand-in (once); return what was published."""
    image = build_standin(cache)
    folder = image.parent / "published"

    def make(work: Path) -> None:
        gnupghome, fingerprint = demo_signing_key(cache)
        name = f"{time.strftime('%Y-%m-%d')}-standin-{SUITE}-arm64-lite.img.xz"
        made = work / folder.name
        made.mkdir()
        with step(f"publish the stand-in as {name}"):
            compressed = made / name
            # The fastest preset: served on 127.0.0.1 only, the file's size matters less than the
            # first image's wait (13 s instead of 130 s at xz's default -6 for a 104 MB file, not 80).
            with step("compress (xz -T0 -0)"), open(compressed, "wb") as out:
                run(["xz", "-T0", "-0", "-c", image], stdout=out, label="xz")
            digest = sha256_file(compressed)
            (made / f"{name}.sha256").write_text(f"{digest}  {name}\n")
            sign_detached(gnupghome, fingerprint, compressed, made / f"{name}.sig")
            export_public_key(gnupghome, fingerprint, made / KEY_FILE)
            (made / MANIFEST).write_text(json.dumps({"image": name, "sha256": digest, "fingerprint": fingerprint},
                                                    indent=2) + "\n")

    cache_entry(folder, make)
    return _read_manifest(folder / MANIFEST)


def demo_signing_key(cache: Path) -> tuple[Path, str]:
    """The demo GNUPGHOME (`cache/demo-key`, 0700) and its key's fingerprint, made once."""
    home = cache / "demo-key"

    def make(work: Path) -> None:
        with step("create the demo signing key"):
            staged = work / home.name
            staged.mkdir(mode=0o700)
            fingerprint = create_signing_key(staged, KEY_NAME).upper()
            (staged / "fingerprint").write_text(fingerprint + "\n")
            # No agent may keep sockets open in the directory while it is renamed.
            stop_agent(staged)

    cache_entry(home, make)
    return home, (home / "fingerprint").read_text().strip()


@contextlib.contextmanager
def serve_standin(cache: Path) -> Iterator[dict[str, str]]:
    """Serve the published stand-in on 127.0.0.1; yield a cluster file's `base_image` mapping."""
    published = publish_standin(cache)
    with serve_directory(published.image.parent) as server:
        yield {
            "url": server.url(published.image.name),
            "sha256_url": server.url(published.sha256_file.name),
            "signature_url": server.url(published.signature.name),
            "signing_key": server.url(published.key_file.name),
            "fingerprint": published.fingerprint,
        }


def _read_manifest(manifest: Path) -> PublishedBase:
    data = json.loads(manifest.read_text())
    folder = manifest.parent
    name = str(data["image"])
    return PublishedBase(
        image=folder / name,
        sha256=str(data["sha256"]),
        sha256_file=folder / f"{name}.sha256",
        signature=folder / f"{name}.sig",
        key_file=folder / KEY_FILE,
        fingerprint=str(data["fingerprint"]),
    )

