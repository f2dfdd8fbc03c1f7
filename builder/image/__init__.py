"""The image engine: partitions, loop devices, mtools, chroot, resizing and integrity checks.

Every resource it takes on the host (loop device, mount, scratch directory, partial output)
is released in reverse order on success, on an exception and on SIGINT/SIGTERM, and written
down under /run/clusterbake while held (the process layer, `builder/process/`), so that
`clean_leftovers()` can release what a SIGKILLed build left behind.
"""

from builder.image.boot import BootPartition
from builder.image.checkpoints import set_checkpoint_hook
from builder.image.chroot import Chroot
from builder.image.layout import Layout, Partition, read_layout
from builder.image.output import atomic_output
from builder.image.resize import grow_image, shrink_image
from builder.image.safe_paths import UnsafePath
from builder.image.sd_card import OpenImage, open_image
from builder.process.recovery import clean_leftovers

__all__ = [
    "BootPartition",
    "Chroot",
    "Layout",
    "OpenImage",
    "Partition",
    "UnsafePath",
    "atomic_output",
    "clean_leftovers",
    "grow_image",
    "open_image",
    "read_layout",
    "set_checkpoint_hook",
    "shrink_image",
]
