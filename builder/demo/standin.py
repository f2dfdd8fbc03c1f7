"""A stand-in for Raspberry Pi OS Lite, built locally from Debian trixie arm64 packages.

Raspberry Pi's servers are out of reach from here, so tests and `make demo` start from an
image shaped like theirs: an MBR disk with a FAT32 `bootfs` at sector 16384 and an ext4
`rootfs` as the last partition, PARTUUIDs in cmdline.txt and /etc/fstab, no SSH host keys,
and no Slurm, munge or chrony, so the pipeline has to install them itself. It also behaves like
theirs at first boot: Raspberry Pi OS Lite's Debian packages (udev, NetworkManager, cloud-init…),
`machine-id` = `uninitialized`, the user wizard enabled and getty@tty1 disabled, a locked `pi`
user, cloud-init's NoCloud seed on the boot partition, SSH off. Raspberry Pi's own packages are
reproduced by their observable state from `raspios/` (see raspios/README.md).

Two cache levels, so that a layout change does not rerun debootstrap (minutes under qemu):
  standin/rootfs-<recipe key>.tar          debootstrap output plus the Raspberry-Pi-OS touches
  standin/<image key>/standin.img          the partitioned raw image made from that tarball
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from builder.cache import cache_entry, recipe_key
from builder.command import output, run
from builder.errors import EnvironmentProblem
from builder.image.chroot import Chroot
from builder.image.debootstrap import debootstrap
from builder.image.image_root import DirectoryRoot
from builder.progress import step
from builder.provision.packages import own_archive
from builder.settings import settings

log = logging.getLogger("clusterbake.demo")

MIRROR = "http://deb.debian.org/debian"
SUITE = "trixie"
HOSTNAME = "raspberrypi"

# debootstrap's own pass: a bootable minimal root with apt. debootstrap resolves no virtual
# packages or alternatives, so the rest is installed by apt afterwards (`LITE_PACKAGES`).
PACKAGES = (
    "systemd",
    "systemd-sysv",
    # network-manager's default-dbus-system-bus, named because debootstrap cannot resolve it.
    "dbus",
    "apt",
    "ca-certificates",
)

# What Raspberry Pi OS Lite installs from Debian (pi-gen stage0-stage2 package lists, trixie),
# so that what runs at a Pi's first boot runs here too: udev (without it /dev/disk/by-partuuid
# never appears and the boot partition never mounts), NetworkManager with netplan, cloud-init,
# avahi, the tools a user expects. Deliberately no slurm, munge or chrony: the provision stage
# must install them. Left out: compilers and debuggers (build-essential, gdb; minutes under
# emulation and irrelevant to first boot) and Raspberry Pi's own packages, whose observable
# state is reproduced from `raspios/` instead (see raspios/README.md).
LITE_PACKAGES = (
    "systemd-timesyncd", "udev", "kmod", "e2fsprogs", "dosfstools", "parted", "fdisk",
    "iputils-ping", "iproute2", "less", "rsync", "sudo", "psmisc", "ed", "ncdu", "unzip", "curl",
    "usbutils", "bash-completion", "fake-hwclock", "nfs-common", "locales", "cron", "logrotate",
    "openssh-server", "openssh-client", "avahi-daemon", "network-manager", "netplan.io", "cloud-init",
    "python3", "apt-listchanges",
)

# Files reproducing Raspberry Pi's own packages (userconf-pi, rpi-cloud-init-mods, sshswitch).
TRAITS = Path(__file__).with_name("raspios")
FIRST_USER = "pi"  # exists in the published image, uid 1000, login disabled
FIRST_USER_GROUPS = ("adm", "dialout", "cdrom", "audio", "users", "sudo", "video", "plugdev", "input", "netdev")


def _traits_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in TRAITS.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(TRAITS)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def rootfs_recipe() -> dict[str, object]:
    """What the root is made from; its key names the cached tarball. Bump `version` when the tweaks
    in _make_like_raspios change. The mirror downloaded from is $CLUSTERBAKE_DEBIAN_MIRROR (by
    default Debian's own, the key as before the setting was honoured); the image's own apt sources
    name Debian's, as a published Raspberry Pi OS image does."""
    return {
        "version": 2,
        "suite": SUITE,
        "mirror": settings().debian_mirror,
        "arch": "arm64",
        "variant": "minbase",
        "packages": list(PACKAGES),
        "lite_packages": list(LITE_PACKAGES),
        "traits": _traits_digest(),
    }

SECTOR = 512
MIB = 1 << 20


@dataclass(frozen=True)
class StandinLayout:
    """Where the partitions go; the defaults are those of Raspberry Pi OS since 2025-03."""

    boot_start: int = 16384  # sectors
    boot_mib: int = 512
    # Room on the root beyond its content. Raspberry Pi OS grows the root to the card at
    # first boot, and the pipeline grows the image before it installs packages, so a
    # modest margin is enough.
    root_slack_mib: int = 256
    version: int = 2  # bump when _assemble_image changes what it writes

    @property
    def root_start(self) -> int:
        return self.boot_start + self.boot_mib * MIB // SECTOR


LAYOUT = StandinLayout()
# Raspberry Pi OS Lite's default config.txt (model sections, ending in [all]).
CONFIG_TXT = Path(__file__).with_name("raspios-config.txt")


def build_standin(cache: Path) -> Path:
    """The cached raw stand-in image under `cache`, built first if absent (root needed).

    Callers must copy it before changing it: the file is shared by every later build.
    """
    folder = cache / "standin"
    tarball = build_rootfs_tarball(folder)
    entry = folder / recipe_key({"rootfs": tarball.name, "layout": asdict(LAYOUT)})

    def make(work: Path) -> None:
        _require_root()
        with step(f"assemble the stand-in image {entry / 'standin.img'}"):
            disk_id = secrets.randbits(32) or 1
            raw = _assemble_image(tarball, work, disk_id)
            made = work / entry.name
            made.mkdir()
            raw.rename(made / "standin.img")
            (made / "standin.json").write_text(json.dumps({
                "disk_id": f"{disk_id:08x}", "rootfs": tarball.name, "layout": asdict(LAYOUT),
                "built": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            }, indent=2, sort_keys=True) + "\n")

    cache_entry(entry, make)
    return entry / "standin.img"


def build_rootfs_tarball(folder: Path) -> Path:
    """The cached rootfs tarball (debootstrap plus the Raspberry Pi OS touches)."""
    tarball = folder / f"rootfs-{recipe_key(rootfs_recipe())}.tar"

    def make(work: Path) -> None:
        _require_root()
        with step(f"build the stand-in root filesystem {tarball.name} (debootstrap and apt under qemu-user, "
                  "~8 min)"):
            root = work / "root"
            # Downloaded .debs are kept across builds in the apt cache the layers share: a rebuild then
            # needs no network. debootstrap and apt work on hard links to it (apt locks its archive for
            # a whole run and gives up at once on another's lock); what they download goes back after.
            with own_archive(folder.parent / "apt-archives", work / "apt-archives") as archives:
                with step(f"debootstrap {SUITE} arm64"):
                    debootstrap(root, arch="arm64", suite=SUITE, mirror=settings().debian_mirror, include=PACKAGES,
                                debs=archives / f"arm64-{SUITE}", logs=folder)
                with DirectoryRoot(root).chroot(apt_cache=archives) as chroot:
                    _install_lite(chroot)
                    _first_boot_state(root, chroot)
            _make_like_raspios(root)
            run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", root, "-cf", work / tarball.name,
                 "."], label="tar rootfs")

    cache_entry(tarball, make, lock=tarball.with_suffix(".lock"))
    return tarball


