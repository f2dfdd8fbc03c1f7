"""What a build holds on the host, written down so that a SIGKILLed build can be cleaned up later.

Each process keeps one JSON file, /run/clusterbake/<pid>.json, listing its loop devices, mounts,
scratch and cache staging directories and partial output files while it holds them. A record
whose process is gone (or whose pid now belongs to another process) is a leftover, released by
`builder.process.recovery.clean_leftovers()`; a staging directory no running builder's record holds
(its builder was killed, or a reboot emptied /run) is one too (`builder.cache`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from builder.command import run
from builder.errors import EnvironmentProblem
from builder.process.procfs import mounts_under, pid_alive, start_time
from builder.process.signals import signals_held

log = logging.getLogger("clusterbake.host")

STATE_DIR = Path("/run/clusterbake")
_scratch_counter = 0


def _record_path() -> Path:
    return STATE_DIR / f"{os.getpid()}.json"


def load_record(path: Path) -> dict[str, Any]:
    """A record file's contents; {} when unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record_is_live(record: dict[str, Any]) -> bool:
    """Does the process that wrote `record` still run (the same process, not a reused pid)?"""
    pid = record.get("pid")
    return isinstance(pid, int) and pid_alive(pid, record.get("start"))


def held_by_live_builders(kind: str) -> set[str]:
    """The resources of `kind` that the records of running builders (this one included) hold."""
    if not STATE_DIR.is_dir():
        return set()
    held: set[str] = set()
    for path in STATE_DIR.glob("*.json"):
        record = load_record(path)
        if record and record_is_live(record):
            held.update(str(e.get("value")) for e in record.get("entries", []) if e.get("kind") == kind)
    return held


def _save(entries: list[dict[str, str]]) -> None:
    path = _record_path()
    if not entries:
        path.unlink(missing_ok=True)
        return
    try:
        STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    except PermissionError as exc:
        raise EnvironmentProblem(f"cannot create {STATE_DIR}", hint="run the build as root") from exc
    record = {"pid": os.getpid(), "start": start_time(os.getpid()), "entries": entries}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)


def remember(kind: str, value: str, **extra: str) -> None:
    """Note that this process now holds a resource (`loop`, `mount`, `dir` or `file`)."""
    entries = load_record(_record_path()).get("entries", [])
    entries.append({"kind": kind, "value": value, **extra})
    _save(entries)


def forget(kind: str, value: str) -> None:
    """The resource was released: drop it from this process's record."""
    entries = [e for e in load_record(_record_path()).get("entries", [])
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
