"""What a built image does at the first boot of a published Raspberry Pi OS image.

The stand-in base is exported like Raspberry Pi OS (`rename-user -f -s`: the console wizard
enabled, getty@tty1 disabled, an SSH banner; `machine-id` = `uninitialized`, so systemd applies
presets at first boot; cloud-init reading a NoCloud seed from the boot partition). These tests
run the image's own systemctl and cloud-init in its arm64 chroot and read the result with
debugfs and mtools.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from builder.image import open_image
from tests.built_images.conftest import Lab
from tests.built_images.image_reader import ImageReader, sh

pytestmark = [pytest.mark.slow, pytest.mark.root]

WIZARD = "userconfig.service"
BANNER = "/etc/ssh/sshd_config.d/rename_user.conf"
# What every role of the lab runs, and what none of them may ever run.
RUNS = ("ssh.service", "chrony.service", "munge.service", "clusterbake-ssh-hostkeys.service", "getty@tty1.service")
NEVER = (WIZARD, "systemd-timesyncd.service", "chronyd-restricted.service", "ssh.socket", "apt-listchanges.timer")
ROLE_RUNS = {"compute": ("slurmd.service", "clusterbake-identity.service"),
             "controller": ("slurmctld.service", "clusterbake-identity.service"),
             # The lab's gps: time server, file server, Prometheus and compute node in one role (issue 15).
             "auxiliary": ("slurmd.service", "gpsd.service", "nfs-server.service", "prometheus.service",
                           "clusterbake-cluster-keys.service", "clusterbake-identity.service")}


def test_first_user_images_are_in_the_state_cancel_rename_leaves(lab: Lab) -> None:
    for image in lab.all:
        masked = image.stat(f"/etc/systemd/system/{WIZARD}")
        assert masked is not None and masked.link == "/dev/null", f"{image.path.name}: the wizard is not masked"
        assert not image.enabled(WIZARD), image.path.name
        assert image.enabled("getty@tty1.service"), f"{image.path.name}: no login prompt on tty1"
        assert not image.exists(BANNER), f"{image.path.name}: still says no user is set up"
        # The image's own locked `pi` stays as it was: it exists, nobody can log in as it.
        assert image.accounts()["pi"].uid == 1000
        assert image.shadow()["pi"][:1] in ("!", "*"), image.path.name


def test_every_image_still_boots_as_a_first_boot(lab: Lab) -> None:
    """No package script of the build may have made a machine id: every node would share it."""
    for image in lab.all:
        assert image.text("/etc/machine-id") == "uninitialized\n", image.path.name
        dbus = image.stat("/var/lib/dbus/machine-id")
        assert dbus is None or dbus.link == "/etc/machine-id", f"{image.path.name}: a baked D-Bus machine id"


def _copy(image: ImageReader, dest: Path) -> ImageReader:
    subprocess.run(["cp", "--sparse=always", image.path, dest], check=True)
    return ImageReader(dest)


@pytest.mark.parametrize("role", sorted(ROLE_RUNS))
def test_first_boot_presets_revive_nothing_the_role_turned_off(lab: Lab, role: str, tmp_path: Path) -> None:
    """systemd applies presets at a first boot (enable-only); `preset-all` in full mode is the harder test."""
    image = _copy(lab.roles[role], tmp_path / f"{role}.img")
    with open_image(image.path) as img, img.chroot() as chroot:
        chroot.run(["systemctl", "preset-all", "--preset-mode=enable-only"])
        after_first_boot = {u: image_enabled(img.root, u) for u in (*RUNS, *ROLE_RUNS[role], *NEVER)}
        chroot.run(["systemctl", "preset-all"])
    revived = [u for u in NEVER if after_first_boot[u]]
    assert not revived, f"{role}: first-boot presets enable {revived}"
    lost = [u for u in (*RUNS, *ROLE_RUNS[role]) if not after_first_boot[u]]
    assert not lost, f"{role}: first-boot presets leave {lost} disabled"
    assert not [u for u in NEVER if image.enabled(u)], f"{role}: preset-all enables a unit the role turned off"
    dropped = [u for u in (*RUNS, *ROLE_RUNS[role]) if not image.enabled(u)]
    assert not dropped, f"{role}: preset-all disables {dropped}"
    masked = image.stat(f"/etc/systemd/system/{WIZARD}")
    assert masked is not None and masked.link == "/dev/null"


def image_enabled(root: Path, unit: str) -> bool:
    """Mid-test look at the mounted root: is there a .wants/ link to `unit` under /etc/systemd/system?"""
    # lexists: the links are absolute, so they dangle when looked at from the host.
    return any(os.path.lexists(wants / unit) for wants in root.glob("etc/systemd/system/*.wants"))


IMAGER_USER_DATA = """#cloud-config
hostname: imager-name
manage_etc_hosts: true
packages: []
users:
  - name: imageruser
    groups: users,adm,dialout,audio,netdev,video,plugdev,cdrom,games,input,gpio,spi,i2c,render,sudo
    shell: /bin/bash
    lock_passwd: true
    ssh_authorized_keys:
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGNsdXN0ZXJiYWtlLWltYWdlcg== imager@laptop
timezone: Europe/London
"""
IMAGER_NETWORK_CONFIG = """network:
  version: 2
  ethernets:
    eth0:
      dhcp4: true
      optional: true
