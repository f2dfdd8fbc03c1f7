"""How artefacts enter the cache: keyed by their inputs, locked, renamed into place.

Two builders may run at once (two test sessions, `make demo` next to `make test`), and a
build may be killed at any moment. So every entry is made in a private staging directory
(or a temporary file) under an fcntl lock and renamed into place only when complete and
fsync'd: a file at its final name is always a finished one, even after a crash. Staging
directories carry the builder's pid, so the next builder can tell a dead builder's leftovers
(including mounts debootstrap made) from a live one's.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from builder.command import run
from builder.errors import EnvironmentProblem
from builder.host.procfs import kill_processes_in, mounts_under, pid_alive

log = logging.getLogger("clusterbake.cache")

STAGING_PREFIX = "staging-"


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
def locked(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive fcntl lock on `lock_file` (created if absent) for the block."""
    make_dirs(lock_file.parent)
    # The lock file stays afterwards: deleting it would let a waiter lock an unlinked inode.
    with open(lock_file, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("    another clusterbake holds %s; waiting for it", lock_file)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
    make_dirs(parent)
    remove_stale_staging(parent)
    work = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=parent))
    try:
        yield work
    finally:
        remove_staging(work)


def remove_stale_staging(parent: Path) -> None:
    """Remove staging directories whose builder is dead (killed, e.g. by SIGKILL)."""
    for entry in parent.glob(f"{STAGING_PREFIX}*"):
        pid_text = entry.name[len(STAGING_PREFIX):].split("-", 1)[0]
        if pid_text.isdigit() and not pid_alive(int(pid_text)):
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
