"""Write a release image to an SD card, carefully: `python -m builder flash IMAGE DEVICE`.

Refused, always: a device that is not a whole block device, that is mounted or used as
swap, that holds the running system, or that another layer (dm-crypt, LVM, md) sits on.
Refused unless --force: a device larger than --max-size (256 GiB by default), because an
SD card or USB reader is small and the big disk in the machine is not. Confirmed: the
device's model and size are shown and the user must type "yes" (--yes for scripts; without
a terminal and without --yes nothing is written).

With a block map beside the image (`<name>.img.bmap`, as in a release) only the mapped
blocks are written, by bmaptool; otherwise the whole image is streamed. Either way the
written data is read back from the device afterwards and compared.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import lzma
import os
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from builder.command import run
from builder.errors import InputError, VerificationError
from builder.progress import progress, step
from builder.publish.bmap import BlockMap, read_bmap

DEFAULT_MAX_SIZE = 256 << 30
BLKFLSBUF = 0x1261   # linux/fs.h: drop the device's buffer cache, so a read-back reaches the card
CHUNK = 4 << 20
SYS_BLOCK = Path("/sys/dev/block")


@dataclass(frozen=True)
class BlockDevice:
    path: Path
    name: str                      # kernel name, e.g. sdb, mmcblk0, loop3
    size: int                      # bytes
    model: str
    numbers: frozenset[str]        # "major:minor" of the device and of each partition
    holders: tuple[str, ...]       # devices stacked on it or its partitions (dm-0, md0 …)

    def describe(self) -> str:
        return f"{self.path} ({self.model}, {human_size(self.size)})"


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{size} B"
        value /= 1024
    return f"{size} B"


def block_device(path: Path) -> BlockDevice:
    """What the kernel knows about the whole-disk block device at `path` (from sysfs)."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise InputError(f"{path}: no such device ({exc.strerror})", hint="list the disks with `lsblk`") from exc
    if not stat.S_ISBLK(info.st_mode):
        raise InputError(f"{path}: is not a block device", hint="give the card's device, e.g. /dev/sdb or /dev/mmcblk0")
    number = f"{os.major(info.st_rdev)}:{os.minor(info.st_rdev)}"
    sysdir = (SYS_BLOCK / number).resolve()
    if (sysdir / "partition").exists():
        raise InputError(f"{path}: is a partition, not a whole disk",
                         hint=f"give the disk it belongs to, /dev/{sysdir.parent.name}")
    partitions = [p for p in sysdir.iterdir() if (p / "partition").exists()]
    numbers = {number} | {(p / "dev").read_text().strip() for p in partitions}
    holders = [h.name for d in (sysdir, *partitions) if (d / "holders").is_dir() for h in (d / "holders").iterdir()]
    size = int((sysdir / "size").read_text()) * 512
    return BlockDevice(path=path, name=sysdir.name, size=size, model=_model(sysdir),
                       numbers=frozenset(numbers), holders=tuple(sorted(holders)))


def _model(sysdir: Path) -> str:
    backing = sysdir / "loop" / "backing_file"
    if backing.exists():
        return f"loop device backed by {backing.read_text().strip()}"
    words = []
    for name in ("vendor", "model", "name"):   # name: MMC/SD cards
        with contextlib.suppress(OSError):
            words.append((sysdir / "device" / name).read_text().strip())
    return " ".join(w for w in words if w) or "unknown model"


def _mounted_numbers() -> dict[str, str]:
    """'major:minor' of every mounted filesystem → its mount point (from mountinfo)."""
    found: dict[str, str] = {}
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            found.setdefault(fields[2], fields[4])
    return found


def _swap_numbers() -> set[str]:
    numbers = set()
    with open("/proc/swaps") as swaps:
        for line in list(swaps)[1:]:
            with contextlib.suppress(OSError):
                info = os.stat(line.split()[0])
                if stat.S_ISBLK(info.st_mode):
                    numbers.add(f"{os.major(info.st_rdev)}:{os.minor(info.st_rdev)}")
    return numbers


