"""A compute image's boot partition and root, as files: for judging the served tree without an image.

The boot files are the stand-in's config.txt and cmdline.txt with the compute role's real render
plan applied (the same functions a build applies), plus the firmware, kernels, device trees, an
overlay and initramfs files a Raspberry Pi OS card holds (the stand-in has none: stand-ins here).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from builder.config import Cluster, load_cluster
from builder.paths import repo_root
from builder.render import apply_cmdline, apply_config_txt, render_plan

ROOT = repo_root()
STANDIN_CMDLINE = ("console=serial0,115200 console=tty1 root=PARTUUID=1234abcd-02 rootfstype=ext4 "
                   "fsck.repair=yes rootwait resize\n")
FIRMWARE = ("start4.elf", "fixup4.dat", "kernel8.img", "kernel_2712.img", "initramfs8", "initramfs_2712",
            "bcm2711-rpi-4-b.dtb", "bcm2712-rpi-5-b.dtb", "overlays/gpio-shutdown.dtbo", "overlays/README")


def netboot_cluster(tmp_path: Path, data: dict) -> Cluster:  # type: ignore[type-arg]
    import yaml

    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(data))
    cluster = load_cluster(path, profiles_dir=ROOT / "profiles")
    return dataclasses.replace(cluster, secrets_dir=tmp_path / "secrets")


def fake_boot(cluster: Cluster, dest: Path) -> Path:
    """The compute role image's boot partition as a build leaves it, with stand-in firmware."""
    plan = render_plan(cluster, role="compute", secrets=False, profiles_dir=ROOT / "profiles",
                       overlays_dir=ROOT / "overlays")
    config = (ROOT / "builder" / "demo" / "raspios-config.txt").read_text()
    dest.mkdir(parents=True)
    (dest / "config.txt").write_text(apply_config_txt(config, plan.config_txt_lines, plan.config_txt_boards))
    (dest / "cmdline.txt").write_text(apply_cmdline(STANDIN_CMDLINE, remove_serial_console=plan.remove_serial_console,
                                                    add=plan.cmdline_args))
    for name, data in plan.boot_files:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_bytes(data)
    for name in FIRMWARE:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_bytes(f"stand-in {name}\n".encode())
    (dest / "node.txt").write_text("node01\n")      # a person's choice on one card: never served
    return dest


def fake_root(dest: Path) -> Path:
    """The few files of a compute image's root the served tree changes, and the accounts it resolves."""
    for name, text in {
        "etc/passwd": "root:x:0:0:root:/root:/bin/bash\nmunge:x:101:102::/nonexistent:/usr/sbin/nologin\n",
        "etc/group": "root:x:0:\nmunge:x:102:\n",
        "etc/fstab": "proc /proc proc defaults 0 0\nPARTUUID=1234abcd-01 /boot/firmware vfat defaults 0 2\n"
                     "PARTUUID=1234abcd-02 / ext4 defaults,noatime 0 1\n",
        "etc/systemd/system-preset/00-clusterbake.preset": "enable slurmd.service\ndisable *\n",
        "etc/machine-id": "uninitialized\n",
    }.items():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_text(text)
    return dest
