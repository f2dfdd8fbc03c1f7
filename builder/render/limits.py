"""What one render may take of the process: CPU time and address space, as numbers.

Templates are code from folders someone else may have written, run by `check` in the user's own
process. The sandbox (sandbox.py) refuses what would build a huge value before it is built and
caps each output; these two are the backstop for what it cannot see coming:

- CPU: each template render (a file, a file name, a manifest expression) gets RENDER_CPU_SECONDS
  of CPU time (ITIMER_PROF, user + system), after which it is stopped with RenderTimeout: two
  nested loops of 100,000 end in two seconds, not when killed.
- memory: while a plan renders, the process's address space may grow by at most RENDER_MEMORY
  (a soft RLIMIT_AS, put back afterwards), so a value the sandbox did not foresee ends in a
  MemoryError instead of the machine's swap.

Both are cheap (a few system calls), so every render is bounded in process, with no child to start.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import threading
from collections.abc import Iterator
from types import FrameType

RENDER_CPU_SECONDS = 2.0
RENDER_MEMORY = 1 << 30        # bytes of address space a plan's rendering may add


class RenderTimeout(Exception):
    """A template used up its CPU time."""

    def __init__(self) -> None:
        super().__init__(f"rendering took more than {RENDER_CPU_SECONDS:g} s of CPU time")


@contextlib.contextmanager
def cpu_budget(seconds: float = RENDER_CPU_SECONDS) -> Iterator[None]:
    """Raise RenderTimeout inside the block once it has used `seconds` of CPU time.

    Only the main thread receives signals; elsewhere (and inside an outer budget) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getitimer(signal.ITIMER_PROF)[0] > 0:
        yield
        return
    active = True

    def expired(signum: int, frame: FrameType | None) -> None:
        if active:
            raise RenderTimeout()

    previous = signal.signal(signal.SIGPROF, expired)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        active = False      # a SIGPROF already on its way now does nothing
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def _address_space() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


@contextlib.contextmanager
def memory_budget(extra: int = RENDER_MEMORY) -> Iterator[None]:
    """Within the block the address space may grow by at most `extra` bytes (MemoryError beyond)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    try:
        limit = _address_space() + extra
    except (OSError, ValueError, IndexError):
        limit = resource.RLIM_INFINITY      # no /proc: the sandbox's own bounds still hold
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if limit == resource.RLIM_INFINITY or (soft != resource.RLIM_INFINITY and soft <= limit):
        yield
        return
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
