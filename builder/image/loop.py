"""Loop devices over one partition of an image file, attached with an explicit offset and size.

No partition scanning (`losetup -P`) and no udev: neither works on every build host.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from builder.command import output, run
from builder.process.procfs import loop_backing_file
from builder.process.record import forget, remember
from builder.process.signals import signals_held

log = logging.getLogger("clusterbake.image")


@contextlib.contextmanager
def attached(image: Path, offset: int, size: int, *, read_only: bool = False) -> Iterator[Path]:
    """Attach bytes [offset, offset+size) of `image` to a free loop device; detach afterwards."""
    backing = str(image.resolve())
    with contextlib.ExitStack() as stack:
        with signals_held():
            argv = ["losetup", "--offset", str(offset), "--sizelimit", str(size), "--find", "--show"]
            device = output([*argv, *(["--read-only"] if read_only else []), backing], label="losetup").strip()
            remember("loop", device, backing=backing)
            stack.callback(detach, device)
        yield Path(device)


def detach(device: str) -> None:
    with signals_held():
        run(["losetup", "--detach", device], label="losetup")
        # The kernel may finish the detach a moment later when something (blkid, a scan) still
        # has the device open; wait so that callers see the device free.
        deadline = time.monotonic() + 5
        while loop_backing_file(device) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        forget("loop", device)


def loops_of(image: Path) -> list[str]:
    """Loop devices currently backed by `image` (an open image must not be resized)."""
    text = output(["losetup", "--noheadings", "--output", "NAME", "--associated", str(image.resolve())],
                  label="losetup")
    return text.split()
