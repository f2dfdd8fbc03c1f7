"""How built artefacts enter the cache: keyed by their inputs, locked, renamed into place.

Two builders may run at once (two test sessions, `make demo` next to `make test`), and a
build may be killed at any moment. So every entry is made in a private staging directory
under an fcntl lock and renamed into place only when complete: a file at its final name is
always a finished one. Staging directories carry the builder's pid, so the next builder can
tell a dead builder's leftovers (including mounts debootstrap made) from a live one's.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from builder.command import run
from builder.errors import EnvironmentProblem

log = logging.getLogger("clusterbake.demo")

STAGING_PREFIX = "staging-"


def recipe_key(recipe: Mapping[str, object]) -> str:
    """A short, stable hash of a recipe: the cache key of what it produces."""
    text = json.dumps(recipe, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextlib.contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive fcntl lock on `lock_file` (created if absent) for the block."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def install(source: Path, dest: Path) -> None:
    """Move a finished file or directory to its final name in one atomic rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if source.is_file():
        with open(source, "rb") as handle:
            os.fsync(handle.fileno())
    os.replace(source, dest)


@contextlib.contextmanager
def staging_dir(parent: Path) -> Iterator[Path]:
    """A private work directory under `parent`, removed (mounts and processes first) on exit.

    It lives next to the cache rather than in /tmp so that the final rename stays on one
    filesystem, and /tmp may be too small for a root filesystem.
    """
    parent.mkdir(parents=True, exist_ok=True)
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
        if pid_text.isdigit() and not _alive(int(pid_text)):
            log.info("removing the leftovers of a killed build: %s", entry)
            remove_staging(entry)


def remove_staging(work: Path) -> None:
    """Kill processes rooted in `work`, unmount everything below it, then delete it.

    The order matters: shutil.rmtree would descend into a leftover bind mount of /dev or
    /proc and delete the host's files, so it runs only once nothing is mounted below.
    """
    _kill_processes_rooted_in(work)
    for mount_point in sorted(mounts_under(work), key=lambda p: len(p.parts), reverse=True):
        run(["umount", "--lazy", mount_point], label="umount")
    left = mounts_under(work)
    if left:
        raise EnvironmentProblem(
            f"cannot remove {work}: still mounted: {', '.join(map(str, left))}",
            hint=f"umount them by hand, then rm -rf {work}",
        )
    shutil.rmtree(work, ignore_errors=True)


def mounts_under(directory: Path) -> list[Path]:
    """Mount points at or below `directory`, from /proc/mounts."""
    base = os.path.realpath(directory)
    found = []
    with open("/proc/mounts") as mounts:
        for line in mounts:
            # /proc/mounts escapes blanks in paths as octal (\040).
            point = line.split()[1].encode().decode("unicode_escape")
            if point == base or point.startswith(base + "/"):
                found.append(Path(point))
    return found


def _kill_processes_rooted_in(directory: Path) -> None:
    base = os.path.realpath(directory)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            root = os.readlink(proc / "root")
        except OSError:
            continue
        if root == base or root.startswith(base + "/"):
            log.info("killing process %s left running in %s", proc.name, base)
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
