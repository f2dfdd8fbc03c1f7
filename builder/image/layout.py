"""Where the boot and root partitions are: read from the partition table and the image's /etc/fstab.

Offsets are never assumed: Raspberry Pi OS moved its first partition from sector 8192 to 16384
in 2025, and both layouts are in use. fstab says which partition is mounted at `/` and at
`/boot/firmware` (`/boot` on older images); when it can't be read or names no partition of
this table, the partition types decide, with a warning.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from builder.command import run
from builder.errors import InputError

log = logging.getLogger("clusterbake.image")

BOOT_MOUNTPOINTS = ("/boot/firmware", "/boot")
# MBR type codes and GPT type GUIDs of a FAT partition and of a Linux filesystem.
FAT_TYPES = {"b", "c", "e", "ef", "c12a7328-f81f-11d2-ba4b-00a0c93ec93b", "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"}
LINUX_TYPES = {"83", "0fc63daf-8483-4772-8e79-3d69d8477de4", "b921b045-1df0-41c3-af44-4c6f280d3fae"}


@dataclass(frozen=True)
class Partition:
    number: int
    start: int  # in sectors
    size: int  # in bytes
    offset: int  # in bytes, from the start of the image
    type: str  # MBR type code ("c", "83") or GPT type GUID, lower case
    partuuid: str  # "1a2b3c4d-02" on MBR, the partition GUID on GPT
    fs: str | None  # "vfat", "ext4", … as blkid reports it; None when unrecognised
    label: str | None = None
    uuid: str | None = None

    @property
    def end(self) -> int:
        """The byte just past the partition."""
        return self.offset + self.size


@dataclass(frozen=True)
class Layout:
    image: Path
    label: str  # "dos" or "gpt"
    disk_id: str  # "1a2b3c4d" on MBR, the disk GUID on GPT
    sector_size: int
    partitions: tuple[Partition, ...]
    boot: Partition
    root: Partition
    boot_mountpoint: str = "/boot/firmware"  # where the image's fstab mounts the boot partition

    @property
    def root_is_last(self) -> bool:
        """First-boot expand-to-card grows only the partition that ends last."""
        return all(p.end <= self.root.end for p in self.partitions)


def read_layout(image: Path) -> Layout:
    """Read the partition table of `image` and find its boot and root partitions."""
    if not image.is_file():
        raise InputError(f"{image}: no such image file", hint="check the path, or run 'make fetch'")
    proc = run(["sfdisk", "--json", image], label="sfdisk", capture=True, check=False)
    if proc.returncode != 0:
        raise InputError(f"{image}: no partition table found",
                         hint="give a raw disk image (.img), decompressed, with an MBR or GPT table")
    table = json.loads(proc.stdout)["partitiontable"]
    label = table["label"]
    if label not in ("dos", "gpt"):
        raise InputError(f"{image}: unsupported partition table '{label}'", hint="use an MBR or GPT image")
    sector = int(table.get("sectorsize", 512))
    disk_id = str(table["id"]).lower().removeprefix("0x")
    partitions = tuple(
        _probe(image, number=_number(entry["node"]), start=int(entry["start"]), sectors=int(entry["size"]),
               type=str(entry["type"]).lower(), sector=sector,
               partuuid=str(entry.get("uuid", "")).lower() or f"{disk_id}-{_number(entry['node']):02x}")
        for entry in table.get("partitions", [])
    )
    boot, root, boot_mountpoint = _find_boot_and_root(image, partitions)
    return Layout(image=image, label=label, disk_id=disk_id, sector_size=sector, partitions=partitions,
                  boot=boot, root=root, boot_mountpoint=boot_mountpoint)


def _number(node: str) -> int:
    digits = ""
    for char in reversed(node):
        if not char.isdigit():
            break
        digits = char + digits
    return int(digits)


def _probe(image: Path, *, number: int, start: int, sectors: int, type: str, sector: int,
           partuuid: str) -> Partition:
    """Ask blkid, at the partition's offset, what filesystem it holds (no loop device needed)."""
    offset, size = start * sector, sectors * sector
    proc = run(["blkid", "--probe", "--output", "export", "--offset", str(offset), "--size", str(size), image],
               label="blkid", capture=True, check=False)
    found = dict(line.split("=", 1) for line in proc.stdout.decode(errors="replace").splitlines() if "=" in line)
    return Partition(number=number, start=start, size=size, offset=offset, type=type, partuuid=partuuid,
                     fs=found.get("TYPE"), label=found.get("LABEL"), uuid=found.get("UUID"))


def read_fstab(image: Path, root: Partition) -> str | None:
    """The text of /etc/fstab in an ext4 partition, read with debugfs at the partition's offset."""
    proc = run(["debugfs", "-R", "cat /etc/fstab", f"{image}?offset={root.offset}"],
               label="debugfs", capture=True, check=False)
    text = proc.stdout.decode(errors="replace")
    return text if proc.returncode == 0 and text.strip() else None


def parse_fstab(text: str) -> dict[str, str]:
    """Mount point → source (`PARTUUID=…`, `LABEL=…`, `UUID=…`, `/dev/…`)."""
    entries: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2:
            entries[fields[1].rstrip("/") or "/"] = fields[0]
    return entries


def match_source(source: str, partitions: tuple[Partition, ...]) -> Partition | None:
    """The partition an fstab source names, or None."""
    kind, _, value = source.partition("=")
    value = value.strip('"').lower()
    for p in partitions:
        if (kind == "PARTUUID" and p.partuuid == value) or (kind == "UUID" and (p.uuid or "").lower() == value) \
                or (kind == "LABEL" and (p.label or "").lower() == value):
            return p
    return None


def _find_boot_and_root(image: Path, partitions: tuple[Partition, ...]) -> tuple[Partition, Partition, str]:
    fat = [p for p in partitions if p.fs == "vfat"]
    ext4 = [p for p in partitions if p.fs == "ext4"]
    if not fat:
        raise InputError(f"{image}: no FAT partition (the boot partition) in the partition table",
                         hint="give a Raspberry Pi OS image: p1 FAT32 boot, p2 ext4 root")
    if not ext4:
        raise InputError(f"{image}: no ext4 partition (the root partition) in the partition table",
                         hint="give a Raspberry Pi OS image: p1 FAT32 boot, p2 ext4 root")
    for candidate in ext4:
        fstab = read_fstab(image, candidate)
        if fstab is None:
            continue
        entries = parse_fstab(fstab)
        root = match_source(entries.get("/", ""), partitions)
        mountpoint = next((m for m in BOOT_MOUNTPOINTS if m in entries), BOOT_MOUNTPOINTS[0])
        boot_source = entries.get(mountpoint, "")
        boot = match_source(boot_source, partitions)
        if root is candidate and boot is not None and boot.fs == "vfat":
            return boot, root, mountpoint
        log.warning("%s: /etc/fstab in partition %d names %s for / and %s for the boot partition, which do not "
                    "match this partition table; choosing the partitions by type", image, candidate.number,
                    entries.get("/", "nothing"), boot_source or "nothing")
        break
    else:
        log.warning("%s: no readable /etc/fstab; choosing the partitions by type", image)
    boot = next((p for p in fat if p.type in FAT_TYPES), fat[0])
    root = max((p for p in ext4 if p.type in LINUX_TYPES), default=ext4[-1], key=lambda p: p.end)
    return boot, root, BOOT_MOUNTPOINTS[0]
