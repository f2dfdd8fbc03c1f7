"""os_list.json: a Raspberry Pi Imager repository listing every role image of the release.

Open it with `rpi-imager --repo <url or path of os_list.json>`. The format is Imager's: a
top-level `os_list` array of entries (name, description, icon, url, the sizes, `extract_sha256`,
which Imager checks the written card against, release_date, devices, init_format), and an
`imager: {devices: [...]}` block: Imager 2.x takes the boards it offers in its device step only
from the repository file it was started with, and shows the images whose `devices` tags match
the board picked.

`init_format` is "none": these images are already customised (hostname, network, users, SSH
keys and Slurm are the cluster's), so Imager must not offer its own customisation, whose
cloud-init user-data or firstrun.sh would rename the node, add users or change the network.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from builder.config.model import Node

# Imager's device tags for 64-bit images, by board family (Node.board).
DEVICE_TAGS = {"pi5": "pi5-64bit", "pi4": "pi4-64bit"}
# Imager offers no customisation of an image whose init_format is "none".
INIT_FORMAT = "none"
# The Raspberry Pi OS (64-bit) icon, as Raspberry Pi's own list shows it: these images are Raspberry Pi OS.
OS_ICON = "https://downloads.raspberrypi.org/raspios_arm64/Raspberry_Pi_OS_(64-bit).png"


@dataclass(frozen=True)
class ImagerDevice:
    """One board of Imager's device step; `tag` is what image entries list in `devices`."""

    name: str
    tag: str
    description: str
    icon: str

    def as_json(self) -> dict[str, object]:
        # "exclusive": picking this board shows only the images that name its tag.
        return {"name": self.name, "tags": [self.tag], "icon": self.icon, "description": self.description,
                "matching_type": "exclusive"}


DEVICES = (
    ImagerDevice("Raspberry Pi 5", "pi5-64bit", "Raspberry Pi 5, 500 and Compute Module 5",
                 "https://downloads.raspberrypi.com/imager/icons/RPi_5.png"),
    ImagerDevice("Raspberry Pi 4", "pi4-64bit", "Raspberry Pi 4 Model B, 400 and Compute Module 4",
                 "https://downloads.raspberrypi.com/imager/icons/RPi_4.png"),
)


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
    init_format: str = INIT_FORMAT
    icon: str = OS_ICON

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "description": self.description, "icon": self.icon, "url": self.url,
                "release_date": self.release_date, "extract_size": self.extract_size,
                "extract_sha256": self.extract_sha256, "image_download_size": self.image_download_size,
                "image_download_sha256": self.image_download_sha256, "devices": list(self.devices),
                "init_format": self.init_format}


def device_tags(nodes: Sequence[Node]) -> tuple[str, ...]:
    """The Imager tags of the boards a role runs on; every supported board when it has no nodes yet."""
    boards = {node.board for node in nodes} or set(DEVICE_TAGS)
    return tuple(DEVICE_TAGS[b] for b in sorted(boards, reverse=True) if b in DEVICE_TAGS)


def download_url(base_url: str, file_name: str) -> str:
    return base_url.rstrip("/") + "/" + file_name


def os_list(entries: Iterable[ImagerEntry]) -> dict[str, object]:
    """The repository document: the boards the images run on (in Imager's order), then the images."""
    listed = list(entries)
    used = {tag for entry in listed for tag in entry.devices}
    return {"imager": {"devices": [d.as_json() for d in DEVICES if d.tag in used]},
            "os_list": [e.as_json() for e in listed]}


def write_os_list(dest: Path, entries: Iterable[ImagerEntry]) -> Path:
    dest.write_text(json.dumps(os_list(entries), indent=2) + "\n")
    return dest
