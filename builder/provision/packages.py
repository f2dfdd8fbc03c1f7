"""Install a role's packages inside the image, under qemu-user, from the image's own apt sources."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from builder.cache import locked
from builder.image import Chroot, OpenImage
from builder.progress import step


def install_packages(img: OpenImage, chroot: Chroot, packages: Sequence[str], *, archive_lock: Path) -> None:
    """apt-get update + install, without recommends, then drop the lists to keep the image small.

    The package archive is a bind mount of the host's apt cache (see builder.image), so there
    is nothing to `apt-get clean`: downloads stay on the host for the next build. Builds running
    at the same time share that archive, and apt gives up at once on its lock there instead of
    waiting ("Could not get lock /var/cache/apt/archives/lock"): `archive_lock`, taken on the
    host, makes concurrent installs wait for each other.
    """
    if not packages:
        return
    with step("apt-get update"):
        chroot.run(["apt-get", "update", "-q"])
    with step(f"apt-get install {' '.join(packages)}"), locked(archive_lock):
        chroot.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends",
             "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold", *packages],
        )
    for lists in img.resolve("/var/lib/apt/lists").glob("*_*"):
        lists.unlink()
