"""Step logging and byte progress.

`step("…")` logs the start and end of a long step with its elapsed time, nested steps
indented. `progress(total, label)` shows a tqdm bar on a terminal and plain log lines
elsewhere (CI, pipes), or nothing with --quiet.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from typing import Protocol

from tqdm import tqdm

log = logging.getLogger("clusterbake")

_depth = 0
_quiet = False


def configure(*, quiet: bool = False, debug: bool = False) -> None:
    """Set up logging for the CLI: one line per message on stderr."""
    global _quiet
    _quiet = quiet
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("clusterbake")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


@contextlib.contextmanager
def step(text: str) -> Iterator[None]:
    """Log `text`, run the block, log how long it took (or that it failed)."""
    global _depth
    indent = "  " * _depth
    log.info("%s==> %s", indent, text)
    start = time.monotonic()
    _depth += 1
    try:
        yield
    except BaseException:
        log.info("%s<== %s: failed after %.1fs", indent, text, time.monotonic() - start)
        raise
    finally:
        _depth -= 1
    log.info("%s<== %s (%.1fs)", indent, text, time.monotonic() - start)


class Progress(Protocol):
    def update(self, n: int) -> object: ...


class _LogProgress:
    """Progress as log lines every 10 %, for when stderr is not a terminal."""

    def __init__(self, total: int | None, label: str) -> None:
        self.total, self.label, self.done, self.next_mark = total, label, 0, 10

    def update(self, n: int) -> None:
        self.done += n
        if self.total and self.done * 100 >= self.next_mark * self.total:
            log.info("    %s: %d%% of %d MiB", self.label, self.next_mark, self.total >> 20)
            self.next_mark += 10


@contextlib.contextmanager
def progress(total: int | None, label: str, initial: int = 0) -> Iterator[Progress]:
    """A byte counter shown as a tqdm bar, log lines or nothing."""
    if _quiet or not log.isEnabledFor(logging.INFO):
        yield _NullProgress()
    elif sys.stderr.isatty():
        with tqdm(
            total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
            leave=False,
        ) as bar:
            yield bar
    else:
        counter = _LogProgress(total, label)
        counter.update(initial)
        yield counter


class _NullProgress:
    def update(self, n: int) -> None:
        pass
