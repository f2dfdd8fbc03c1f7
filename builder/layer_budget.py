"""The layer cache's size budget: least recently used layers go first, the current build's never.

Every layer is a whole root filesystem (0.5–1 GiB on disk), keyed by its inputs: a board's is a
sparse image (`<key>.img`), a container's role root a tar (`lxc-<key>.tar`), side by side in
`role-bases/`. Each profile edit or new base image leaves the old ones behind: on a machine that
builds often the cache would fill the disk. Each time a role base (a board's or a container's) is
taken from the cache, layers are removed, least recently used first, until those left take at most
$CLUSTERBAKE_LAYER_CACHE_GIB (default 16) on disk. "Used" is the layer file's modification time: a
build touches every layer of the role's stack. A layer used since this process started (this
build's, or this test session's) is never removed, even over the budget: the next role of the
same build would redo it; nor is one whose lock another builder holds.
A reader that found a layer a moment before another build pruned it keeps reading it (an open
file outlives its name); only two builds racing over a budget smaller than their stacks could
make one of them rebuild a layer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from builder.cache import locked
from builder.settings import settings

log = logging.getLogger("clusterbake")

VARIABLE = "CLUSTERBAKE_LAYER_CACHE_GIB"
LAYER_FOLDER = "role-bases"   # in the cache: every layer, the budget's whole domain
LAYER_SUFFIXES = (".img", ".tar")   # a board's layer image, a container's role root
STARTED = time.time()   # this process's builds use layers from now on


def budget_bytes() -> int:
    """$CLUSTERBAKE_LAYER_CACHE_GIB in bytes (a whole number, 0 keeps only the current build's)."""
    return int(settings().layer_cache_gib) << 30


def mark_used(layers: Iterable[Path]) -> None:
    """Record that a build uses these layer images now."""
    for layer in layers:
        with contextlib.suppress(FileNotFoundError):
            os.utime(layer)


def take_layers(stack: Sequence[Path], budget: int) -> None:
    """A build takes these layers (one folder's) now: mark them used, then trim their folder to `budget`."""
    mark_used(stack)
    prune(stack[-1].parent, budget)


@dataclass(frozen=True)
class Pruned:
    removed: tuple[Path, ...]
    freed: int      # bytes on disk
    kept: int       # bytes on disk left in the folder's layers


def prune(folder: Path, budget: int, used_since: float = STARTED) -> Pruned:
    """Remove the least recently used layers (and their records) of `folder` beyond `budget`
    bytes on disk; never one used since `used_since` (a time.time()), nor one another builder locks."""
    entries = sorted(_layers(folder), key=lambda e: e[1].st_mtime)
    total = sum(_on_disk(stat) for _, stat in entries)
    removed, freed = [], 0
    for image, stat in entries:
        if total - freed <= budget:
            break
        if stat.st_mtime >= used_since:
            break
        with locked(image.with_name(f"{image.name}.lock"), wait=False) as free:
            if not free:
                continue
            image.unlink(missing_ok=True)
            image.with_suffix(".json").unlink(missing_ok=True)
        removed.append(image)
        freed += _on_disk(stat)
    if removed:
        log.info("  layer cache over %d GiB: removed %d least recently used layer(s), %.1f GiB freed "
                 "(%s sets the budget)", budget >> 30, len(removed), freed / (1 << 30), VARIABLE)
    return Pruned(tuple(removed), freed, total - freed)


def _layers(folder: Path) -> Iterator[tuple[Path, os.stat_result]]:
    for layer in folder.glob("*"):
        if layer.suffix in LAYER_SUFFIXES:
            with contextlib.suppress(FileNotFoundError):
                stat = layer.stat()
                yield layer, stat


def _on_disk(stat: os.stat_result) -> int:
    return stat.st_blocks * 512
