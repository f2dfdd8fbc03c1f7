"""What the acquisition tests share: the publication of a fake image and cache inspection."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.config.load import resolve_base_image
from builder.config.model import BaseImage
from builder.demo.server import StaticServer

IMAGE = "test-arm64-lite.img"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Publication:
    """The published files (one directory) and facts about them."""

    root: Path
    original: bytes  # the raw image every good archive decompresses to
    fingerprint: str  # of the key that signed the good files
    other_fingerprint: str  # of a second key, which the cluster does not pin

    def sha256(self, name: str) -> str:
        return sha256_of(self.root / name)


@dataclass
class Served:
    publication: Publication
    server: StaticServer

    def written(self, name: str = IMAGE + ".xz", **changes: Any) -> dict[str, Any]:
        """A cluster file's `base_image` for the published `name`, every URL on the server, `changes` applied."""
        url = self.server.url
        written = {
            "url": url(name),
            "sha256": self.publication.sha256(name) if (self.publication.root / name).exists() else "0" * 64,
            "signature_url": url(name + ".sig"),
            "signing_key": url("signing-key.asc"),
            "fingerprint": self.publication.fingerprint,
        }
        return {**written, **changes}

    def base(self, name: str = IMAGE + ".xz", *, cluster_dir: Path | None = None, **changes: Any) -> BaseImage:
        """That `base_image` as the loader resolves it, as if the cluster file were in `cluster_dir`
        (by default the folder the files are published in)."""
        return resolve_base_image(cluster_dir or self.publication.root, **self.written(name, **changes))

    def image_gets(self, name: str = IMAGE + ".xz") -> int:
        return self.server.requests.count(("GET", name))


def as_written(base: BaseImage) -> dict[str, Any]:
    """`base` as a cluster file's `base_image` would say it (what the loader resolved it from)."""
    keys = base.signing_keys
    return {"url": base.url, "sha256": base.sha256, "sha256_url": base.sha256_url, "signature_url": base.signature_url,
            "signing_key": keys[0] if len(keys) == 1 else list(keys), "fingerprint": base.fingerprint}


def verified_files(cache: Path) -> list[str]:
    """What the cache would trust: everything under images/."""
    images = cache / "images"
    return sorted(p.name for p in images.iterdir()) if images.is_dir() else []


def partial_files(cache: Path) -> list[str]:
    partial = cache / "partial"
    return sorted(p.name for p in partial.iterdir()) if partial.is_dir() else []


def no_gpg_agents_left(home_prefix: str = "clusterbake-") -> bool:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    return not any("gpg-agent" in line and home_prefix in line for line in out.splitlines())
