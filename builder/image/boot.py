"""The FAT boot partition, edited in place with mtools at its byte offset (`-i IMG@@OFFSET`).

Many build hosts can't mount vfat (no kernel module in a container), and mtools needs neither
a mount nor a loop device. Steps that run inside the image and expect /boot/firmware (apt
hooks, initramfs updates) get a copy of the files instead, written back afterwards
(`boot_copy`): only files that changed or are new are copied back, deleted ones deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from builder.command import run
from builder.errors import InputError
from builder.image.checkpoints import checkpoint
from builder.image.layout import Partition
from builder.progress import step

# mtools reads ~/.mtoolsrc and /etc/mtools.conf; the host's settings must not change what we write.
# MTOOLS_SKIP_CHECK: images made by other tools may have geometry mtools would otherwise reject.
_MTOOLS_ENV = {"MTOOLSRC": "/dev/null", "MTOOLS_SKIP_CHECK": "1", "MTOOLS_LOWER_CASE": "0"}


# BootPartition has a method named `list`, which hides the builtin in its annotations.
Names = list[str]


def _fat_name(name: str) -> str:
    parts = [p for p in PurePosixPath(name).parts if p not in ("/", ".", "")]
    if not parts or ".." in parts:
        raise InputError(f"boot partition: invalid file name {name!r}",
                         hint="use a name relative to the boot partition, like 'config.txt' or 'overlays/x.dtbo'")
    return "/".join(parts)


class BootPartition:
    """Files on the FAT boot partition, by name relative to its root ("config.txt", "overlays/x.dtbo")."""

    def __init__(self, image: Path, partition: Partition) -> None:
        self.image = image
        self.partition = partition
        self._target = f"{image}@@{partition.offset}"

    def _mtools(self, tool: str, *args: str, check: bool = True, capture: bool = False) -> bytes:
        env = {**os.environ, **_MTOOLS_ENV}
        proc = run([tool, "-i", self._target, *args], label=tool, env=env, check=check, capture=capture)
        return proc.stdout if proc.returncode == 0 else b""

    def _ok(self, tool: str, *args: str) -> bool:
        env = {**os.environ, **_MTOOLS_ENV}
        return run([tool, "-i", self._target, *args], label=tool, env=env, check=False).returncode == 0

    def read(self, name: str) -> bytes:
        fat = _fat_name(name)
        if not self.exists(fat):
            raise InputError(f"boot partition: no file {fat}")
        return self._mtools("mcopy", "-n", f"::/{fat}", "-", capture=True)

    def write(self, name: str, data: bytes) -> None:
        fat = _fat_name(name)
        self._make_parents(fat)
        with tempfile.NamedTemporaryFile(prefix="clusterbake-boot-") as tmp:
            tmp.write(data)
            tmp.flush()
            self._mtools("mcopy", "-o", "-D", "o", tmp.name, f"::/{fat}")

    def write_from(self, name: str, source: Path) -> None:
        """Copy a host file (keeping its modification time) onto the partition."""
        fat = _fat_name(name)
        self._make_parents(fat)
        self._mtools("mcopy", "-o", "-m", "-D", "o", str(source), f"::/{fat}")

    def delete(self, name: str) -> None:
        self._mtools("mdel", f"::/{_fat_name(name)}")

    def exists(self, name: str) -> bool:
        return self._ok("mdir", "-b", f"::/{_fat_name(name)}")

    def make_dir(self, name: str) -> None:
        self._mtools("mmd", "-D", "s", f"::/{_fat_name(name)}")

    def remove_dir(self, name: str) -> None:
        self._mtools("mrd", f"::/{_fat_name(name)}")

    def _make_parents(self, fat: str) -> None:
        parents = list(PurePosixPath(fat).parents)[:-1]
        for parent in reversed(parents):
            if not self.exists(str(parent)):
                self.make_dir(str(parent))

    def _listing(self) -> Names:
        text = self._mtools("mdir", "-/", "-b", "::/", capture=True, check=False).decode(errors="replace")
        return [line.strip().removeprefix("::/") for line in text.splitlines() if line.strip().startswith("::/")]

    def list(self) -> Names:
        """Every file (not directory), recursively, sorted."""
        return sorted(name for name in self._listing() if not name.endswith("/"))

    def directories(self) -> Names:
        return sorted(name.rstrip("/") for name in self._listing() if name.endswith("/"))

    def export(self, dest: Path) -> None:
        """Copy every file and directory to the host directory `dest`, keeping modification times."""
        for directory in self.directories():
            (dest / directory).mkdir(parents=True, exist_ok=True)
        for name in self.list():
            self._mtools("mcopy", "-n", "-m", f"::/{name}", str(dest / name))


def _manifest(tree: Path) -> tuple[dict[str, str], set[str]]:
    """(file → sha256, directories) of a host tree, paths relative to it."""
    files: dict[str, str] = {}
    dirs: set[str] = set()
    for path in sorted(tree.rglob("*")):
        rel = path.relative_to(tree).as_posix()
        if path.is_symlink():
            raise InputError(f"boot partition copy: {rel} is a symlink; FAT can't hold links",
                             hint="write the file itself to /boot/firmware, not a link")
        if path.is_dir():
            dirs.add(rel)
        else:
            files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files, dirs


@contextlib.contextmanager
def boot_copy(boot: BootPartition, dest: Path) -> Iterator[Path]:
    """Fill `dest` with the boot files; when the block succeeds, write the changes back with mtools.

    Nothing is written back after a failure: that build's image is thrown away anyway, and a
    half-finished step's files on the boot partition would only mislead.
    """
    with step("copy the boot partition out for the chroot"):
        boot.export(dest)
    before_files, before_dirs = _manifest(dest)
    yield dest
    after_files, after_dirs = _manifest(dest)
    changed = sorted(n for n, digest in after_files.items() if before_files.get(n) != digest)
    deleted = sorted(set(before_files) - set(after_files))
    if not changed and not deleted and after_dirs == before_dirs:
        return
    with step(f"write back the boot partition ({len(changed)} changed, {len(deleted)} deleted)"):
        for name in deleted:
            boot.delete(name)
        for directory in sorted(before_dirs - after_dirs, reverse=True):
            boot.remove_dir(directory)
        for directory in sorted(after_dirs - before_dirs):
            boot.make_dir(directory)
        for index, name in enumerate(changed):
            boot.write_from(name, dest / name)
            if index == 0:
                checkpoint("boot-writeback")
