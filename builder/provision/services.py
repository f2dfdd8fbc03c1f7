"""Enable and disable systemd units inside the image (offline: systemctl only edits symlinks)."""

from __future__ import annotations

import re
import stat
from collections.abc import Sequence
from pathlib import PurePosixPath

from builder.errors import InputError
from builder.image import Chroot
from builder.image.image_root import ImageRoot

UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")


def unit_exists(img: ImageRoot, unit: str) -> bool:
    name = unit if "." in unit else f"{unit}.service"
    # An instance (getty@tty1.service) exists when its template (getty@.service) does.
    template = re.sub(r"@[^.]+\.", "@.", name)
    return any(img.exists(f"{d}/{n}") for d in UNIT_DIRS for n in {name, template})


def set_services(img: ImageRoot, chroot: Chroot, *, enable: Sequence[str], disable: Sequence[str],
                 mask: Sequence[str] = (), source: str) -> None:
    """Enable what the role needs, disable what it must not run, mask what must never start.

    A unit to enable must exist (a profile naming a unit its packages don't ship is an
    error); a unit to disable that the image doesn't have is already off. A masked unit
    cannot be started by anything: not a preset at first boot, not a package, not a user.
    """
    missing = [u for u in enable if not unit_exists(img, u)]
    if missing:
        raise InputError(f"{source}: enable: no unit {', '.join(missing)} in the image",
                         hint="add the package that ships it to the profile's packages, or fix the name")
    present = [u for u in disable if unit_exists(img, u)]
    if present:
        chroot.run(["systemctl", "disable", *present])
    for unit in disable:
        if unit not in present:
            remove_leftover_links(img, unit)
    if enable:
        chroot.run(["systemctl", "enable", *enable])
    if mask:
        chroot.run(["systemctl", "mask", *mask])


def remove_leftover_links(img: ImageRoot, unit: str) -> list[str]:
    """Remove the enablement links of a unit whose package is gone; return their paths.

    A package that apt removed (chrony replaces systemd-timesyncd) keeps its conffiles and
    the links its postinst made until it is purged: systemctl cannot disable a unit it
    cannot find, and the dangling links would still name it as wanted at boot.
    """
    top = "/etc/systemd/system"
    entries = img.glob(f"{top}/*")
    for folder, info in list(entries):
        if stat.S_ISDIR(info.st_mode) and folder.endswith((".wants", ".requires")):
            entries += img.glob(f"{folder}/*")
    removed = []
    for path, info in entries:
        if not stat.S_ISLNK(info.st_mode):
            continue
        pointed = img.read_link(path)
        if PurePosixPath(pointed).name == unit and pointed.startswith("/") and not img.exists(pointed):
            img.remove(path)
            removed.append(path)
    return removed
