"""The stand-in base image, judged with independent tools (sfdisk, mtools, debugfs, fsck).

Building it the first time takes ~10 minutes (debootstrap under qemu-user); afterwards it
comes from the cache and the whole module takes about half a minute.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from builder.config.load import resolve_base_image

pytestmark = [pytest.mark.slow, pytest.mark.root]

SECTOR = 512
MTOOLS_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


def sh(*argv: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env, cwd=cwd)
    assert proc.returncode == 0, f"{argv}: {proc.stdout}{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def table(standin_image: Path) -> dict:
    return json.loads(sh("sfdisk", "-J", standin_image))["partitiontable"]


@pytest.fixture(scope="module")
def disk_id(table: dict) -> str:
    return f"{int(table['id'], 16):08x}"


@pytest.fixture(scope="module")
def boot(standin_image: Path, table: dict) -> str:
    """The boot partition as an mtools drive spec: IMG@@OFFSET."""
    return f"{standin_image}@@{table['partitions'][0]['start'] * SECTOR}"


def _extract(image: Path, part: dict, dest: Path) -> Path:
    sh("dd", f"if={image}", f"of={dest}", "bs=4M", f"skip={part['start'] * SECTOR}",
       f"count={part['size'] * SECTOR}", "iflag=skip_bytes,count_bytes", "conv=sparse", "status=none")
    return dest


@pytest.fixture(scope="module")
def rootfs(standin_image: Path, table: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the root partition's bytes, for debugfs and e2fsck."""
    return _extract(standin_image, table["partitions"][1], tmp_path_factory.mktemp("parts") / "root.ext4")


def debugfs(rootfs: Path, request: str) -> str:
    return sh("debugfs", "-R", request, rootfs)


def exists(rootfs: Path, path: str) -> bool:
    proc = subprocess.run(["debugfs", "-R", f"stat {path}", rootfs], capture_output=True, text=True)
    return proc.returncode == 0 and "File not found" not in proc.stderr and "Inode:" in proc.stdout


def test_partition_table_is_raspios_like(table: dict, standin_image: Path) -> None:
    assert table["label"] == "dos"
    boot, root = table["partitions"]
    assert (boot["start"], boot["size"], boot["type"]) == (16384, 512 * 2048, "c")
    assert root["type"] == "83"
    assert root["start"] >= boot["start"] + boot["size"]
    # Root is last and the image ends with it, as Raspberry Pi OS's first-boot expand expects.
    assert (root["start"] + root["size"]) * SECTOR == standin_image.stat().st_size
    assert int(table["id"], 16) != 0


def test_cmdline_names_the_disk_id(boot: str, disk_id: str) -> None:
    cmdline = sh("mtype", "-i", boot, "::cmdline.txt", env=MTOOLS_ENV)
    assert cmdline.count("\n") == 1, "cmdline.txt must be a single line"
    assert cmdline.strip() == (f"console=serial0,115200 console=tty1 root=PARTUUID={disk_id}-02 rootfstype=ext4 "
                               "fsck.repair=yes rootwait resize")


def test_fstab_names_the_disk_id(rootfs: Path, disk_id: str) -> None:
    entries = [line.split() for line in debugfs(rootfs, "cat /etc/fstab").splitlines()
               if line.strip() and not line.startswith("#")]
    assert [f"PARTUUID={disk_id}-01", "/boot/firmware", "vfat", "defaults", "0", "2"] in entries
    assert [f"PARTUUID={disk_id}-02", "/", "ext4", "defaults,noatime", "0", "1"] in entries


