"""Flashing into a loop device standing in for an SD card, and the refusals that keep real disks safe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder.errors import InputError
from builder.flash import DEFAULT_MAX_SIZE, block_device, parse_size, refusals
from tests.flash.cardtools import MIB, loop_card, sha256_prefix, sparse_image

pytestmark = pytest.mark.root

IMAGE_SIZE = 48 * MIB
CARD_SIZE = 64 * MIB


def _cli(*args: str | Path, stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "builder", "flash", *map(str, args)], stdin=stdin,
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """A sparse image with data at the start, the middle and the end, its .bmap and .img.xz beside it."""
    if os.geteuid() != 0:
        pytest.skip("needs root for loop devices")
    img = sparse_image(tmp_path / "card.img", IMAGE_SIZE, {
        0: os.urandom(MIB), 20 * MIB + 4096: os.urandom(3 * MIB), IMAGE_SIZE - 8192: os.urandom(8192)})
    subprocess.run(["bmaptool", "create", "--output", tmp_path / "card.img.bmap", img], check=True)
    subprocess.run(["xz", "-T0", "-1", "-k", img], check=True)
    return img


def test_bmap_flash_of_xz_reads_back_identical(image: Path, tmp_path: Path) -> None:
    with loop_card(tmp_path / "card", CARD_SIZE) as card:
        result = _cli(image.with_name("card.img.xz"), card, "--yes")
        assert result.returncode == 0, result.stderr
        assert "bmaptool copy" in result.stderr
        # The card was empty (zeros), so even the unmapped holes match the image.
        assert sha256_prefix(card, IMAGE_SIZE) == sha256_prefix(image, IMAGE_SIZE)


def test_without_bmap_every_byte_is_written_over_old_data(image: Path, tmp_path: Path) -> None:
    with loop_card(tmp_path / "card", CARD_SIZE, fill=b"old card data ") as card:
        result = _cli(image.with_name("card.img.xz"), card, "--yes", "--no-bmap")
        assert result.returncode == 0, result.stderr
        assert sha256_prefix(card, IMAGE_SIZE) == sha256_prefix(image, IMAGE_SIZE)
        # A raw .img works the same way.
        result = _cli(image, card, "--yes", "--no-bmap")
        assert result.returncode == 0, result.stderr


def test_no_terminal_and_no_yes_writes_nothing(image: Path, tmp_path: Path) -> None:
    with loop_card(tmp_path / "card", CARD_SIZE) as card:
        result = _cli(image, card)
        assert result.returncode == 1
        assert "no terminal to ask on" in result.stderr and "--yes" in result.stderr
        assert "Traceback" not in result.stderr
        assert sha256_prefix(card, MIB) == sha256_prefix(Path("/dev/zero"), MIB)


def test_larger_than_max_size_needs_force(image: Path, tmp_path: Path) -> None:
    with loop_card(tmp_path / "card", CARD_SIZE) as card:
        result = _cli(image, card, "--yes", "--max-size", "32M")
        assert result.returncode == 1
        assert "larger (64.0 MiB) than --max-size 32.0 MiB" in result.stderr
        result = _cli(image, card, "--yes", "--max-size", "32M", "--force")
        assert result.returncode == 0, result.stderr


def test_mounted_device_is_refused_even_with_force(image: Path, tmp_path: Path) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with loop_card(tmp_path / "card", CARD_SIZE) as card:
        subprocess.run(["mkfs.ext4", "-q", card], check=True)
        subprocess.run(["mount", card, mountpoint], check=True)
        try:
            result = _cli(image, card, "--yes", "--force")
        finally:
            subprocess.run(["umount", mountpoint], check=True)
        assert result.returncode == 1
        assert f"mounted on {mountpoint}" in result.stderr


def test_too_small_device_is_refused(image: Path, tmp_path: Path) -> None:
    with loop_card(tmp_path / "card", 32 * MIB) as card:
        result = _cli(image.with_name("card.img.xz"), card, "--yes")
        assert result.returncode == 1
        assert "smaller (32.0 MiB) than the image (48.0 MiB)" in result.stderr


def test_the_running_systems_disk_is_refused() -> None:
    """Judged without the write path: refusals() on the disk that holds / (nothing is written)."""
    root = os.stat("/").st_dev
    sysdir = Path(f"/sys/dev/block/{os.major(root)}:{os.minor(root)}").resolve()
    if not sysdir.exists():
        pytest.skip("/ is not on a block device here")
    disk = sysdir.parent if (sysdir / "partition").exists() else sysdir
    device = block_device(Path(f"/dev/{disk.name}"))
    reasons = refusals(device, image_size=MIB, max_size=DEFAULT_MAX_SIZE, force=True)
    assert any("running system" in r for r in reasons), reasons


def test_not_a_block_device(image: Path) -> None:
    result = _cli(image, image.with_name("card.img.bmap"), "--yes")
    assert result.returncode == 1
    assert "is not a block device" in result.stderr


def test_parse_size() -> None:
    assert parse_size("256G") == 256 << 30
    assert parse_size("64GiB") == 64 << 30
    assert parse_size("512m") == 512 << 20
    assert parse_size("4096") == 4096
    with pytest.raises(InputError):
        parse_size("big")
