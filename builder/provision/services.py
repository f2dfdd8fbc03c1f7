"""Enable and disable systemd units inside the image (offline: systemctl only edits symlinks)."""

from __future__ import annotations

from collections.abc import Sequence

from builder.errors import InputError
from builder.image import Chroot, OpenImage

UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")


def unit_exists(img: OpenImage, unit: str) -> bool:
    name = unit if "." in unit else f"{unit}.service"
    return any(img.resolve(f"{d}/{name}").exists() for d in UNIT_DIRS)


def set_services(img: OpenImage, chroot: Chroot, *, enable: Sequence[str], disable: Sequence[str], source: str) -> None:
    """Enable what the role needs and disable what it must not run.

    A unit to enable must exist (a profile naming a unit its packages don't ship is an
    error); a unit to disable that the image doesn't have is already off.
    """
    missing = [u for u in enable if not unit_exists(img, u)]
    if missing:
        raise InputError(f"{source}: enable: no unit {', '.join(missing)} in the image",
                         hint="add the package that ships it to the profile's packages, or fix the name")
    present = [u for u in disable if unit_exists(img, u)]
    if present:
        chroot.run(["systemctl", "disable", *present])
    if enable:
        chroot.run(["systemctl", "enable", *enable])
