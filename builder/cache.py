"""How artefacts enter the cache: keyed by their inputs, locked, renamed into place.

Two builders may run at once (two test sessions, `make demo` next to `make test`), and a
build may be killed at any moment. So every entry is made in a private staging directory
(or a temporary file) under an fcntl lock and renamed into place only when complete and
fsync'd: a file at its final name is always a finished one, even after a crash. A staging
directory is held in its builder's resource record (builder.process.record), the one mark of
everything a build holds: the next builder releases what a dead one's record lists (processes
and mounts debootstrap left first), and removes a staging directory no running builder holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from builder.command import run
from builder.errors import EnvironmentProblem
from builder.process.procfs import kill_processes_in, mounts_under, pid_alive
from builder.process.record import forget, held_by_live_builders, remember
from builder.process.recovery import clean_leftovers
from builder.process.signals import signals_held

log = logging.getLogger("clusterbake.cache")

STAGING_PREFIX = "staging-"
_staging_counter = 0


def recipe_key(recipe: Mapping[str, object]) -> str:
    """A short, stable hash of a recipe: the cache key of what it produces."""
    text = json.dumps(recipe, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def make_dirs(path: Path) -> Path:
    """Create a cache directory (and its parents); a read-only cache is one clear error."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EnvironmentProblem(f"{path}: cannot create the cache directory: {exc.strerror}",
                                 hint="set CLUSTERBAKE_CACHE (or --cache) to a writable directory") from None
    return path


@contextlib.contextmanager
def locked(lock_file: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive fcntl lock on `lock_file` (created if absent) for the block; yields True.
    With wait=False a lock another process holds is not waited for: the block gets False."""
    make_dirs(lock_file.parent)
    # The lock file stays afterwards: deleting it would let a waiter lock an unlinked inode.
    with open(lock_file, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield False
                return
            log.info("    another clusterbake holds %s; waiting for it", lock_file)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cache_entry(path: Path, make: Callable[[Path], object], *, lock: Path | None = None) -> bool:
    """The one way an entry enters the cache: under its lock (`<name>.lock` beside it unless `lock`
    says otherwise), nothing to do if `path` exists (an earlier build, or another builder while we
    waited, made it); else `make(work)` writes `work / path.name` in a private staging directory,
    which is renamed onto `path` once `make` returns. Returns whether this call made it."""
    with locked(lock or path.with_name(f"{path.name}.lock")):
        if path.exists():
            return False
        with staging_dir(path.parent) as work:
            make(work)
            install(work / path.name, path)
    return True


def install(source: Path, dest: Path) -> None:
    """Rename a finished file or directory to `dest`: after a crash, `dest` is whole or absent.

    A file's data is fsync'd before the rename and the directory entry after it; without the
    first, a crash could leave `dest` complete in name but empty in content.
    """
    make_dirs(dest.parent)
    if source.is_file():
        with open(source, "rb") as handle:
            os.fsync(handle.fileno())
    os.replace(source, dest)
    _fsync_dir(dest.parent)


def write_atomically(dest: Path, data: bytes) -> None:
    """Write a small file by temporary file and `install`."""
    make_dirs(dest.parent)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        install(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def staging_dir(parent: Path) -> Iterator[Path]:
    """A private work directory under `parent`, removed (processes and mounts first) on exit.

    It lives next to the cache rather than in /tmp so that the final rename stays on one
    filesystem, and /tmp may be too small for a root filesystem.
    """
    global _staging_counter
    make_dirs(parent)
    remove_stale_staging(parent)
    _staging_counter += 1
    # The pid in the name only tells a reader whose it is; the record is what holds it.
    work = parent / f"{STAGING_PREFIX}{os.getpid()}-{_staging_counter}-{secrets.token_hex(4)}"
    with signals_held():
        remember("dir", str(work))
        work.mkdir(mode=0o700)
    try:
        yield work
    finally:
        with signals_held():
            remove_staging(work)
            forget("dir", str(work))


def remove_stale_staging(parent: Path) -> None:
    """Release what dead builders' records list, then remove the staging directories under
    `parent` that no running builder's record holds (killed builders', or from before a reboot)."""
    clean_leftovers()
    held = held_by_live_builders("dir")
    for entry in parent.glob(f"{STAGING_PREFIX}*"):
        # A directory named after a running process is left alone too: an older clusterbake
        # sharing this cache holds its staging directories by that name only.
        pid = entry.name[len(STAGING_PREFIX):].split("-", 1)[0]
        if entry.is_dir() and str(entry) not in held and not (pid.isdigit() and pid_alive(int(pid))):
            log.info("removing the leftovers of a killed build: %s", entry)
            remove_staging(entry)


def remove_staging(work: Path) -> None:
    """Kill processes rooted in `work`, unmount everything below it, then delete it.

    The order matters: shutil.rmtree would descend into a leftover bind mount of /dev or
    /proc and delete the host's files, so it runs only once nothing is mounted below.
    """
    kill_processes_in(work)
    for mount_point in reversed(mounts_under(work)):
        run(["umount", "--lazy", mount_point], label="umount")
    left = mounts_under(work)
    if left:
        raise EnvironmentProblem(
            f"cannot remove {work}: still mounted: {', '.join(map(str, left))}",
            hint=f"umount them by hand, then rm -rf {work}",
        )
    shutil.rmtree(work, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
