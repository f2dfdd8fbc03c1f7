"""A root filesystem as the provisioning steps see it, whether it lives in an image or a directory.

`ImageRoot` is what accounts, files, services, packages and a release's checks need: paths
resolved inside the root (never following a link out of it), files read, written, rewritten,
listed by glob and walked without following links, owners looked up in its own passwd/group,
and a chroot.
`OpenImage` (an SD-card image's mounted root) has it; `DirectoryRoot` is a plain directory, such
as the unpacked root of a Proxmox container template, which has no boot partition.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from builder.image import safe_paths
from builder.image.chroot import Chroot, enter_chroot


class ImageRoot(Protocol):
    root: Path

    def resolve(self, path: str) -> Path: ...
    def lookup_user(self, name: str) -> int: ...
    def lookup_group(self, name: str) -> int: ...
    def write_file(self, path: str, data: bytes, *, mode: int, owner: str = "root", group: str = "root",
                   dir_mode: int = 0o755, dir_owner: str = "root", dir_group: str = "root") -> Path: ...
    def read_file(self, path: str) -> bytes: ...
    def make_dir(self, path: str, *, mode: int = 0o755, owner: str = "root", group: str = "root") -> Path: ...
    def remove(self, path: str) -> bool: ...
    def exists(self, path: str) -> bool: ...
    def rewrite(self, path: str, data: bytes) -> Path: ...
    def read_link(self, path: str) -> str: ...
    def glob(self, pattern: str) -> list[tuple[str, os.stat_result]]: ...
    def walk(self, top: str = "/") -> Iterator[tuple[str, os.stat_result]]: ...
    def chroot(self, *, apt_cache: Path | None = None,
               apt_lists: Path | None = None) -> contextlib.AbstractContextManager[Chroot]: ...


class DirectoryRoot:
    """A root filesystem in a directory on the host (no boot partition)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def resolve(self, path: str) -> Path:
        return safe_paths.resolve(self.root, path)

    def lookup_user(self, name: str) -> int:
        return safe_paths.lookup_id(self.root, "passwd", name)

    def lookup_group(self, name: str) -> int:
        return safe_paths.lookup_id(self.root, "group", name)

    def write_file(self, path: str, data: bytes, *, mode: int, owner: str = "root", group: str = "root",
                   dir_mode: int = 0o755, dir_owner: str = "root", dir_group: str = "root") -> Path:
        return safe_paths.write_file(self.root, path, data, mode=mode,
                                     uid=self.lookup_user(owner), gid=self.lookup_group(group), dir_mode=dir_mode,
                                     dir_uid=self.lookup_user(dir_owner), dir_gid=self.lookup_group(dir_group))

    def read_file(self, path: str) -> bytes:
        return safe_paths.read_file(self.root, path)

    def make_dir(self, path: str, *, mode: int = 0o755, owner: str = "root", group: str = "root") -> Path:
        return safe_paths.make_dir(self.root, path, mode=mode, uid=self.lookup_user(owner),
                                   gid=self.lookup_group(group))

    def remove(self, path: str) -> bool:
        return safe_paths.remove(self.root, path)

    def exists(self, path: str) -> bool:
        return safe_paths.exists(self.root, path)

    def rewrite(self, path: str, data: bytes) -> Path:
        """New content for an existing regular file; its mode and owner stay."""
        return safe_paths.rewrite(self.root, path, data)

    def read_link(self, path: str) -> str:
        return safe_paths.read_link(self.root, path)

    def glob(self, pattern: str) -> list[tuple[str, os.stat_result]]:
        """(path, lstat) of the entries matching `pattern` (wildcards in its last component only)."""
        return safe_paths.glob(self.root, pattern)

    def walk(self, top: str = "/") -> Iterator[tuple[str, os.stat_result]]:
        """(path, lstat) of every entry below `top` that is no directory; no link followed."""
        return safe_paths.walk(self.root, top)

    def symlink(self, path: str, target: str) -> Path:
        return safe_paths.symlink(self.root, path, target)

    def chroot(self, *, apt_cache: Path | None = None,
               apt_lists: Path | None = None) -> contextlib.AbstractContextManager[Chroot]:
        return enter_chroot(self.root, None, apt_cache=apt_cache, apt_lists=apt_lists)
