"""What a build holds on the host, written down so that a SIGKILLed build can be cleaned up later.

Each process keeps one JSON file, /run/clusterbake/<pid>.json, listing its loop devices, mounts,
scratch directories and partial output files while it holds them. A record whose process is
gone (or whose pid now belongs to another process) is a leftover: `clean_leftovers()` kills the
processes still chrooted into its mounts, unmounts them, detaches its loop devices and removes
its files, or says which commands will.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from builder.command import run
from builder.errors import EnvironmentProblem

log = logging.getLogger("clusterbake.image")

STATE_DIR = Path("/run/clusterbake")
_HELD = {signal.SIGINT, signal.SIGTERM}
_scratch_counter = 0
_OCTAL_ESCAPE = re.compile(rb"\\([0-7]{3})")


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Defer SIGINT/SIGTERM while a resource is acquired and registered for release (or released).

    Without this a signal arriving between `losetup` returning and the release callback being
    registered would leak the device; deferred, it arrives a moment later and unwinds it.
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot: tells a live pid from a reused one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _record_path() -> Path:
    return STATE_DIR / f"{os.getpid()}.json"


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save(entries: list[dict[str, str]]) -> None:
    path = _record_path()
    if not entries:
        path.unlink(missing_ok=True)
        return
    try:
        STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    except PermissionError as exc:
        raise EnvironmentProblem(f"cannot create {STATE_DIR}", hint="run the build as root") from exc
    record = {"pid": os.getpid(), "start": _start_time(os.getpid()), "entries": entries}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)


def remember(kind: str, value: str, **extra: str) -> None:
    """Note that this process now holds a resource (`loop`, `mount`, `dir` or `file`)."""
    entries = _load(_record_path()).get("entries", [])
    entries.append({"kind": kind, "value": value, **extra})
    _save(entries)


def forget(kind: str, value: str) -> None:
    """The resource was released: drop it from this process's record."""
    entries = [e for e in _load(_record_path()).get("entries", [])
               if not (e.get("kind") == kind and e.get("value") == value)]
    _save(entries)


@contextlib.contextmanager
def scratch_dir(purpose: str) -> Iterator[Path]:
    """An empty directory with a recognisable name under /run/clusterbake, removed afterwards."""
    global _scratch_counter
    _scratch_counter += 1
    path = STATE_DIR / f"{purpose}-{os.getpid()}-{_scratch_counter}"
    with signals_held():
        remember("dir", str(path))
        path.mkdir(mode=0o755, parents=True)
    try:
        yield path
    finally:
        with signals_held():
            _remove_tree_if_unmounted(path)
            forget("dir", str(path))


def _remove_tree_if_unmounted(path: Path) -> None:
    """Remove a scratch directory, never descending into anything still mounted below it."""
    if mounts_under(path):
        log.warning("%s: still mounted; left in place", path)
        return
    if path.is_dir():
        run(["rm", "-rf", "--one-file-system", "--", path], label="rm")


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
    return [point for point in mount_points() if _is_at_or_below(point, base)]


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
        if _is_at_or_below(root, base):
            found.append(int(entry.name))
    return found


def _is_at_or_below(path: Path, base: Path) -> bool:
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


def _live(record: dict[str, Any]) -> bool:
    pid = record.get("pid")
    return isinstance(pid, int) and _start_time(pid) is not None and _start_time(pid) == record.get("start")


def clean_leftovers() -> list[str]:
    """Release what builds that died without cleaning up left behind; return what was done.

    Raises EnvironmentProblem, naming the commands to run, when something cannot be released.
    """
    done: list[str] = []
    if not STATE_DIR.is_dir():
        return done
    for path in sorted(STATE_DIR.glob("*.json")):
        record = _load(path)
        if not record or _live(record):
            continue
        entries = record.get("entries", [])
        done += _release_entries(entries, source=path)
        path.unlink(missing_ok=True)
    for line in done:
        log.warning("cleaned up after a killed build: %s", line)
    return done


def _release_entries(entries: list[dict[str, str]], *, source: Path) -> list[str]:
    done: list[str] = []
    failed: list[str] = []
    recorded_mounts = [Path(e["value"]) for e in entries if e.get("kind") == "mount"]
    for mount in recorded_mounts:
        done += [f"killed process {pid} chrooted in {mount}" for pid in kill_processes_in(mount)]
    # Unmount everything at or below a recorded mount point, most recent first.
    for point in reversed(mount_points()):
        if any(_is_at_or_below(point, m) for m in recorded_mounts):
            if run(["umount", point], label="umount", check=False).returncode == 0:
                done.append(f"unmounted {point}")
            else:
                failed.append(f"umount --lazy {point}")
    for entry in reversed(entries):
        kind, value = entry.get("kind"), entry.get("value", "")
        if kind == "loop" and loop_backing_file(value) == entry.get("backing"):
            if run(["losetup", "--detach", value], label="losetup", check=False).returncode == 0:
                done.append(f"detached {value} ({entry.get('backing')})")
            else:
                failed.append(f"losetup --detach {value}")
        elif kind == "file" and Path(value).exists():
            Path(value).unlink()
            done.append(f"removed partial output {value}")
        elif kind == "dir" and Path(value).is_dir():
            if mounts_under(Path(value)):
                failed.append(f"umount --recursive {value}")
            else:
                run(["rm", "-rf", "--one-file-system", "--", value], label="rm")
                done.append(f"removed {value}")
    if failed:
        raise EnvironmentProblem(
            f"a killed build left resources that could not be released ({source})",
            hint="; ".join([*failed, f"rm {source}"]),
        )
    return done
