"""Builds write a temporary file that is renamed onto the output path only when complete."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from builder.cache import install
from builder.process.procfs import pid_alive
from builder.process.record import forget, remember
from builder.process.signals import signals_held


def partial_path(final: Path) -> Path:
    """`.<name>.partial-<pid>` beside `final`: recognisably unfinished, never mistaken for output."""
    return final.with_name(f".{final.name}.partial-{os.getpid()}")


@contextlib.contextmanager
def atomic_output(final: Path) -> Iterator[Path]:
    """Yield a temporary path in `final`'s directory; rename it onto `final` if the block succeeds,
    remove it on any failure or interrupt (and, after a SIGKILL, in the next `clean_leftovers()`)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(final)
    with signals_held():
        remember("file", str(tmp))
    try:
        yield tmp
        with signals_held():
            install(tmp, final)  # data fsync'd first: after a crash `final` is whole or absent
            forget("file", str(tmp))
    finally:
        with signals_held():
            tmp.unlink(missing_ok=True)
            forget("file", str(tmp))


@contextlib.contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """A private directory beside `final` (`.<name>.partial-<pid>`); when the block succeeds it
    replaces `final` whole, the old one removed: readers see the old tree or the new, never a mix,
    nor none (no signal between the two renames). Leftovers of dead builders are removed first."""
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in [*final.parent.glob(f".{final.name}.partial-*"), *final.parent.glob(f".{final.name}.old-*")]:
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    work = partial_path(final)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        yield work
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        with signals_held():
            if final.exists():
                os.replace(final, old)
            os.replace(work, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
