"""grow_image and shrink_image keep what first-boot expand-to-card relies on."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from builder.errors import InputError
from builder.image import grow_image, open_image, read_layout, shrink_image
from tests.image.imagetools import MIB, ImageFacts, debugfs, sh

pytestmark = pytest.mark.root


def table(image: ImageFacts) -> dict[str, Any]:
    return json.loads(sh("sfdisk", "-J", image.path))["partitiontable"]  # type: ignore[no-any-return]


def fs_bytes(image: ImageFacts, offset: int) -> int:
    text = sh("dumpe2fs", "-h", f"{image.path}?offset={offset}")
    count = re.search(r"^Block count:\s+(\d+)", text, re.MULTILINE)
    size = re.search(r"^Block size:\s+(\d+)", text, re.MULTILINE)
    assert count and size
    return int(count.group(1)) * int(size.group(1))


def assert_first_boot_ready(image: ImageFacts, before: dict[str, Any]) -> None:
    after = table(image)
    assert after["id"] == before["id"]  # disk id, hence every PARTUUID
    assert after["partitions"][0] == before["partitions"][0]  # boot untouched
    root_before, root_after = before["partitions"][-1], after["partitions"][-1]
    assert root_after["start"] == root_before["start"]
    assert root_after["type"] == root_before["type"]
    ends = [p["start"] + p["size"] for p in after["partitions"]]
    assert max(ends) == ends[-1]  # root still last
    assert image.path.stat().st_size >= ends[-1] * 512
    proc = subprocess.run(["sfdisk", "--verify", image.path], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "No errors detected" in proc.stdout and not proc.stderr, proc.stdout + proc.stderr
    sh("e2fsck", "-fn", f"{image.path}?offset={image.root_offset}")
    # The filesystem fills its partition (to the last whole block): nothing hides between it and the expand.
    assert 0 <= root_after["size"] * 512 - fs_bytes(image, image.root_offset) < 4096


@pytest.mark.parametrize("kind", ["dos-8192", "dos-16384", "gpt"])
def test_grow_then_shrink(make_image: Callable[[str], ImageFacts], kind: str) -> None:
    image = make_image(kind)
    before = table(image)
    size_before = image.path.stat().st_size
    grow_image(image.path, 100 * MIB - 5)  # rounded up to whole MiB
    assert image.path.stat().st_size == size_before + 100 * MIB
    grown = table(image)
    assert grown["partitions"][-1]["size"] >= before["partitions"][-1]["size"] + 99 * MIB // 512
    assert_first_boot_ready(image, before)
    with open_image(image.path) as img:
        img.write_file("/var/lib/big", b"x" * (20 * MIB), mode=0o644)
        img.check()

    shrink_image(image.path)
    shrunk = table(image)
    assert shrunk["partitions"][-1]["size"] < grown["partitions"][-1]["size"]
    assert_first_boot_ready(image, before)
    assert debugfs(image, image.root_offset, "stat /var/lib/big").count("Size: 20971520") == 1
    if kind != "gpt":
        assert image.path.stat().st_size == (shrunk["partitions"][-1]["start"] + shrunk["partitions"][-1]["size"]) * 512
    layout = read_layout(image.path)
    assert (layout.boot.partuuid, layout.root.partuuid) == (image.boot_partuuid, image.root_partuuid)
    with open_image(image.path) as img:
        img.check()


def test_resize_refused_while_open(image: ImageFacts) -> None:
    with open_image(image.path), pytest.raises(InputError, match="is open"):
        grow_image(image.path, MIB)
    with pytest.raises(InputError, match="must be positive"):
        grow_image(image.path, 0)


def test_root_not_last_refused(image: ImageFacts) -> None:
    # A third partition after root: the first boot could no longer grow root, so neither do we.
    root = table(image)["partitions"][-1]
    sh("truncate", "-s", "+8M", image.path)
    sh("sfdisk", "--quiet", "--append", image.path, input=f"start={root['start'] + root['size']}, type=83\n".encode())
    with pytest.raises(InputError, match="not the last one"):
        grow_image(image.path, MIB)