def _install_lite(chroot: Chroot) -> None:
    """apt-get install Raspberry Pi OS Lite's Debian packages (debootstrap left apt's lists in place)."""
    with step(f"install Raspberry Pi OS Lite's package set ({len(LITE_PACKAGES)} packages, apt under qemu-user)"):
        chroot.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *LITE_PACKAGES], timeout=3600)


def _first_boot_state(root: Path, chroot: Chroot) -> None:
    """The state `rename-user -f -s` exports Raspberry Pi OS in, and its Raspberry-Pi-only files.

    A user `pi` (uid 1000) whose login is disabled; the console wizard enabled and getty@tty1
    disabled; an SSH banner saying no user is set up; SSH off unless `ssh` is on the boot partition.
    """
    with step("first-boot state of a published Raspberry Pi OS image"):
        for source in sorted(p for p in (TRAITS / "root").rglob("*") if p.is_file()):
            relative = source.relative_to(TRAITS / "root")
            dest = root / relative
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest)
            mode = 0o755 if relative.parts[:3] == ("usr", "lib", "userconf-pi") else 0o644
            dest.chmod(0o600 if "netplan" in relative.parts else mode)
        groups = [g for g in FIRST_USER_GROUPS if f"\n{g}:" in "\n" + (root / "etc/group").read_text()]
        # useradd leaves the password field "!": the account exists but nobody can log in as it.
        chroot.run(["useradd", "--uid", "1000", "--create-home", "--shell", "/bin/bash",
                "--groups", ",".join(groups), FIRST_USER])
        chroot.run(["systemctl", "disable", "ssh.service", "getty@tty1.service"])
        chroot.run(["systemctl", "enable", "userconfig.service", "sshswitch.service"])


