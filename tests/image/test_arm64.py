"""arm64 commands in the stand-in image (Debian trixie arm64, laid out like Raspberry Pi OS Lite)
through qemu-user-static registered with the fix-binary flag: no qemu copied into the image."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from builder.image import grow_image, open_image, read_layout
from builder.image.chroot import BINFMT, CHROOT_ADDRESS_SPACE, ensure_emulation
from builder.paths import cache_root
from builder.process.procfs import processes_rooted_in
from builder.provision.packages import fresh_lists
from tests.image.imagetools import MIB, debugfs, sh

pytestmark = pytest.mark.root


@pytest.fixture
def arm64_copy(standin_image: Path, tmp_path: Path) -> Path:
    """A private copy of the shared stand-in image (never changed in place)."""
    copy = tmp_path / "standin.img"
    subprocess.run(["cp", "--reflink=auto", "--sparse=always", standin_image, copy], check=True)
    return copy


def resolv_conf_state(image: Path, offset: int) -> str:
    """What /etc/resolv.conf is in the image file: its type and link target or contents."""
    stat = debugfs(image, offset, "stat /etc/resolv.conf")
    if "Type: symlink" in stat:
        return "link " + stat.split("Fast link dest:", 1)[-1].strip()
    return "file " + debugfs(image, offset, "cat /etc/resolv.conf")


def test_binfmt_entry_has_fix_binary_flag() -> None:
    ensure_emulation("arm64")
    entry = (BINFMT / "qemu-aarch64").read_text()
    assert entry.startswith("enabled")
    flags = re.search(r"^flags: (\w*)$", entry, re.MULTILINE)
    assert flags and "F" in flags.group(1), entry


@pytest.mark.slow
def test_arm64_chroot(arm64_copy: Path) -> None:
    offset = read_layout(arm64_copy).root.offset
    resolv_before = resolv_conf_state(arm64_copy, offset)
    with open_image(arm64_copy) as img:
        with img.chroot(apt_cache=cache_root() / "apt-archives") as chroot:
            assert chroot.arch == "arm64"
            assert chroot.output(["uname", "-m"]).strip() == "aarch64"
            chroot.run(["/bin/true"])
            # qemu emulates a CPU without pointer authentication, which it computes slowly (QARMA5):
            # the arm64 loader's own view of the CPU (the last AT_HWCAP; qemu's static binary prints
            # the host's first) has neither HWCAP_PACA (bit 30) nor HWCAP_PACG (bit 31).
            auxv = chroot.output(["/bin/true"], env={"LD_SHOW_AUXV": "1"})
            hwcap = int(re.findall(r"^AT_HWCAP:\s+(?:0x)?([0-9a-f]+)$", auxv, re.MULTILINE)[-1], 16)
            assert hwcap & (0b11 << 30) == 0, f"AT_HWCAP {hwcap:#x}: pointer authentication emulated"
            # Bounded under emulation too: qemu-user passes the limit on to the arm64 program.
            assert chroot.output(["sh", "-c", "ulimit -v"]).strip() == str(CHROOT_ADDRESS_SPACE >> 10)
            assert "exit 101" in chroot.output(["cat", "/usr/sbin/policy-rc.d"])
            assert chroot.run(["/usr/sbin/policy-rc.d"], check=False).returncode == 101
            assert chroot.output(["sh", "-c", "test -f /boot/firmware/config.txt && echo yes"]).strip() == "yes"
        assert not img.exists("/usr/sbin/policy-rc.d")
    assert resolv_conf_state(arm64_copy, offset) == resolv_before
    listing = debugfs(arm64_copy, offset, "ls -l /usr/bin") + debugfs(arm64_copy, offset, "ls -l /usr/libexec")
    assert "qemu" not in listing  # the kernel holds the interpreter open (flag F)


@pytest.mark.slow
def test_grow_and_install_chrony(arm64_copy: Path) -> None:
    grow_image(arm64_copy, 300 * MIB)
    layout = read_layout(arm64_copy)
    with open_image(arm64_copy) as img:
        # Today's lists from the host cache (fetched here if no build fetched them yet today).
        lists = fresh_lists(img, cache_root())
        with img.chroot(apt_cache=cache_root() / "apt-archives", apt_lists=lists) as chroot:
            suite = chroot.output(["sh", "-c", ". /etc/os-release; echo $VERSION_CODENAME"]).strip()
            chroot.run(["apt-get", "install", "-y", "--no-install-recommends", "chrony"])
            # policy-rc.d kept chronyd from starting.
            assert processes_rooted_in(img.root) == []
        img.check()
    sh("e2fsck", "-fn", f"{arm64_copy}?offset={layout.root.offset}")
    assert "Type: regular" in debugfs(arm64_copy, layout.root.offset, "stat /usr/sbin/chronyd")
    # The download stays on the host for the next build.
    assert list((cache_root() / "apt-archives" / f"arm64-{suite}").glob("chrony_*_arm64.deb"))
