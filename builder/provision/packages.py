"""Install packages inside the image, under qemu-user, from the image's own apt sources.

Two host caches beside each other make this cheap to repeat:
  apt-archives/<arch>-<suite>/   downloaded .debs (each install sees them at /var/cache/apt/archives)
  apt-lists/<day>-<key>/         apt's package lists, bind-mounted at /var/lib/apt/lists

`apt-get update` under emulation takes most of a minute (gpgv, xz and apt's parser all run
emulated), so the lists are fetched once per UTC day and set of sources, not once per install:
the key is the image's architecture and sources, so a new day or an edited sources list
fetches new lists. Earlier days' lists are removed when a new day's arrive. The lists never
enter the image: the bind mount hides the image's own (empty) lists directory.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from builder.cache import cache_entry, make_dirs, recipe_key
from builder.errors import InputError
from builder.image.chroot import image_arch
from builder.image.image_root import ImageRoot
from builder.progress import step

log = logging.getLogger("clusterbake")

# What decides which lists apt fetches: the sources and the architectures it wants.
SOURCES_FILE = "/etc/apt/sources.list"
SOURCES_DIR = "/etc/apt/sources.list.d"
FOREIGN_ARCHES = "/var/lib/dpkg/arch"
# No Translation-* files: descriptions in English are in the Packages lists already.
UPDATE_OPTIONS = ("-o", "Acquire::Languages=none")
# dpkg's fsync per unpacked file buys nothing here: a build that dies is thrown away whole,
# and a finished layer is fsync'd as one file when it enters the cache.
INSTALL_OPTIONS = ("--no-install-recommends", "-o", "Dpkg::Options::=--force-confdef",
                   "-o", "Dpkg::Options::=--force-confold", "-o", "Dpkg::Options::=--force-unsafe-io")
KEEP_DAYS = 2  # lists this many days old or newer stay (a build started yesterday may still use them)


def install_packages(img: ImageRoot, packages: Sequence[str], *, cache: Path, scratch: Path) -> None:
    """`apt-get install` `packages` without recommends, from today's cached lists.

    apt locks its archive directory for a whole run (and gives up at once on a lock another
    apt holds): each install gets an archive of its own in `scratch`, made of hard links to
    the shared one, and what it downloads is linked into the shared one afterwards. So
    installs running at the same time (layers built side by side) neither wait nor collide.
    """
    if not packages:
        return
    lists = fresh_lists(img, cache)
    with own_archive(cache / "apt-archives", scratch / "apt-archives") as archives, \
            img.chroot(apt_cache=archives, apt_lists=lists) as chroot, step(f"apt-get install {' '.join(packages)}"):
        chroot.run(["apt-get", "install", "-y", "-q", *INSTALL_OPTIONS, *packages])


@contextlib.contextmanager
def own_archive(shared: Path, own: Path) -> Iterator[Path]:
    """`own` holding a hard link to every package in `shared` (per <arch>-<suite> folder); new ones go back."""
    make_dirs(shared)
    for folder in _folders(shared):
        _link_debs(folder, make_dirs(own / folder.name))
    yield own
    for folder in _folders(own):
        _link_debs(folder, make_dirs(shared / folder.name))


def _folders(archive: Path) -> list[Path]:
    return [entry for entry in archive.iterdir() if entry.is_dir()]


def _link_debs(source: Path, dest: Path) -> None:
    for deb in source.glob("*.deb"):
        target = dest / deb.name
        if target.exists():
            continue
        try:
            os.link(deb, target)
        except FileExistsError:   # another build linked the same package a moment ago
            pass
        except OSError:           # another file system: copy, then rename into place
            tmp = dest / f".{deb.name}.{os.getpid()}"
            shutil.copyfile(deb, tmp)
            os.replace(tmp, target)


def today() -> str:
    return datetime.datetime.now(datetime.UTC).date().isoformat()


def lists_key(img: ImageRoot, day: str) -> str:
    """The name of the lists this image's apt wants on `day` (see `lists_name`)."""
    return lists_name(image_arch(img.root), image_sources(img), day)


def lists_name(arch: str, sources: Mapping[str, str], day: str) -> str:
    """`<day>-<hash of the architecture and the text of every sources file>`."""
    return f"{day}-{recipe_key({'arch': arch, 'sources': dict(sources)})}"


def image_sources(img: ImageRoot) -> dict[str, str]:
    """What decides which lists apt fetches: each sources file's text, and dpkg's foreign architectures."""
    sources = {path: _text(img, path) for path in (SOURCES_FILE, FOREIGN_ARCHES)}
    for path, _info in img.glob(f"{SOURCES_DIR}/*"):
        if path.endswith((".list", ".sources")):
            sources[path] = _text(img, path)
    return sources


def _text(img: ImageRoot, path: str) -> str:
    try:
        return img.read_file(path).decode(errors="replace")
    except InputError:  # absent (or not a regular file): no sources from it
        return ""


def fresh_lists(img: ImageRoot, cache: Path, *, day: str | None = None) -> Path:
    """The host directory holding today's lists for this image's sources; fetched if absent."""
    folder = cache / "apt-lists"
    key = lists_key(img, day or today())
    path = folder / key

    def update(work: Path) -> None:
        lists = make_dirs(work / key / "partial").parent
        with img.chroot(apt_lists=lists) as chroot, step("apt-get update (once a day per sources list)"):
            chroot.run(["apt-get", "update", "-q", *UPDATE_OPTIONS])

    if not cache_entry(path, update):
        log.info("  using today's apt lists %s", path)
        return path
    remove_old_lists(folder, keep_from=_days_before(day or today(), KEEP_DAYS - 1))
    return path


def _days_before(day: str, days: int) -> str:
    return (datetime.date.fromisoformat(day) - datetime.timedelta(days=days)).isoformat()


def remove_old_lists(folder: Path, *, keep_from: str) -> None:
    """Delete lists (and their lock files) of days before `keep_from` (an ISO date)."""
    for entry in folder.iterdir():
        day = entry.name[:10]
        if entry.name.startswith("staging-") or not _is_day(day) or day >= keep_from:
            continue
        log.info("  removing old apt lists %s", entry)
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _is_day(text: str) -> bool:
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True
