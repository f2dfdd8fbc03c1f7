"""What /proc and /sys say about the host: mounts, processes and their roots, loop devices."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import time
from pathlib import Path

log = logging.getLogger("clusterbake.host")

_OCTAL_ESCAPE = re.compile(rb"\\([0-7]{3})")


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (None when no such process):
    tells a live pid from a reused one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def pid_alive(pid: int, started: str | None = None) -> bool:
    """Is process `pid` running (and, with `started`, still the process that started then)?"""
    now = start_time(pid)
    return now is not None and (started is None or now == started)


def mount_points() -> list[Path]:
    """Mount points in mount order (later ones may sit on top of earlier ones)."""
    points = []
    with open("/proc/self/mounts", "rb") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 1:
                # /proc/mounts escapes blanks, tabs, newlines and backslashes in paths as octal (\040).
                raw = _OCTAL_ESCAPE.sub(lambda m: bytes([int(m[1], 8)]), fields[1])
                points.append(Path(os.fsdecode(raw)))
    return points


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below `path` (symlinks resolved), in mount order."""
    base = Path(os.path.realpath(path))
    return [point for point in mount_points() if is_at_or_below(point, base)]


def processes_rooted_in(path: Path) -> list[int]:
    """Processes whose root directory is `path` or below it: chrooted commands left running."""
    base = Path(os.path.realpath(path))
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            root = Path(os.readlink(entry / "root"))
        except OSError:
            continue
        if is_at_or_below(root, base):
            found.append(int(entry.name))
    return found


def is_at_or_below(path: Path, base: Path) -> bool:
    return path == base or base in path.parents


def kill_processes_in(path: Path, grace: float = 3.0) -> list[int]:
    """TERM, then KILL, every process chrooted below `path`; return their pids."""
    pids = processes_rooted_in(path)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while processes_rooted_in(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not processes_rooted_in(path):
            break
    if pids:
        log.warning("killed %d process(es) left running in %s: %s", len(pids), path,
                    " ".join(map(str, pids)))
    return pids


def loop_backing_file(device: str) -> str | None:
    """The file behind /dev/loopN, or None when the device is free."""
    try:
        text = (Path("/sys/block") / Path(device).name / "loop" / "backing_file").read_text().strip()
    except OSError:
        return None
    # The kernel marks a backing file that was deleted meanwhile; the device is still ours to detach.
    return text.removesuffix(" (deleted)")