def test_boot_partition_files(boot: str) -> None:
    listing = sh("mdir", "-i", boot, "-b", "::", env=MTOOLS_ENV).split()
    assert {"::/cmdline.txt", "::/config.txt", "::/issue.txt", "::/overlays/"} <= set(listing)
    # cloud-init's NoCloud seed, on the boot partition of every image since 2025-11-24.
    assert {"::/user-data", "::/meta-data", "::/network-config"} <= set(listing)
    assert sh("mtype", "-i", boot, "::user-data", env=MTOOLS_ENV).startswith("#cloud-config\n")
    assert "instance_id:" in sh("mtype", "-i", boot, "::meta-data", env=MTOOLS_ENV)
    # FAT made with one sector per cluster, as Raspberry Pi OS since 2026-04-13.
    assert "cluster size: 1 sectors\n" in sh("minfo", "-i", boot, "::", env=MTOOLS_ENV)
    config = sh("mtype", "-i", boot, "::config.txt", env=MTOOLS_ENV)
    sections = [line.strip() for line in config.splitlines() if line.strip().startswith("[")]
    assert sections[-1] == "[all]"
    assert "stand-in" in sh("mtype", "-i", boot, "::issue.txt", env=MTOOLS_ENV)
    assert sh("mlabel", "-s", "-i", boot, "::", env=MTOOLS_ENV).split()[-1] == "bootfs"


def test_filesystems_are_clean(standin_image: Path, table: dict, rootfs: Path, tmp_path: Path) -> None:
    bootfs = _extract(standin_image, table["partitions"][0], tmp_path / "boot.vfat")
    sh("fsck.vfat", "-n", bootfs)
    sh("e2fsck", "-fn", rootfs)
    assert "Filesystem volume name:   rootfs" in sh("dumpe2fs", "-h", rootfs)
    # 4 KiB blocks like Raspberry Pi OS: mke2fs would pick 1 KiB for a small filesystem.
    assert "Block size:               4096" in sh("dumpe2fs", "-h", rootfs)


def test_root_has_what_raspios_lite_has(rootfs: Path) -> None:
    for path in ("/usr/bin/python3", "/usr/lib/systemd/systemd", "/usr/sbin/sshd", "/usr/bin/sudo",
                 "/usr/bin/apt-get", "/usr/sbin/NetworkManager", "/usr/sbin/ip",
                 "/usr/share/keyrings/debian-archive-keyring.gpg"):
        assert exists(rootfs, path), path
    assert debugfs(rootfs, "cat /etc/hostname") == "raspberrypi\n"
    assert "127.0.1.1\traspberrypi" in debugfs(rootfs, "cat /etc/hosts")
    sources = debugfs(rootfs, "cat /etc/apt/sources.list.d/debian.sources")
    assert "URIs: http://deb.debian.org/debian" in sources and "Suites: trixie" in sources
    assert "File not found" in subprocess.run(["debugfs", "-R", "stat /etc/apt/sources.list", rootfs],
                                              capture_output=True, text=True).stderr


def test_root_lacks_what_the_pipeline_must_add(rootfs: Path) -> None:
    ssh_dir = debugfs(rootfs, "ls -l /etc/ssh")
    assert "sshd_config" in ssh_dir
    assert "ssh_host_" not in ssh_dir, "Raspberry Pi OS images ship no SSH host keys"
    for daemon in ("/usr/sbin/slurmd", "/usr/sbin/slurmctld", "/usr/sbin/munged", "/usr/sbin/chronyd"):
        assert not exists(rootfs, daemon), daemon
    apt_lists = debugfs(rootfs, "ls /var/lib/apt/lists").split()
    assert not [name for name in apt_lists if name.endswith(("Packages", "Release", "InRelease"))]
    # `ls -p` lines read /inode/mode/uid/gid/name/size/.
    firmware = [line.split("/")[5] for line in debugfs(rootfs, "ls -p /boot/firmware").splitlines() if line]
    assert sorted(firmware) == [".", ".."], "/boot/firmware must be an empty mount point"


# Raspberry Pi OS Lite's Debian packages that change what happens at boot (pi-gen stage0-2).
LITE = ("udev", "kmod", "e2fsprogs", "dosfstools", "parted", "iputils-ping", "less", "rsync", "sudo",
        "avahi-daemon", "network-manager", "cloud-init", "netplan.io", "openssh-server", "systemd-timesyncd")


def installed_packages(rootfs: Path) -> set[str]:
    """Packages dpkg's status file marks installed, read with debugfs (nothing of the image runs)."""
    names = set()
    for stanza in debugfs(rootfs, "cat /var/lib/dpkg/status").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " ")
        if fields.get("Status") == "install ok installed":
            names.add(fields["Package"])
    return names


