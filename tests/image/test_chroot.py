"""The chroot's mechanics on a host-architecture root (dash and sleep copied from the host).

No qemu is involved here, so these run in seconds; the arm64 path through qemu-user is in
test_arm64.py against the stand-in image.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from builder.errors import CommandFailed
from builder.image import open_image
from builder.image.chroot import CHROOT_ADDRESS_SPACE
from builder.process.procfs import processes_rooted_in
from tests.image.imagetools import ImageFacts, debugfs, engine_mounts, sh

pytestmark = pytest.mark.root


def mtype(image: ImageFacts, name: str) -> str:
    return sh("env", "MTOOLS_SKIP_CHECK=1", "mtype", "-i", f"{image.path}@@{image.boot_offset}", f"::/{name}")


def mdir(image: ImageFacts) -> str:
    return sh("env", "MTOOLS_SKIP_CHECK=1", "mdir", "-/", "-b", "-i", f"{image.path}@@{image.boot_offset}", "::/")


def test_chroot_mechanics(image: ImageFacts, tmp_path: Path) -> None:
    apt_cache = tmp_path / "apt"
    host_resolv = Path("/etc/resolv.conf").read_text().splitlines()[0]
    with open_image(image.path) as img:
        img.boot.write("old.txt", b"to be deleted inside\n")
        mounts_before = engine_mounts(os.getpid())
        with img.chroot(apt_cache=apt_cache) as chroot:
            assert chroot.arch in ("amd64", "arm64")
            script = (
                "read line < /etc/resolv.conf; echo \"resolv=$line\"; "
                "/usr/sbin/policy-rc.d; echo \"policy=$?\"; "
                "[ -e /proc/self/status ] && echo proc=yes; "
                "[ -c /dev/null ] && echo dev=yes; "
                "[ -d /dev/pts ] && echo pts=yes; "
                "[ -e /run/systemd/system ] || echo run=fresh; "
                "[ -f /boot/firmware/config.txt ] && echo boot=yes; "
                "echo dtparam=audio=on >> /boot/firmware/config.txt; "
                "echo probe > /var/cache/apt/archives/probe.deb; "
                "echo $HOME $LANG $DEBIAN_FRONTEND $EXTRA; "
                "echo \"address space KiB=$(ulimit -v)\""
            )
            out = chroot.output(["/bin/sh", "-c", script], env={"EXTRA": "extra"}).splitlines()
            assert out == [f"resolv={host_resolv}", "policy=101", "proc=yes", "dev=yes", "pts=yes", "run=fresh",
                           "boot=yes", "/root C.UTF-8 noninteractive extra",
                           f"address space KiB={CHROOT_ADDRESS_SPACE >> 10}"]
            # A daemon a maintainer script might leave behind.
            chroot.run(["/bin/sh", "-c", "sleep 300 >/dev/null 2>&1 &"])
            assert processes_rooted_in(img.root)
            os.unlink(img.root / "boot/firmware/old.txt")
            (img.root / "boot/firmware/overlays/new.dtbo").write_bytes(b"\xd0\x0d\xfe\xed")
            (img.root / "boot/firmware/newdir").mkdir()
            (img.root / "boot/firmware/newdir/a.txt").write_text("a\n")
            assert len(engine_mounts(os.getpid())) > len(mounts_before)
        assert processes_rooted_in(img.root) == []
        assert engine_mounts(os.getpid()) == mounts_before
        assert os.readlink(img.root / "etc/resolv.conf") == "../run/systemd/resolve/stub-resolv.conf"
        assert not img.exists("/usr/sbin/policy-rc.d")
        assert (apt_cache / f"{chroot.arch}-testsuite/probe.deb").read_text() == "probe\n"
        img.check()
    listing = mdir(image)
    assert "::/old.txt" not in listing
    assert "::/overlays/new.dtbo" in listing and "::/newdir/a.txt" in listing
    assert mtype(image, "config.txt").endswith("[all]\ndtparam=audio=on\n")
    assert "Type: symlink" in debugfs(image, image.root_offset, "stat /etc/resolv.conf")
    assert "policy-rc.d" not in debugfs(image, image.root_offset, "ls /usr/sbin")


def test_failed_command_restores_and_writes_nothing_back(image: ImageFacts, tmp_path: Path) -> None:
    with open_image(image.path) as img:
        img.write_file("/usr/sbin/policy-rc.d", b"#!/bin/sh\nexit 0\n", mode=0o700)
        img.symlink("/etc/resolv.conf", "/run/resolvconf/resolv.conf")
        with pytest.raises(CommandFailed, match="exit 3"), img.chroot(apt_cache=tmp_path / "apt") as chroot:
            chroot.run(["/bin/sh", "-c", "echo changed >> /boot/firmware/config.txt; exit 3"])
        # The image's own policy-rc.d and resolv.conf link come back exactly.
        assert img.read_file("/usr/sbin/policy-rc.d") == b"#!/bin/sh\nexit 0\n"
        assert (img.resolve("/usr/sbin/policy-rc.d").stat().st_mode & 0o777) == 0o700
        assert os.readlink(img.root / "etc/resolv.conf") == "/run/resolvconf/resolv.conf"
        assert processes_rooted_in(img.root) == []
    assert "changed" not in mtype(image, "config.txt")


def test_interrupt_inside_chroot_kills_and_unwinds(image: ImageFacts, tmp_path: Path) -> None:
    from builder.errors import Interrupted
    from builder.process.signals import interruptible

    with pytest.raises(Interrupted), interruptible(), open_image(image.path) as img, \
            img.chroot(apt_cache=tmp_path / "apt") as chroot:
        chroot.run(["/bin/sh", "-c", "sleep 300 >/dev/null 2>&1 &"])
        os.kill(os.getpid(), signal.SIGTERM)
    assert engine_mounts(os.getpid()) == []