def refusals(device: BlockDevice, *, image_size: int, max_size: int, force: bool) -> list[str]:
    """Why `device` must not be written; empty when it may be."""
    reasons = []
    root = os.stat("/").st_dev
    if f"{os.major(root)}:{os.minor(root)}" in device.numbers:
        reasons.append("it holds the running system (/)")
    mounted = _mounted_numbers()
    points = sorted(mounted[n] for n in device.numbers if n in mounted)
    if points:
        reasons.append(f"it is mounted on {', '.join(points)} (umount it first)")
    if device.numbers & _swap_numbers():
        reasons.append("it is in use as swap (swapoff first)")
    if device.holders:
        reasons.append(f"{', '.join(device.holders)} sits on it (close the dm-crypt/LVM/md device first)")
    if not reasons and _busy(device.path):
        # What the checks above cannot see (btrfs/ZFS report anonymous device numbers): the
        # kernel itself says a mount or another program holds the disk or one of its partitions.
        reasons.append("it is in use: the kernel refuses exclusive access (a mounted filesystem on it?)")
    if device.size < image_size:
        reasons.append(f"it is smaller ({human_size(device.size)}) than the image ({human_size(image_size)})")
    if device.size > max_size and not force:
        reasons.append(f"it is larger ({human_size(device.size)}) than --max-size {human_size(max_size)}, "
                       "so probably not an SD card (--force if you are sure)")
    return reasons


def find_bmap(image: Path) -> Path | None:
    """`x.img.bmap` or `x.bmap` beside `x.img`, `x.img.xz` or `x.img.zst`."""
    stem = image.name.removesuffix(".xz").removesuffix(".zst")
    for name in (f"{stem}.bmap", f"{stem.removesuffix('.img')}.bmap"):
        if (image.parent / name).is_file():
            return image.parent / name
    return None


def ask_terminal(question: str) -> bool:
    if not sys.stdin.isatty():
        raise InputError("refusing to write without confirmation: there is no terminal to ask on",
                         hint="pass --yes (ARGS=--yes with make) once you are sure of the device")
    return input(question).strip().lower() == "yes"


def flash(image: Path, device_path: Path, *, max_size: int = DEFAULT_MAX_SIZE, force: bool = False,
          yes: bool = False, bmap: Path | None = None, use_bmap: bool = True,
          ask: Callable[[str], bool] = ask_terminal) -> BlockDevice:
    """Write `image` (.img, .img.xz or .img.zst) to `device_path` and read it back. Returns the device."""
    if not image.is_file():
        raise InputError(f"{image}: no such image", hint="give a .img or .img.xz file (make release writes dist/)")
    if bmap is None and use_bmap:
        bmap = find_bmap(image)
    block_map = read_bmap(bmap) if bmap is not None else None
    device = block_device(device_path)
    image_size = block_map.image_size if block_map is not None else _image_size(image)
    reasons = refusals(device, image_size=image_size, max_size=max_size, force=force)
    if reasons:
        raise InputError(f"refusing to write to {device.describe()}: " + "; ".join(reasons),
                         hint="check the device name with `lsblk -o NAME,SIZE,MODEL,MOUNTPOINTS`")
    if not yes and not ask(f"Write {image.name} to {device.describe()}? Everything on it is lost. Type 'yes': "):
        raise InputError("not confirmed: nothing was written")
    if block_map is not None and bmap is not None:
        mapped = human_size(block_map.mapped_blocks * block_map.block_size)
        with step(f"bmaptool copy {image.name} → {device.path} ({mapped} mapped)"):
            run(["bmaptool", "copy", "--bmap", bmap, image, device.path], label="bmaptool copy")
        with step("read back the mapped blocks"):
            verify_mapped(device.path, block_map)
    else:
        with step(f"write {image.name} → {device.path} (no block map: every byte)"):
            written, digest = write_stream(image, device.path)
        with step("read back"):
            verify_prefix(device.path, written, digest)
    return device