def test_root_has_raspios_lite_package_set(rootfs: Path) -> None:
    missing = set(LITE) - installed_packages(rootfs)
    assert not missing, f"the stand-in lacks Raspberry Pi OS Lite packages: {sorted(missing)}"
    for path in ("/usr/bin/udevadm", "/usr/sbin/modprobe", "/usr/sbin/e2fsck", "/usr/bin/ping",
                 "/usr/bin/cloud-init", "/usr/sbin/netplan"):
        assert exists(rootfs, path), path


def test_first_boot_is_a_first_boot(rootfs: Path) -> None:
    # systemd makes the id at boot and runs ConditionFirstBoot= units and presets.
    assert debugfs(rootfs, "cat /etc/machine-id") == "uninitialized\n"


def test_exported_like_rename_user(rootfs: Path) -> None:
    """The state `rename-user -f -s` leaves: wizard on, getty@tty1 off, SSH banner, locked pi."""
    wants = "/etc/systemd/system/multi-user.target.wants"
    assert exists(rootfs, f"{wants}/userconfig.service")
    assert "ExecStart=/usr/lib/userconf-pi/userconf-service" in debugfs(
        rootfs, "cat /usr/lib/systemd/system/userconfig.service")
    assert not exists(rootfs, "/etc/systemd/system/getty.target.wants/getty@tty1.service")
    assert debugfs(rootfs, "cat /etc/ssh/sshd_config.d/rename_user.conf").strip() == \
        "Banner /usr/share/userconf-pi/sshd_banner"
    pi = [line.split(":") for line in debugfs(rootfs, "cat /etc/passwd").splitlines() if line.startswith("pi:")]
    assert pi and pi[0][2] == "1000", "a user pi with uid 1000"
    shadow = [line.split(":") for line in debugfs(rootfs, "cat /etc/shadow").splitlines() if line.startswith("pi:")]
    assert shadow and shadow[0][1][:1] in ("!", "*"), "pi's login is disabled"


def test_ssh_is_off_unless_asked_for(rootfs: Path) -> None:
    wants = "/etc/systemd/system/multi-user.target.wants"
    assert not exists(rootfs, f"{wants}/ssh.service") and not exists(rootfs, "/etc/systemd/system/sshd.service")
    assert exists(rootfs, f"{wants}/sshswitch.service")


def test_cloud_init_reads_the_boot_partition(rootfs: Path) -> None:
    cfg = debugfs(rootfs, "cat /etc/cloud/cloud.cfg.d/99_raspberry-pi.cfg")
    assert "NoCloud" in cfg and "file:///boot/firmware" in cfg
    netplan = "/usr/lib/netplan/00-network-manager-all.yaml"
    assert "renderer: NetworkManager" in debugfs(rootfs, f"cat {netplan}")
    assert "Mode:  0600" in debugfs(rootfs, f"stat {netplan}")


def test_published_files_verify_with_gpgv(served_base: dict[str, str], standin_image: Path, tmp_path: Path) -> None:
    from builder.demo.download_site import publish_standin
    from builder.paths import cache_root

    published = publish_standin(cache_root())
    assert published.image.name.endswith("-standin-trixie-arm64-lite.img.xz")
    digest, name = published.sha256_file.read_text().split()
    assert (digest, name) == (published.sha256, published.image.name)
    sh("sha256sum", "--check", "--strict", published.sha256_file.name, cwd=published.image.parent)
    keyring = tmp_path / "key.gpg"
    sh("gpg", "--batch", "--yes", "--dearmor", "--output", keyring, published.key_file)
    sh("gpgv", "--keyring", keyring, published.signature, published.image)
    assert len(published.fingerprint) == 40 and published.fingerprint == published.fingerprint.upper()
    assert served_base["url"].endswith(published.image.name)
    assert served_base["fingerprint"] == published.fingerprint


def test_served_base_passes_the_real_acquisition(served_base: dict[str, str], standin_image: Path,
                                                 tmp_path: Path) -> None:
    from builder.acquire import fetch_base

    raw = fetch_base(resolve_base_image(tmp_path, **served_base), cache=tmp_path / "cache")
    assert _sha256(raw) == _sha256(standin_image)


def _sha256(path: Path) -> str:
    """By sha256sum, not by the code under test."""
    return subprocess.run(["sha256sum", path], capture_output=True, text=True, check=True).stdout.split()[0]
