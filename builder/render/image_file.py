"""What the plan puts into the image: files and directories with explicit owner and mode."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImageFile:
    """One file (or directory, `directory=True`, data empty) at an absolute path in the image.

    Owner and group are NAMES, resolved by the engine through the image's own /etc/passwd
    and /etc/group. Parent directories the plan does not list are created root:root 0755
    when missing; existing ones are left as they are.
    """

    path: str
    data: bytes
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    directory: bool = False
    source: str = ""     # where it came from, for messages: "overlays/base/etc/hosts.j2"

    def __repr__(self) -> str:  # keep secrets and long files out of logs and assertion output
        kind = "dir" if self.directory else f"{len(self.data)} bytes"
        return f"ImageFile({self.path!r}, {kind}, {self.mode:04o}, {self.owner}:{self.group})"
