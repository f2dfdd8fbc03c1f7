"""The container's base: Debian trixie amd64 from Debian's own packages, cached by its recipe.

debootstrap runs natively (the host is amd64), checks the suite's Release file against Debian's
archive keyring (`--force-check-gpg`: a missing or bad signature fails, never a warning), and
apt inside the root keeps that trust path (`Signed-By:` the same keyring). The mirror is
$CLUSTERBAKE_DEBIAN_MIRROR, e.g. a snapshot.debian.org URL to pin the packages to one date
(README, "Proxmox host + Pis"); it is part of the recipe, so another mirror is another base.

Cached as `lxc/base-<recipe key>.tar` (numeric owners), made in a staging directory under a
lock and renamed into place when complete (builder.cache), like the stand-in's root.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from builder.cache import cache_entry, recipe_key
from builder.command import run
from builder.errors import EnvironmentProblem
from builder.image.debootstrap import KEYRING, debootstrap
from builder.image.image_root import DirectoryRoot
from builder.progress import step
from builder.settings import settings

log = logging.getLogger("clusterbake")

FOLDER = "lxc"
SUITE = "trixie"
ARCH = "amd64"
# debootstrap's own pass (it resolves no virtual packages): a root that boots under systemd.
PACKAGES = ("systemd", "systemd-sysv", "dbus", "apt", "ca-certificates")
# Then apt: what a Proxmox container of a login node needs. ifupdown because Proxmox writes the
# address of `pct create --net0 ip=` to /etc/network/interfaces in a Debian container.
CONTAINER_PACKAGES = ("ifupdown", "iproute2", "iputils-ping", "openssh-server", "sudo", "less", "procps",
                      "locales", "bash-completion")
VERSION = 1   # bump when what is done to the root below changes for the same recipe


def mirror() -> str:
    return settings().debian_mirror


def base_recipe() -> dict[str, object]:
    return {"version": VERSION, "suite": SUITE, "arch": ARCH, "mirror": mirror(), "variant": "minbase",
            "packages": list(PACKAGES), "container_packages": list(CONTAINER_PACKAGES)}


def container_base(cache: Path) -> Path:
    """The cached base tarball, built first if absent (root needed: debootstrap, owners)."""
    tarball = cache / FOLDER / f"base-{recipe_key(base_recipe())}.tar"

    def make(work: Path) -> None:
        if os.geteuid() != 0:
            raise EnvironmentProblem("building the container base needs root (debootstrap, file ownership)",
                                     hint="run as root, e.g. sudo make image NODE=…")
        with step(f"Container base {tarball.name} (debootstrap {SUITE} {ARCH}, native)"):
            root = work / "root"
            # .debs kept across builds, shared with apt's cache
            debootstrap(root, arch=ARCH, suite=SUITE, mirror=mirror(), include=PACKAGES,
                        debs=cache / "apt-archives" / f"{ARCH}-{SUITE}", logs=tarball.parent)
            _write_sources(root)
            with DirectoryRoot(root).chroot(apt_cache=cache / "apt-archives") as chroot, \
                    step("apt-get install the container's own packages"):
                chroot.run(["apt-get", "update", "-q", "-o", "Acquire::Languages=none"])
                chroot.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *CONTAINER_PACKAGES])
            _make_template_clean(root)
            pack_root(root, work / tarball.name)

    if not cache_entry(tarball, make, lock=tarball.with_suffix(".lock")):
        log.info("  using the cached container base %s", tarball)
    return tarball


def pack_root(root: Path, dest: Path, *, compress: bool = False) -> None:
    """tar of the root as Proxmox expects a template: numeric owners, xattrs, sorted, `./` paths."""
    argv: list[str | os.PathLike[str]] = ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*",
                                          "--sort=name", "-C", root]
    if compress:
        argv.append("--zstd")
    run([*argv, "-cf", dest, "."], label="tar root")


def unpack_root(tarball: Path, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", root, "-xpf", tarball],
        label="tar unpack")


def _write_sources(root: Path) -> None:
    """apt's sources in deb822 form, signed by Debian's archive keyring (the same trust as debootstrap's)."""
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    snapshot = "snapshot.debian.org" in mirror()
    (root / "etc/apt/sources.list.d/debian.sources").write_text(
        "Types: deb\n"
        f"URIs: {mirror()}\n"
        f"Suites: {SUITE} {SUITE}-updates\n"
        "Components: main\n"
        f"Signed-By: {KEYRING}\n"
        # A snapshot's Release files are past their Valid-Until by design.
        + ("Check-Valid-Until: no\n" if snapshot else "")
    )


def _make_template_clean(root: Path) -> None:
    """What no template may carry: the build host's name and resolver, host keys, apt's lists, an id."""
    (root / "etc/hostname").write_text("localhost\n")
    resolv = root / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    resolv.write_text("# written by Proxmox from pct create --nameserver\n")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()   # made per container at first boot (clusterbake-ssh-hostkeys.service)
    # "uninitialized": the first start makes the id and applies the presets (systemd.preset(5)).
    (root / "etc/machine-id").write_text("uninitialized\n")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    for entry in (root / "var/lib/apt/lists").iterdir():
        if entry.is_file():
            entry.unlink()
    for cached in (root / "var/cache/apt").rglob("*.bin"):
        cached.unlink()
    shutil.rmtree(root / "debootstrap", ignore_errors=True)
