"""os_list.json: a Raspberry Pi Imager repository listing every role image of the release.

Open it with `rpi-imager --repo <url or path of os_list.json>`. The format is Imager's
(a top-level `os_list` array of entries); the keys used here are the ones Imager needs to
download, check and write an image: url, sizes and SHA-256 of the download and of the
extracted image, release_date, devices and init_format.

`init_format` tells Imager how it may customise the image on the card:
  - "cloudinit-rpi" when cloud-init is installed in the image (Raspberry Pi OS Trixie):
    Imager writes cloud-init's user-data/network-config to the boot partition;
  - "systemd" otherwise (Bookworm): Imager writes its firstrun.sh.
It is decided from the packages installed in the built image, not from the base's name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from builder.config.model import Node

# Imager's device tags for 64-bit images, by board family (Node.board).
DEVICE_TAGS = {"pi5": "pi5-64bit", "pi4": "pi4-64bit"}


@dataclass(frozen=True)
class ImagerEntry:
    name: str
    description: str
    url: str
    release_date: str
    extract_size: int
    extract_sha256: str
    image_download_size: int
    image_download_sha256: str
    devices: tuple[str, ...]
    init_format: str

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "description": self.description, "url": self.url,
                "release_date": self.release_date, "extract_size": self.extract_size,
                "extract_sha256": self.extract_sha256, "image_download_size": self.image_download_size,
                "image_download_sha256": self.image_download_sha256, "devices": list(self.devices),
                "init_format": self.init_format}


def init_format(installed: Mapping[str, str]) -> str:
    """`installed`: package → version, as read from the image's dpkg status."""
    return "cloudinit-rpi" if "cloud-init" in installed else "systemd"


def device_tags(nodes: Sequence[Node]) -> tuple[str, ...]:
    """The Imager tags of the boards a role runs on; every supported board when it has no nodes yet."""
    boards = {node.board for node in nodes} or set(DEVICE_TAGS)
    return tuple(DEVICE_TAGS[b] for b in sorted(boards, reverse=True) if b in DEVICE_TAGS)


def download_url(base_url: str, file_name: str) -> str:
    return base_url.rstrip("/") + "/" + file_name


def write_os_list(dest: Path, entries: Iterable[ImagerEntry]) -> Path:
    dest.write_text(json.dumps({"os_list": [e.as_json() for e in entries]}, indent=2) + "\n")
    return dest
