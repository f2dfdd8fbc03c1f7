"""Read a finished image with independent tools: sfdisk -J for the layout, a read-only loop mount of
the root for its file tree, mtools for the boot partition."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def partitions(image: Path) -> list[tuple[int, int, str]]:
    """(offset, size, type) in bytes for each partition, from `sfdisk -J`."""
    table = json.loads(subprocess.run(["sfdisk", "-J", image], check=True, capture_output=True, text=True).stdout)
    sector = int(table["partitiontable"].get("sectorsize", 512))
    return [(p["start"] * sector, p["size"] * sector, str(p["type"])) for p in table["partitiontable"]["partitions"]]


@contextlib.contextmanager
def mounted_root(image: Path) -> Iterator[Path]:
    """The root filesystem (partition 2) mounted read-only, released in any case."""
    offset, size, _ = partitions(image)[1]
    device = subprocess.run(["losetup", "--read-only", "--offset", str(offset), "--sizelimit", str(size), "--find",
                             "--show", image], check=True, capture_output=True, text=True).stdout.strip()
    try:
        with tempfile.TemporaryDirectory(prefix="imagetree-", dir=image.parent) as mountpoint:
            subprocess.run(["mount", "-t", "ext4", "-o", "ro,noload", device, mountpoint], check=True)
            try:
                yield Path(mountpoint)
            finally:
                subprocess.run(["umount", mountpoint], check=True)
    finally:
        subprocess.run(["losetup", "-d", device], check=False)


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    """path → (type and mode, uid, gid, size, sha256 or link target) for every entry below root."""
    entries: dict[str, tuple[object, ...]] = {}
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(directory) / name
            info = path.lstat()
            if stat.S_ISREG(info.st_mode):
                content: str = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(info.st_mode):
                content = os.readlink(path)
            else:
                content = ""
            size = info.st_size if not stat.S_ISDIR(info.st_mode) else 0
            entries["/" + path.relative_to(root).as_posix()] = (oct(info.st_mode), info.st_uid, info.st_gid, size,
                                                               content)
    return entries


def boot_files(image: Path, dest: Path) -> Path:
    """Copy every file of the boot partition (partition 1) into dest with mtools."""
    offset, _, _ = partitions(image)[0]
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mcopy", "-s", "-n", "-i", f"{image}@@{offset}", "::/", dest], check=True, capture_output=True)
    return dest
