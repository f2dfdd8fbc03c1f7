"""SIGINT and SIGTERM lead into the same unwinding as an exception, and wait while a resource is taken.

The first signal raises Interrupted where the program is; a second one during cleanup
is ignored so that the ExitStacks can finish releasing loop devices and mounts.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

from builder.errors import Interrupted

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(f"interrupted by {signal.Signals(signum).name}; cleaned up", signum)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGINT/SIGTERM into Interrupted for the duration of the block."""
    previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    for sig in _SIGNALS:
        signal.signal(sig, _raise_interrupted)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Defer SIGINT/SIGTERM while a resource is acquired and registered for release (or released).

    Without this a signal arriving between `losetup` returning and the release callback being
    registered would leak the device; deferred, it arrives a moment later and unwinds it.
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, set(_SIGNALS))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
