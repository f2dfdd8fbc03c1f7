"""A release without a usable signing key stops at once, before anything is built."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.publish.conftest import ReleaseKey

REPO = Path(__file__).resolve().parents[2]


def _release(tmp_path: Path, key: str, gnupghome: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "GNUPGHOME": str(gnupghome), "CLUSTERBAKE_CACHE": str(tmp_path / "cache")}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "builder", "release", "--cluster", REPO / "cluster.yaml",
                           "--key", key, "--dist", tmp_path / "dist"], env=env, capture_output=True, text=True,
                          cwd=REPO, stdin=subprocess.DEVNULL)
    return proc, time.monotonic() - start


def _nothing_done(tmp_path: Path) -> bool:
    return not (tmp_path / "dist").exists() and not (tmp_path / "cache" / "images").exists()


@pytest.mark.parametrize(("key", "message"), [
    ("", "RELEASE_KEY is not set"),
    ("1234ABCD", "is not a full OpenPGP fingerprint"),
])
def test_missing_or_short_key(tmp_path: Path, release_key: ReleaseKey, key: str, message: str) -> None:
    proc, seconds = _release(tmp_path, key, release_key.gnupghome)
    assert proc.returncode == 1
    assert message in proc.stderr and "(fix: " in proc.stderr and "Traceback" not in proc.stderr
    assert seconds < 15 and _nothing_done(tmp_path)


def test_key_not_in_the_keyring(tmp_path: Path, release_key: ReleaseKey) -> None:
    empty = tmp_path / "empty-gnupg"
    empty.mkdir(mode=0o700)
    proc, _ = _release(tmp_path, release_key.fingerprint, empty)
    assert proc.returncode == 1
    assert f"the release key {release_key.fingerprint} has no secret key in {empty}" in proc.stderr
    assert _nothing_done(tmp_path)


def test_no_keyring_at_all(tmp_path: Path, release_key: ReleaseKey) -> None:
    proc, _ = _release(tmp_path, release_key.fingerprint, tmp_path / "nowhere")
    assert proc.returncode == 1
    assert "no GnuPG keyring at" in proc.stderr and "GNUPGHOME" in proc.stderr
    assert _nothing_done(tmp_path)
