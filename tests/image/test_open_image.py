"""open_image: the root through a loop device, safe writes by owner name, the boot partition by mtools."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from builder.errors import InputError, VerificationError
from builder.image import UnsafePath, open_image
from tests.image.imagetools import MUNGE_ID, REFERENCE_CONFIG, ImageFacts, debugfs, sh

pytestmark = pytest.mark.root


def inode_stat(image: ImageFacts, path: str) -> tuple[int, int, int]:
    """(uid, gid, permission bits) of a file in the image's root, as debugfs reads them."""
    text = debugfs(image, image.root_offset, f"stat {path}")
    found = re.search(r"Mode:\s+0?(\d+)", text), re.search(r"User:\s+(\d+)\s+Group:\s+(\d+)", text)
    assert found[0] and found[1], text
    return int(found[1].group(1)), int(found[1].group(2)), int(found[0].group(1), 8)


def test_write_file_owner_from_image(image: ImageFacts) -> None:
    with open_image(image.path) as img:
        assert img.lookup_user("munge") == MUNGE_ID
        assert img.lookup_group("munge") == MUNGE_ID
        img.write_file("/etc/munge/munge.key", b"k" * 32, mode=0o400, owner="munge", group="munge")
        img.write_file("/etc/hostname", b"node01\n", mode=0o644)
        assert img.read_file("/etc/hostname") == b"node01\n"
        with pytest.raises(InputError, match="user 'slurm' does not exist in the image"):
            img.write_file("/etc/x", b"", mode=0o644, owner="slurm")
    # Judged after closing, from the image file itself.
    assert inode_stat(image, "/etc/munge/munge.key") == (MUNGE_ID, MUNGE_ID, 0o400)
    assert inode_stat(image, "/etc/munge") == (0, 0, 0o755)
    assert debugfs(image, image.root_offset, "cat /etc/hostname") == "node01\n"
    sh("e2fsck", "-fn", f"{image.path}?offset={image.root_offset}")


def test_absolute_symlink_means_the_image_root(image: ImageFacts) -> None:
    with open_image(image.path) as img:
        # /srv/etc-link -> /etc: inside a chroot that is the image's /etc, and so it is here.
        assert img.resolve("/srv/etc-link/passwd") == img.root / "etc/passwd"
        img.write_file("/srv/etc-link/clusterbake-probe", b"in the image\n", mode=0o644)
    assert not Path("/etc/clusterbake-probe").exists()
    assert debugfs(image, image.root_offset, "cat /etc/clusterbake-probe") == "in the image\n"


@pytest.mark.parametrize("path", ["/srv/escape/etc/clusterbake-probe", "/srv/self/x", "/../etc/clusterbake-probe",
                                  "/srv/escape"])
def test_escaping_paths_refused(image: ImageFacts, path: str) -> None:
    with open_image(image.path) as img, pytest.raises(UnsafePath):
        img.write_file(path, b"host must not see this\n", mode=0o644)
    assert not Path("/etc/clusterbake-probe").exists()


def test_image_whose_etc_links_to_host_etc(image: ImageFacts) -> None:
    host_passwd = Path("/etc/passwd").read_bytes()
    with open_image(image.path) as img:
        # A hostile image: /etc is an absolute link to /etc. Followed on the host, it would be the host's.
        os.rename(img.root / "etc", img.root / "etc.real")
        os.symlink("/etc", img.root / "etc")
        try:
            with pytest.raises(UnsafePath):
                img.write_file("/etc/passwd", b"evil:x:0:0::/:/bin/sh\n", mode=0o644)
            with pytest.raises(UnsafePath):
                img.write_file("/etc/clusterbake-probe", b"x", mode=0o644)
            with pytest.raises(UnsafePath):
                img.lookup_user("munge")
        finally:
            os.unlink(img.root / "etc")
            os.rename(img.root / "etc.real", img.root / "etc")
    assert Path("/etc/passwd").read_bytes() == host_passwd
    assert not Path("/etc/clusterbake-probe").exists()


def test_boot_partition_round_trip(image: ImageFacts, tmp_path: Path) -> None:
    payload = bytes(range(256)) * 300
    with open_image(image.path) as img:
        assert "config.txt" in img.boot.list() and "cmdline.txt" in img.boot.list()
        assert img.boot.read("config.txt") == REFERENCE_CONFIG.read_bytes()
        img.boot.write("overlays/clusterbake.dtbo", payload)
        img.boot.write("firstrun/deep/file.txt", b"nested\n")
        img.boot.write("config.txt", img.boot.read("config.txt") + b"dtoverlay=gpio-shutdown\n")
        img.boot.write("ssh", b"")
        img.boot.delete("ssh")
        assert not img.boot.exists("ssh")
        assert img.boot.exists("overlays/clusterbake.dtbo")
        assert img.boot.read("overlays/clusterbake.dtbo") == payload
        with pytest.raises(InputError):
            img.boot.read("missing.txt")
        img.check()
    target = f"{image.path}@@{image.boot_offset}"
    listing = sh("env", "MTOOLS_SKIP_CHECK=1", "mdir", "-/", "-b", "-i", target, "::/")
    assert "::/overlays/clusterbake.dtbo" in listing and "::/firstrun/deep/file.txt" in listing
    assert "::/ssh" not in listing
    config = sh("env", "MTOOLS_SKIP_CHECK=1", "mtype", "-i", target, "::/config.txt")
    assert config.endswith("[all]\ndtoverlay=gpio-shutdown\n")
    # fsck.vfat on a copy of the partition's bytes, cut out with dd.
    part = tmp_path / "boot.fat"
    sh("dd", f"if={image.path}", f"of={part}", "bs=1M", f"skip={image.boot_offset >> 20}", "count=40",
       "status=none")
    sh("fsck.vfat", "-n", part)


def test_check_catches_wrong_partuuid(image: ImageFacts) -> None:
    with open_image(image.path) as img:
        img.check()
        cmdline = img.boot.read("cmdline.txt").replace(image.root_partuuid.encode(), b"deadbeef-02")
        img.boot.write("cmdline.txt", cmdline)
        with pytest.raises(VerificationError, match=r"cmdline\.txt says root=PARTUUID=deadbeef-02"):
            img.check()
