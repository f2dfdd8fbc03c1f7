"""A release signing key in a private GNUPGHOME, made with builder.openpgp."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.openpgp import create_signing_key, export_public_key, temporary_keyring


@dataclass(frozen=True)
class ReleaseKey:
    gnupghome: Path
    fingerprint: str
    public_key: Path


@pytest.fixture(scope="session")
def release_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReleaseKey]:
    with temporary_keyring() as home:
        fingerprint = create_signing_key(home, "clusterbake test release key").upper()
        public = tmp_path_factory.mktemp("release-key") / "release-key.asc"
        export_public_key(home, fingerprint, public)
        yield ReleaseKey(home, fingerprint, public)
