"""Read a produced image with independent tools only: sfdisk -J, debugfs, e2fsck, mtools, fsck.vfat.

Nothing here imports the builder: these helpers judge its output. The root partition is read
with `debugfs 'IMAGE?offset=N'` (e2fsprogs' unix I/O manager takes the offset, so no loop
device or mount is needed); the FAT boot partition with `mtools -i IMAGE@@OFFSET`.
Reused by the cluster tests (tests/cluster), so keep it free of pytest fixtures.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

SECTOR = 512
UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")


def sh(*argv: str | os.PathLike[str], input: bytes | None = None, ok: tuple[int, ...] = (0,)) -> bytes:
    """Run a judging tool; a failure shows its stderr."""
    proc = subprocess.run([os.fspath(a) for a in argv], input=input, capture_output=True, check=False)
    assert proc.returncode in ok, f"{argv}: exit {proc.returncode}: {proc.stderr.decode(errors='replace')}"
    return proc.stdout


@dataclass(frozen=True)
class Stat:
    type: str        # regular, directory, symlink, …
    mode: int        # permission bits
    uid: int
    gid: int
    size: int
    link: str | None  # a symlink's target


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str
    shell: str


class ImageReader:
    """One image file, read-only. Cheap to make; results of the partition table are cached."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    # --- partition table -------------------------------------------------------------

    @cached_property
    def table(self) -> dict[str, object]:
        data = json.loads(sh("sfdisk", "-J", self.path))
        table: dict[str, object] = data["partitiontable"]
        return table

    @property
    def partitions(self) -> list[dict[str, object]]:
        parts: list[dict[str, object]] = self.table["partitions"]  # type: ignore[assignment]
        return parts

    @property
    def boot_offset(self) -> int:
        return int(str(self.partitions[0]["start"])) * SECTOR

    @property
    def root_offset(self) -> int:
        return int(str(self.partitions[-1]["start"])) * SECTOR

    @property
    def root_size(self) -> int:
        return int(str(self.partitions[-1]["size"])) * SECTOR

    @property
    def boot_size(self) -> int:
        return int(str(self.partitions[0]["size"])) * SECTOR

    # --- root file system (debugfs) ----------------------------------------------------

    @property
    def _ext4(self) -> str:
        return f"{self.path}?offset={self.root_offset}"

    def debugfs(self, request: str) -> bytes:
        return sh("debugfs", "-R", request, self._ext4)

    def stat(self, path: str) -> Stat | None:
        """The inode at `path` (not following a final symlink), or None if there is none."""
        out = self.debugfs(f'stat "{path}"').decode(errors="replace")
        head = re.search(r"Type:\s+(\S+)\s+Mode:\s+(\d+)", out)
        if head is None:
            return None
        owner = re.search(r"User:\s+(\d+)\s+Group:\s+(\d+)", out)
        size = re.search(r"Size:\s+(\d+)", out)
        link = re.search(r'Fast link dest: "(.*)"', out)
        assert owner and size, out
        target = link.group(1) if link else None
        if head.group(1) == "symlink" and target is None:  # a long target lives in a data block
            target = self.debugfs(f'cat "{path}"').decode()
        return Stat(type=head.group(1), mode=int(head.group(2), 8), uid=int(owner.group(1)),
                    gid=int(owner.group(2)), size=int(size.group(1)), link=target)

    def exists(self, path: str) -> bool:
        return self.stat(path) is not None

    def read(self, path: str) -> bytes:
        """A regular file's bytes (symlinks inside the image are followed, absolute ones from its root)."""
        info = self.stat(path)
        assert info is not None, f"{self.path.name}: no {path} in the root file system"
        if info.type == "symlink":
            assert info.link is not None
            target = info.link if info.link.startswith("/") else f"{path.rsplit('/', 1)[0]}/{info.link}"
            return self.read(os.path.normpath(target))
        assert info.type == "regular", f"{path} is a {info.type}"
        data = self.debugfs(f'cat "{path}"')
        assert len(data) == info.size, f"{path}: read {len(data)} bytes of {info.size}"
        return data

    def text(self, path: str) -> str:
        return self.read(path).decode()

    def listdir(self, path: str) -> dict[str, int]:
        """Names in a directory and their mode (type bits included); empty if it does not exist."""
        if not self.exists(path):
            return {}
        entries = {}
        for line in self.debugfs(f'ls -p "{path}"').decode(errors="replace").splitlines():
            fields = line.split("/")
            if len(fields) >= 7 and fields[5] not in (".", ".."):
                entries[fields[5]] = int(fields[2], 8)
        return entries

    def accounts(self) -> dict[str, Account]:
        out = {}
        for line in self.text("/etc/passwd").splitlines():
            name, _, uid, gid, _, home, shell = line.split(":")
            out[name] = Account(name, int(uid), int(gid), home, shell)
        return out

    def groups(self) -> dict[str, tuple[int, tuple[str, ...]]]:
        """name -> (gid, members)"""
        out = {}
        for line in self.text("/etc/group").splitlines():
            name, _, gid, members = line.split(":")
            out[name] = (int(gid), tuple(m for m in members.split(",") if m))
        return out

    def shadow(self) -> dict[str, str]:
        return {line.split(":")[0]: line.split(":")[1] for line in self.text("/etc/shadow").splitlines()}

    def unit_links(self) -> dict[str, set[str]]:
        """Unit name -> the `*.wants`/`*.requires` directories of /etc/systemd/system holding a link to it,
        i.e. what `systemctl enable` did. A unit linked to /dev/null (masked) maps to {"masked"}."""
        links: dict[str, set[str]] = {}
        top = "/etc/systemd/system"
        for name, mode in self.listdir(top).items():
            if mode & 0o170000 == 0o040000 and name.endswith((".wants", ".requires")):
                for unit in self.listdir(f"{top}/{name}"):
                    links.setdefault(unit, set()).add(name)
            elif mode & 0o170000 == 0o120000:
                info = self.stat(f"{top}/{name}")
                if info is not None and info.link == "/dev/null":
                    links.setdefault(name, set()).add("masked")
        return links

    def enabled(self, unit: str) -> bool:
        return bool(self.unit_links().get(unit, set()) - {"masked"})

    def unit_file(self, unit: str) -> str:
        for folder in UNIT_DIRS:
            if self.exists(f"{folder}/{unit}"):
                return self.text(f"{folder}/{unit}")
        raise AssertionError(f"{self.path.name}: no unit file {unit}")

    def fsck_root(self) -> None:
        sh("e2fsck", "-fn", self._ext4)

    # --- boot partition (mtools) -------------------------------------------------------

    @property
    def _fat(self) -> str:
        return f"{self.path}@@{self.boot_offset}"

    def boot_names(self) -> set[str]:
        """Names in the boot partition's top directory."""
        out = sh("mdir", "-b", "-i", self._fat, "::/").decode(errors="replace")
        return {line.rstrip("/").rsplit("/", 1)[-1] for line in out.splitlines() if line.strip()}

    def boot_read(self, name: str) -> bytes:
        return sh("mcopy", "-n", "-i", self._fat, f"::{name}", "-")

    def boot_text(self, name: str) -> str:
        return self.boot_read(name).decode()

    def fsck_boot(self) -> None:
        with attached_read_only(self.path, self.boot_offset, self.boot_size) as device:
            sh("fsck.vfat", "-n", device)


@contextlib.contextmanager
def attached_read_only(image: Path, offset: int, size: int) -> Iterator[str]:
    """A read-only loop device over part of `image` (fsck.vfat needs a device), always detached."""
    device = sh("losetup", "--read-only", "--offset", str(offset), "--sizelimit", str(size), "--find", "--show",
                image).decode().strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "--detach", device], check=False)


def config_sections(text: str) -> list[tuple[str, str]]:
    """(section in force, line) for every setting of a config.txt; before any header the section is [all]."""
    section = "[all]"
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line.lower()
        elif line and not line.startswith("#"):
            out.append((section, line))
    return out


def ini(text: str) -> dict[str, dict[str, str]]:
    """A NetworkManager keyfile (GLib key file) as sections of keys; a key given twice is an error."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            assert line[1:-1] not in sections, f"section {line} twice"
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"stray line {line!r}"
        key, _, value = line.partition("=")
        assert key not in current, f"key {key} twice"
        current[key.strip()] = value.strip()
    return sections
