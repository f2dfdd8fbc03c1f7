"""An SD-card image opened for a build: root filesystem mounted through a loop device, boot through mtools."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from builder.command import run
from builder.errors import VerificationError
from builder.image.boot import BootPartition
from builder.image.checkpoints import checkpoint
from builder.image.chroot import Chroot, enter_chroot
from builder.image.image_root import DirectoryRoot
from builder.image.integrity import check_ext4, check_fat, id_problems
from builder.image.layout import Layout, read_layout
from builder.image.loop import attached
from builder.image.mounts import mounted
from builder.process.record import scratch_dir
from builder.process.recovery import clean_leftovers
from builder.progress import step

log = logging.getLogger("clusterbake.image")


class OpenImage(DirectoryRoot):
    """The image's files: `write_file`/`read_file` for the root, `boot` for the FAT partition.

    `root` is where the root filesystem is mounted on the host; write through `write_file`, which
    resolves symlinks inside the image, rather than through `root` directly. The root's file
    operations are those of any root directory (`DirectoryRoot`); the image adds its boot partition.
    """

    def __init__(self, layout: Layout, root: Path, root_device: Path) -> None:
        super().__init__(root)
        self.layout = layout
        self.boot = BootPartition(layout.image, layout.boot)
        self._root_device = root_device

    def chroot(self, *, apt_cache: Path | None = None,
               apt_lists: Path | None = None) -> contextlib.AbstractContextManager[Chroot]:
        """Commands inside the image; with `apt_cache`, apt's downloads are kept there on the host.

        Only steps that install packages pass a cache (the build's `--cache`): a chroot that runs
        no apt needs no writable host directory. `apt_lists` is the host directory that serves
        as apt's lists (see builder.provision.packages).
        """
        return enter_chroot(self.root, self.boot, boot_mountpoint=self.layout.boot_mountpoint, apt_cache=apt_cache,
                            apt_lists=apt_lists)

    def check(self) -> None:
        """e2fsck -fn on the root, fsck.vfat -n on the boot partition, disk id and PARTUUIDs agreeing.

        Call it outside a chroot: the root is remounted read-only for the check so that e2fsck
        sees a consistent filesystem.
        """
        with step("check the image"):
            run(["sync", "--file-system", self.root], label="sync")
            run(["mount", "-o", "remount,ro", self.root], label="mount")
            try:
                check_ext4(self._root_device, f"{self.layout.image}: root partition")
            finally:
                run(["mount", "-o", "remount,rw", self.root], label="mount")
            check_fat(self.layout.image, self.layout.boot)
            cmdline = self.boot.read("cmdline.txt").decode(errors="replace") if self.boot.exists("cmdline.txt") \
                else ""
            fstab = self.read_file("/etc/fstab").decode(errors="replace") if self.exists("/etc/fstab") else ""
            problems = id_problems(self.layout, cmdline, fstab)
            if problems:
                raise VerificationError(f"{self.layout.image}: " + "; ".join(problems),
                                        hint="the PARTUUIDs in cmdline.txt and /etc/fstab must name this disk's "
                                             f"partitions (disk id {self.layout.disk_id})")


@contextlib.contextmanager
def open_image(image: Path) -> Iterator[OpenImage]:
    """Mount the root partition of `image` through a loop device; release everything afterwards."""
    image = image.resolve()
    clean_leftovers()
    layout = read_layout(image)
    with step(f"open {image.name}"), contextlib.ExitStack() as stack:
        device = stack.enter_context(attached(image, layout.root.offset, layout.root.size))
        checkpoint("root-attached")
        mountpoint = stack.enter_context(scratch_dir("mnt"))
        stack.enter_context(mounted(device, mountpoint, fstype="ext4"))
        checkpoint("root-mounted")
        yield OpenImage(layout, mountpoint, device)