def _image_size(image: Path) -> int:
    if image.name.endswith(".xz"):
        out = run(["xz", "--robot", "--list", image], label="xz --list", capture=True).stdout.decode()
        totals = [line.split("\t") for line in out.splitlines() if line.startswith("totals\t")]
        return int(totals[0][4]) if totals else 0
    if image.name.endswith(".zst"):
        return 0   # zstd frames may not record it; the write fails on a too-small device anyway
    return image.stat().st_size


@contextlib.contextmanager
def _decompressed(image: Path) -> Iterator[IO[bytes]]:
    if image.name.endswith(".xz"):
        with lzma.open(image, "rb") as stream:
            yield stream
    elif image.name.endswith(".zst"):
        raise InputError(f"{image}: .zst images are flashed with their block map (bmaptool) only",
                         hint="use the .img.xz, or keep the .bmap beside the .img.zst")
    else:
        with open(image, "rb") as stream:
            yield stream


def _busy(device: Path) -> bool:
    try:
        os.close(os.open(device, os.O_RDONLY | os.O_EXCL | os.O_CLOEXEC))
    except OSError as exc:
        return exc.errno == errno.EBUSY
    return False


@contextlib.contextmanager
def _exclusive(device: Path, flags: int) -> Iterator[int]:
    # O_EXCL on a block device: the kernel refuses if anything (a mount, dm) has it open exclusively.
    try:
        fd = os.open(device, flags | os.O_EXCL | os.O_CLOEXEC)
    except OSError as exc:
        raise InputError(f"{device}: cannot open it for writing: {exc.strerror}",
                         hint="unmount it and close every program using it, then try again") from None
    try:
        yield fd
    finally:
        os.close(fd)


def write_stream(image: Path, device: Path) -> tuple[int, str]:
    """Copy every byte of the (decompressed) image to the device; return (bytes, SHA-256)."""
    digest = hashlib.sha256()
    written = 0
    with _decompressed(image) as source, _exclusive(device, os.O_WRONLY) as fd, \
            progress(_image_size(image) or None, "write") as bar:
        while chunk := source.read(CHUNK):
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
            digest.update(chunk)
            written += len(chunk)
            bar.update(len(chunk))
        os.fsync(fd)
    return written, digest.hexdigest()


def _drop_cache(fd: int) -> None:
    fcntl.ioctl(fd, BLKFLSBUF)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def _read_hash(fd: int, start: int, length: int, digest: hashlib._Hash) -> None:
    os.lseek(fd, start, os.SEEK_SET)
    left = length
    while left:
        chunk = os.read(fd, min(CHUNK, left))
        if not chunk:
            raise VerificationError(f"the device ended {left} bytes early while reading back")
        digest.update(chunk)
        left -= len(chunk)


def verify_prefix(device: Path, length: int, expected: str) -> None:
    with _exclusive(device, os.O_RDONLY) as fd:
        _drop_cache(fd)
        digest = hashlib.sha256()
        _read_hash(fd, 0, length, digest)
    if digest.hexdigest() != expected:
        raise VerificationError(f"{device}: what was read back differs from the image",
                                hint="the card may be failing or fake: try another card")


def verify_mapped(device: Path, block_map: BlockMap) -> None:
    """Read every mapped range back and compare it with the block map's checksum of that range."""
    algorithm = block_map.checksum_type.lower()
    size = block_map.block_size
    with _exclusive(device, os.O_RDONLY) as fd:
        _drop_cache(fd)
        for first, last, checksum in block_map.ranges:
            digest = hashlib.new(algorithm)
            end = min((last + 1) * size, block_map.image_size)
            _read_hash(fd, first * size, end - first * size, digest)
            if checksum and digest.hexdigest() != checksum:
                raise VerificationError(f"{device}: blocks {first}-{last} read back differ from the image",
                                        hint="the card may be failing or fake: try another card")


def parse_size(text: str) -> int:
    """`256G`, `64GiB`, `512M`, `1T` (binary units) or a number of bytes."""
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    units = {"K": 10, "M": 20, "G": 30, "T": 40}
    shift = units.get(value[-1:], 0)
    number = value[:-1] if shift else value
    if not number.isdigit():
        raise InputError(f"--max-size {text!r}: not a size", hint="e.g. --max-size 256G or --max-size 64GiB")
    return int(number) << shift
