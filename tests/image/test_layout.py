"""read_layout finds boot and root from the table and fstab, in every layout Raspberry Pi OS has used."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from builder.errors import InputError
from builder.image import read_layout
from tests.image.imagetools import ImageFacts, sh


def sfdisk_facts(path: Path) -> dict[str, object]:
    return json.loads(sh("sfdisk", "-J", path))["partitiontable"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", ["dos-8192", "dos-16384", "gpt"])
def test_layout_matches_sfdisk(image_templates: dict[str, ImageFacts], kind: str) -> None:
    facts = image_templates[kind]
    table = sfdisk_facts(facts.path)
    layout = read_layout(facts.path)

    assert layout.label == table["label"] == facts.label
    assert layout.disk_id == facts.disk_id
    assert layout.sector_size == 512
    parts = table["partitions"]
    assert isinstance(parts, list)
    assert [(p.start, p.size // 512) for p in layout.partitions] == [(p["start"], p["size"]) for p in parts]
    assert layout.boot.number == 1 and layout.root.number == 2
    assert layout.boot.start == facts.first_sector
    assert layout.boot.offset == facts.boot_offset
    assert layout.root.offset == facts.root_offset
    assert (layout.boot.fs, layout.root.fs) == ("vfat", "ext4")
    assert (layout.boot.label, layout.root.label) == ("bootfs", "rootfs")
    assert (layout.boot.partuuid, layout.root.partuuid) == (facts.boot_partuuid, facts.root_partuuid)
    assert layout.boot_mountpoint == "/boot/firmware"
    assert layout.root_is_last


def test_not_an_image(tmp_path: Path) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\0" * 4096)
    with pytest.raises(InputError, match="no partition table"):
        read_layout(junk)
    with pytest.raises(InputError, match="no such image"):
        read_layout(tmp_path / "missing.img")


def test_no_fat_partition(tmp_path: Path) -> None:
    disk = tmp_path / "nofat.img"
    with disk.open("wb") as f:
        f.truncate(8 << 20)
    sh("sfdisk", "--quiet", disk, input=b"label: dos\nstart=2048, type=83\n")
    with pytest.raises(InputError, match="no FAT partition"):
        read_layout(disk)


def test_fstab_mismatch_falls_back_to_types(image: ImageFacts, caplog: pytest.LogCaptureFixture) -> None:
    # Change the disk id: fstab's PARTUUIDs then name no partition of this table.
    sh("sfdisk", "--quiet", "--disk-id", image.path, "0x0badcafe")
    with caplog.at_level(logging.WARNING, logger="clusterbake"):
        layout = read_layout(image.path)
    assert (layout.boot.number, layout.root.number) == (1, 2)
    assert layout.root.partuuid == "0badcafe-02"
    assert "choosing the partitions by type" in caplog.text


@pytest.mark.root
@pytest.mark.parametrize(("fstab", "mountpoint"), [
    ("LABEL=bootfs /boot/firmware vfat defaults 0 2\nLABEL=rootfs / ext4 defaults 0 1\n", "/boot/firmware"),
    # Older images mount the boot partition on /boot; UUID= is the third way fstab names them.
    ("PARTUUID={boot} /boot vfat defaults 0 2\n# comment\nUUID={root_uuid} / ext4 defaults 0 1\n", "/boot"),
])
def test_fstab_by_label_uuid_and_old_boot_mountpoint(image: ImageFacts, caplog: pytest.LogCaptureFixture,
                                                     fstab: str, mountpoint: str) -> None:
    from builder.image import open_image

    root_uuid = read_layout(image.path).root.uuid
    with open_image(image.path) as img:
        img.write_file("/etc/fstab", fstab.format(boot=image.boot_partuuid, root_uuid=root_uuid).encode(),
                       mode=0o644)
    with caplog.at_level(logging.WARNING, logger="clusterbake"):
        layout = read_layout(image.path)
    assert (layout.boot.number, layout.root.number, layout.boot_mountpoint) == (1, 2, mountpoint)
    assert "choosing the partitions by type" not in caplog.text
