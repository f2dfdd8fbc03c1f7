"""Builds write a temporary file that is renamed onto the output path only when complete."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from builder.cache import install
from builder.host.record import forget, remember
from builder.host.signals import signals_held


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