def _make_like_raspios(root: Path) -> None:
    """The file-level touches that make a Debian root look like Raspberry Pi OS Lite.

    All of them are plain file edits, so nothing needs to run inside the root.
    """
    with step("make the root look like Raspberry Pi OS Lite"):
        (root / "etc/hostname").write_text(f"{HOSTNAME}\n")
        (root / "etc/hosts").write_text(
            "127.0.0.1\tlocalhost\n"
            "::1\t\tlocalhost ip6-localhost ip6-loopback\n"
            "ff02::1\t\tip6-allnodes\n"
            "ff02::2\t\tip6-allrouters\n\n"
            f"127.0.1.1\t{HOSTNAME}\n"
        )
        (root / "etc/apt/sources.list").unlink(missing_ok=True)
        (root / "etc/apt/sources.list.d/debian.sources").write_text(
            "Types: deb\n"
            f"URIs: {MIRROR}\n"
            f"Suites: {SUITE} {SUITE}-updates\n"
            "Components: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        )
        # Raspberry Pi OS images ship no host keys: each card makes its own at first boot,
        # otherwise every node of the cluster would share one identity.
        for key in (root / "etc/ssh").glob("ssh_host_*"):
            key.unlink()
        # "uninitialized": systemd makes the id at boot and treats that boot as the first one
        # (ConditionFirstBoot= units run, presets are applied).
        (root / "etc/machine-id").write_text("uninitialized\n")
        dbus_id = root / "var/lib/dbus/machine-id"
        if dbus_id.is_file() and not dbus_id.is_symlink():
            dbus_id.unlink()
        # debootstrap copies the build host's resolver into the root; it must not ship.
        resolv = root / "etc/resolv.conf"
        resolv.unlink(missing_ok=True)
        resolv.write_text("# written by NetworkManager at boot\n")
        _empty_directory(root / "var/lib/apt/lists")
        for cached in (root / "var/cache/apt").rglob("*"):
            if cached.is_file() and (cached.suffix in {".deb", ".bin"}):
                cached.unlink()
        (root / "boot/firmware").mkdir(parents=True, exist_ok=True)


def _empty_directory(directory: Path) -> None:
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _assemble_image(tarball: Path, work: Path, disk_id: int) -> Path:
    """Partition a new raw image and fill both partitions; returns its path in `work`."""
    root = work / "root"
    root.mkdir()
    with step("unpack the root filesystem"):
        run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", root, "-xpf", tarball],
            label="tar unpack")
    (root / "etc/fstab").write_text(
        "proc            /proc           proc    defaults          0       0\n"
        f"PARTUUID={disk_id:08x}-01  /boot/firmware  vfat    defaults          0       2\n"
        f"PARTUUID={disk_id:08x}-02  /               ext4    defaults,noatime  0       1\n"
    )
    rootfs = work / "rootfs.ext4"
    root_bytes = _make_ext4(root, rootfs)
    boot = work / "boot.vfat"
    with step("make the FAT32 boot filesystem"):
        run(["mkfs.vfat", "-F", "32", "-n", "bootfs", "-s", "1", "-C", boot, str(LAYOUT.boot_mib * 1024)],
            label="mkfs.vfat")

    image = work / "standin.img"
    root_sectors = root_bytes // SECTOR
    with open(image, "wb") as handle:
        handle.truncate((LAYOUT.root_start + root_sectors) * SECTOR)
    table = (
        "label: dos\n"
        f"label-id: 0x{disk_id:08x}\n"
        "unit: sectors\n\n"
        f"start={LAYOUT.boot_start}, size={LAYOUT.boot_mib * MIB // SECTOR}, type=c\n"
        f"start={LAYOUT.root_start}, size={root_sectors}, type=83\n"
    )
    run(["sfdisk", "--no-reread", "--no-tell-kernel", image], input=table.encode(), label="sfdisk")
    with step("copy the filesystems into the image"):
        _copy_into(boot, image, LAYOUT.boot_start * SECTOR)
        _copy_into(rootfs, image, LAYOUT.root_start * SECTOR)
    _fill_boot(image, work, disk_id)
    return image