"""
IMAGER_META_DATA = "instance-id: rpi-imager-1764115200000\n"


@pytest.mark.parametrize("which", ["node", "role"])
def test_cloud_init_with_imager_user_data_keeps_the_cluster_identity(lab: Lab, which: str, tmp_path: Path) -> None:
    """Raspberry Pi Imager's customisation on a clusterbake card: cloud-init's own stages run, in
    private UTS and network namespaces so that nothing reaches the host, against Imager-style seeds."""
    image = _copy(lab.node if which == "node" else lab.roles["compute"], tmp_path / "card.img")
    before = {path: image.read(path) if image.exists(path) else None
              for path in ("/etc/hostname", "/etc/hosts")}
    keyfiles = image.listdir("/etc/NetworkManager/system-connections")
    boot = f"{image.path}@@{image.boot_offset}"
    for name, text in (("user-data", IMAGER_USER_DATA), ("network-config", IMAGER_NETWORK_CONFIG),
                       ("meta-data", IMAGER_META_DATA)):
        (tmp_path / name).write_text(text)
        sh("mcopy", "-o", "-i", boot, tmp_path / name, f"::{name}")
    with open_image(image.path) as img, img.chroot() as chroot:
        for stage in (["init", "--local"], ["init"], ["modules", "--mode", "config"], ["modules", "--mode", "final"]):
            chroot.run(["unshare", "--uts", "--net", "cloud-init", *stage])
    status = json.loads(image.read("/var/lib/cloud/data/status.json"))["v1"]
    for stage in ("init-local", "init", "modules-config", "modules-final"):
        assert status[stage]["finished"] and not status[stage]["errors"], f"cloud-init {stage}: {status[stage]}"
    assert json.loads(image.read("/var/lib/cloud/data/result.json"))["v1"]["errors"] == []
    # cloud-init did run on this seed: it made Imager's user.
    accounts = image.accounts()
    assert "imageruser" in accounts, "cloud-init did not act on the seed at all"
    assert "debian" not in accounts, "cloud-init added Debian's default user (passwordless sudo)"
    assert image.exists("/var/lib/cloud/instances/rpi-imager-1764115200000")
    for path, data in before.items():
        now = image.read(path) if image.exists(path) else None
        assert now == data, f"cloud-init changed {path}: {data!r} -> {now!r}"
    assert image.listdir("/etc/NetworkManager/system-connections") == keyfiles, "cloud-init wrote a network profile"
    assert not [n for n in image.listdir("/etc/netplan") if "cloud-init" in n], "cloud-init wrote a netplan file"
