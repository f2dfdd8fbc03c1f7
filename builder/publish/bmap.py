"""The block map of an image, made by bmaptool: which ranges hold data, with a checksum each.

Flashing only those ranges (`bmaptool copy`, or `builder.flash`) skips the empty
gigabytes of the root filesystem. The image must be sparse for that to help: holes are
what bmaptool reports as unmapped, so the release first trims the free blocks.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from builder.command import run
from builder.errors import InputError
from builder.progress import step


@dataclass(frozen=True)
class BlockMap:
    block_size: int
    image_size: int
    mapped_blocks: int
    checksum_type: str
    ranges: tuple[tuple[int, int, str], ...]   # (first block, last block, checksum of the range)


def create_bmap(image: Path, dest: Path) -> Path:
    with step(f"bmaptool create {dest.name}"):
        run(["bmaptool", "create", "--output", dest, image], label="bmaptool create")
    return dest


def read_bmap(path: Path) -> BlockMap:
    """Parse bmaptool's XML (format 1.x/2.x): ranges are `first-last` block numbers, inclusive."""
    try:
        root = ET.parse(path).getroot()
        block_size = int(_text(root, "BlockSize"))
        image_size = int(_text(root, "ImageSize"))
        mapped = int(_text(root, "MappedBlocksCount"))
        checksum_type = (root.findtext("ChecksumType") or "sha1").strip()
        ranges = []
        for element in root.iterfind("BlockMap/Range"):
            first, _, last = (element.text or "").strip().partition("-")
            ranges.append((int(first), int(last or first), element.get("chksum", "")))
    except (ET.ParseError, ValueError) as exc:
        raise InputError(f"{path}: not a bmaptool block map ({exc})", hint="make it with `bmaptool create`") from exc
    return BlockMap(block_size, image_size, mapped, checksum_type, tuple(ranges))


def _text(root: ET.Element, tag: str) -> str:
    value = root.findtext(tag)
    if value is None:
        raise ValueError(f"no <{tag}>")
    return value.strip()