def _make_ext4(root: Path, dest: Path) -> int:
    """mkfs.ext4 -d from `root` into a file sized to the content plus slack; returns its size."""
    used = int(output(["du", "-s", "--block-size=1", "-x", root], label="du").split()[0])
    files = int(output(["find", root, "-xdev", "-printf", "."], label="count files").count("."))
    # ext4's own metadata (inode tables, journal, group descriptors) on top of the content.
    size = int(used * 1.10) + 96 * MIB + LAYOUT.root_slack_mib * MIB
    size = -(-size // (4 * MIB)) * (4 * MIB)
    # "-T default": the "small" type mke2fs picks under 512 MiB means 1 KiB blocks,
    # which Raspberry Pi OS never uses and which grow poorly to a 64 GB card.
    argv: list[str | os.PathLike[str]] = ["mkfs.ext4", "-q", "-F", "-L", "rootfs", "-T", "default", "-b", "4096"]
    if files * 2 > size // 16384:
        argv += ["-N", str(files * 2)]
    with step(f"make the ext4 root filesystem ({size // MIB} MiB, {files} files)"):
        run([*argv, "-d", root, dest, f"{size // 1024}k"], label="mkfs.ext4")
    return size


def _copy_into(source: Path, image: Path, offset: int) -> None:
    # conv=sparse keeps the image's holes: most of both filesystems is still empty.
    run(["dd", f"if={source}", f"of={image}", "bs=4M", f"seek={offset}", "oflag=seek_bytes",
         "conv=notrunc,sparse", "status=none"], label="dd")


def _fill_boot(image: Path, work: Path, disk_id: int) -> None:
    """cmdline.txt, config.txt, overlays/ and issue.txt, written through mtools."""
    target = f"{image}@@{LAYOUT.boot_start * SECTOR}"
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    files = work / "bootfiles"
    files.mkdir()
    (files / "cmdline.txt").write_text(
        f"console=serial0,115200 console=tty1 root=PARTUUID={disk_id:08x}-02 rootfstype=ext4 "
        "fsck.repair=yes rootwait resize\n"
    )
    shutil.copyfile(CONFIG_TXT, files / "config.txt")
    (files / "issue.txt").write_text(
        f"clusterbake stand-in for Raspberry Pi OS Lite {time.strftime('%Y-%m-%d')}\n"
        f"Generated with debootstrap from Debian {SUITE} arm64 ({MIRROR}); "
        "not an official Raspberry Pi image\n"
    )
    seeds = sorted(p.name for p in (TRAITS / "boot").iterdir())  # cloud-init's NoCloud seed
    for name in seeds:
        shutil.copyfile(TRAITS / "boot" / name, files / name)
    with step("fill the boot partition (mtools)"):
        for name in ("cmdline.txt", "config.txt", "issue.txt", *seeds):
            run(["mcopy", "-i", target, files / name, f"::{name}"], env=env, label="mcopy")
        run(["mmd", "-i", target, "::overlays"], env=env, label="mmd")


def _require_root() -> None:
    if os.geteuid() != 0:
        raise EnvironmentProblem("building the stand-in image needs root (debootstrap, file ownership)",
                                 hint="run as root, e.g. sudo make demo")
