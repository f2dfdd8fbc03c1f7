"""Integrity checks after a change: both filesystems clean, and every PARTUUID pointing at this disk.

The MBR disk id (bytes 440–443) is what cmdline.txt (`root=PARTUUID=<id>-02`) and /etc/fstab
(`PARTUUID=<id>-01`, `-02`) name; an image whose ids disagree boots to an initramfs shell.
"""

from __future__ import annotations

from pathlib import Path

from builder.command import run
from builder.errors import VerificationError
from builder.image.layout import Layout, Partition, match_source, parse_fstab
from builder.image.loop import attached

# e2fsck -n: 0 clean; 4 means it found errors it was not allowed to fix.
E2FSCK_CLEAN = 0


def mbr_disk_id(image: Path) -> str:
    """The disk identifier as stored in the MBR, read from the bytes (not through sfdisk)."""
    with image.open("rb") as stream:
        stream.seek(440)
        return int.from_bytes(stream.read(4), "little").to_bytes(4, "big").hex()


def check_ext4(device: Path, what: str) -> None:
    proc = run(["e2fsck", "-f", "-n", device], label="e2fsck", capture=True, check=False)
    if proc.returncode != E2FSCK_CLEAN:
        detail = " | ".join(proc.stdout.decode(errors="replace").strip().splitlines()[-8:])
        raise VerificationError(f"{what}: e2fsck -fn found problems (exit {proc.returncode}): {detail}",
                                hint="rebuild the image; this one is damaged")


def check_fat(image: Path, boot: Partition) -> None:
    # fsck.vfat takes a device or a file, not an offset; a loop device over the partition is fine
    # (only mounting vfat needs the kernel module).
    with attached(image, boot.offset, boot.size, read_only=True) as device:
        proc = run(["fsck.vfat", "-n", device], label="fsck.vfat", capture=True, check=False)
    if proc.returncode != 0:
        detail = " | ".join(proc.stdout.decode(errors="replace").strip().splitlines()[-8:])
        raise VerificationError(f"{image}: boot partition: fsck.vfat -n found problems: {detail}",
                                hint="rebuild the image; this one is damaged")


def id_problems(layout: Layout, cmdline: str, fstab: str) -> list[str]:
    """Ways in which cmdline.txt and /etc/fstab fail to name this disk's partitions."""
    problems = []
    if layout.label == "dos":
        stored = mbr_disk_id(layout.image)
        if stored != layout.disk_id:
            problems.append(f"MBR disk id {stored} differs from the partition table's {layout.disk_id}")
    root_args = [arg.removeprefix("root=") for arg in cmdline.split() if arg.startswith("root=")]
    if not root_args:
        problems.append("cmdline.txt has no root= argument")
    elif match_source(root_args[-1], layout.partitions) != layout.root:
        problems.append(f"cmdline.txt says root={root_args[-1]}, but the root partition is "
                        f"PARTUUID={layout.root.partuuid}")
    entries = parse_fstab(fstab)
    if match_source(entries.get("/", ""), layout.partitions) != layout.root:
        problems.append(f"/etc/fstab mounts {entries.get('/', 'nothing')} on /, but the root partition is "
                        f"PARTUUID={layout.root.partuuid}")
    boot_source = entries.get(layout.boot_mountpoint, "")
    if match_source(boot_source, layout.partitions) != layout.boot:
        problems.append(f"/etc/fstab mounts {boot_source or 'nothing'} on {layout.boot_mountpoint}, but the boot "
                        f"partition is PARTUUID={layout.boot.partuuid}")
    return problems
