"""Release what builds that died without cleaning up (SIGKILL, a crash) left behind.

Their resource records (`builder.process.record`) list it: processes still chrooted into their
mounts are killed, the mounts unmounted, the loop devices detached and the files removed, or
an error names the commands that will.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from builder.command import run
from builder.errors import EnvironmentProblem
from builder.process.procfs import is_at_or_below, kill_processes_in, loop_backing_file, mount_points, mounts_under
from builder.process.record import STATE_DIR, load_record, record_is_live

log = logging.getLogger("clusterbake.host")


def clean_leftovers() -> list[str]:
    """Release what builds that died without cleaning up left behind; return what was done.

    Raises EnvironmentProblem, naming the commands to run, when something cannot be released.
    """
    done: list[str] = []
    if not STATE_DIR.is_dir():
        return done
    for path in sorted(STATE_DIR.glob("*.json")):
        record = load_record(path)
        if not record or record_is_live(record):
            continue
        entries = record.get("entries", [])
        done += _release_entries(entries, source=path)
        path.unlink(missing_ok=True)
    for line in done:
        log.warning("cleaned up after a killed build: %s", line)
    return done


def _release_entries(entries: list[dict[str, Any]], *, source: Path) -> list[str]:
    done: list[str] = []
    failed: list[str] = []
    # Mount points and directories (a staging directory holds debootstrap's /proc and /dev mounts).
    holders = [Path(e["value"]) for e in entries if e.get("kind") in ("mount", "dir")]
    for holder in holders:
        done += [f"killed process {pid} chrooted in {holder}" for pid in kill_processes_in(holder)]
    # Unmount everything at or below a recorded mount point or directory, most recent first.
    for point in reversed(mount_points()):
        if any(is_at_or_below(point, h) for h in holders):
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
