"""Growing an image before packages are installed, and shrinking it before it is published.

Raspberry Pi OS expands its root filesystem to the card on first boot. That keeps working only
while the root partition stays the last one, starts at the same sector and keeps its PARTUUID
(disk id): so only the root partition's end moves here, and `sfdisk -N` keeps the rest.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from builder.command import output, run
from builder.errors import CommandFailed, InputError
from builder.image.layout import Layout, read_layout
from builder.image.loop import attached, loops_of
from builder.progress import step

MIB = 1 << 20
SHRINK_SLACK = 16 * MIB  # free space left in the root filesystem after a shrink
GPT_BACKUP_SECTORS = 33  # backup partition entries + header at the end of a GPT disk


def _prepare(image: Path) -> Layout:
    busy = loops_of(image)
    if busy:
        raise InputError(f"{image}: is open (loop devices {' '.join(busy)}); cannot resize it now",
                         hint="resize before open_image() or after it has closed")
    layout = read_layout(image)
    if not layout.root_is_last:
        raise InputError(f"{image}: the root partition ({layout.root.number}) is not the last one, so neither "
                         "this build nor the first boot can grow it",
                         hint="use an image whose root partition is the last partition")
    return layout


def _fsck_before_resize(device: Path) -> None:
    """resize2fs insists on a freshly checked filesystem; preen fixes only what is safe to fix."""
    proc = run(["e2fsck", "-f", "-p", device], label="e2fsck", capture=True, check=False)
    if proc.returncode >= 4:
        raise CommandFailed(f"e2fsck -fp {device} found errors it cannot fix safely (exit {proc.returncode})",
                            hint="the root filesystem of the image is damaged; start from a fresh base image")


def _set_root_entry(layout: Layout, sectors: int | None) -> None:
    """Rewrite only the root partition's size (None: up to the end of the disk); start and ids stay."""
    size = "+" if sectors is None else str(sectors)
    run(["sfdisk", "--no-reread", "--no-tell-kernel", "--wipe", "never", "--wipe-partitions", "never",
         "-N", str(layout.root.number), layout.image],
        label="sfdisk", input=f"{layout.root.start},{size}\n".encode())


def _resize_file(layout: Layout, new_size: int, root_sectors: int | None) -> None:
    """Truncate the image to `new_size` and set the root partition's size (None: to the end).

    MBR: only the root entry is rewritten. GPT keeps its backup header in the last sectors of
    the disk, so the table is rewritten whole from its own dump (same disk GUID, partition
    GUIDs, types and names), which puts fresh headers where the new size wants them.
    """
    if layout.label == "dos":
        os.truncate(layout.image, new_size)
        _set_root_entry(layout, root_sectors)
        return
    script = []
    for line in output(["sfdisk", "--dump", layout.image], label="sfdisk").splitlines():
        entry = re.match(r"^\S*?(\d+) : (.*)$", line)
        if line.startswith(("last-lba:", "device:")):
            continue  # both follow from the new size
        if entry and int(entry.group(1)) == layout.root.number:
            fields = [f.strip() for f in entry.group(2).split(",") if not f.strip().startswith("size=")]
            line = ", ".join(fields[:1] + ([f"size={root_sectors}"] if root_sectors is not None else []) + fields[1:])
        script.append(line)
    os.truncate(layout.image, new_size)
    run(["sfdisk", "--no-reread", "--no-tell-kernel", "--wipe", "never", "--wipe-partitions", "never",
         layout.image], label="sfdisk", input=("\n".join(script) + "\n").encode())


def grow_image(image: Path, extra_bytes: int) -> None:
    """Make the image, its root partition and the ext4 filesystem in it `extra_bytes` larger
    (rounded up to whole MiB). Not while the image is open."""
    if extra_bytes <= 0:
        raise InputError(f"grow by {extra_bytes} bytes: the size must be positive")
    layout = _prepare(image)
    extra = -(-extra_bytes // MIB) * MIB
    with step(f"grow {image.name} by {extra // MIB} MiB"):
        _resize_file(layout, image.stat().st_size + extra, None)
        grown = read_layout(image)
        with attached(image, grown.root.offset, grown.root.size) as device:
            _fsck_before_resize(device)
            run(["resize2fs", device], label="resize2fs")


def _fs_bytes(device: Path) -> int:
    header = output(["dumpe2fs", "-h", device], label="dumpe2fs")
    count = re.search(r"^Block count:\s+(\d+)", header, re.MULTILINE)
    size = re.search(r"^Block size:\s+(\d+)", header, re.MULTILINE)
    if not count or not size:
        raise CommandFailed(f"dumpe2fs -h {device}: no block count or block size in its output")
    return int(count.group(1)) * int(size.group(1))


def shrink_image(image: Path) -> None:
    """Shrink the root filesystem to its minimum plus a little slack, then its partition and the file.

    The filesystem fills the shrunk partition again, so the first boot's expand-to-card has
    a consistent starting point. Not while the image is open.
    """
    layout = _prepare(image)
    root = layout.root
    with step(f"shrink {image.name}"):
        with attached(image, root.offset, root.size) as device:
            _fsck_before_resize(device)
            run(["resize2fs", "-M", device], label="resize2fs")
            wanted = -(-(_fs_bytes(device) + SHRINK_SLACK) // MIB) * MIB
            if wanted >= root.size:
                run(["resize2fs", device], label="resize2fs")  # nothing to gain: fill the partition again
                return
            run(["resize2fs", device, f"{wanted // 1024}K"], label="resize2fs")
        end = root.offset + wanted
        if layout.label == "gpt":
            end += GPT_BACKUP_SECTORS * layout.sector_size
        _resize_file(layout, end, wanted // layout.sector_size)
