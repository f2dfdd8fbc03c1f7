"""Acquire the base image: download, verify (SHA-256 and pinned GPG key), decompress, cache."""

from __future__ import annotations

from pathlib import Path

from builder.config.model import BaseImage


def fetch_base(base: BaseImage, *, cluster_dir: Path, cache: Path, offline: bool = False) -> Path:
    """Return the path of the verified, decompressed raw image in the cache."""
    raise NotImplementedError
