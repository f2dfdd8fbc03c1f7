"""Mounts and bind mounts, each recorded while it exists and unmounted in reverse order."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from builder.command import run
from builder.errors import CommandFailed
from builder.process.procfs import kill_processes_in
from builder.process.record import forget, remember
from builder.process.signals import signals_held

log = logging.getLogger("clusterbake.image")


@contextlib.contextmanager
def mounted(source: str | Path, target: Path, *, fstype: str | None = None,
            options: Sequence[str] = (), bind: bool = False) -> Iterator[Path]:
    """Mount `source` on `target` for the block; sync and unmount afterwards."""
    argv: list[str] = ["mount"]
    if bind:
        argv.append("--bind")
    if fstype:
        argv += ["-t", fstype]
    if options:
        argv += ["-o", ",".join(options)]
    with contextlib.ExitStack() as stack:
        with signals_held():
            remember("mount", str(target))
            stack.callback(forget, "mount", str(target))
            run([*argv, str(source), str(target)], label="mount")
            stack.callback(unmount, target)
        yield target


def unmount(target: Path) -> None:
    """sync, then unmount; processes still chrooted below `target` are killed first if it is busy."""
    with signals_held():
        run(["sync", "--file-system", target], label="sync", check=False)
        if run(["umount", target], label="umount", check=False).returncode == 0:
            return
        kill_processes_in(target)
        try:
            run(["umount", target], label="umount")
        except CommandFailed:
            # Last resort so that the build can still release its loop device; the kernel
            # finishes the unmount when the last user goes away.
            log.warning("%s: busy; detaching it lazily", target)
            run(["umount", "--lazy", target], label="umount")
