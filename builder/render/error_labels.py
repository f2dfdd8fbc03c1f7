"""Name profiles and manifests by their place in the repository in error messages.

The cluster file's Reader names a file by its base name; `manifest.yaml` alone would not say
which overlay is wrong, so errors raised while reading one are re-labelled with its path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from builder.errors import InputError


@contextlib.contextmanager
def labelled(path: Path, label: str) -> Iterator[None]:
    """Within the block, an InputError starting `<file name>:` starts `<label>:` instead."""
    try:
        yield
    except InputError as exc:
        prefix = f"{path.name}:"
        if not exc.message.startswith(prefix):
            raise
        raise InputError(label + ":" + exc.message[len(prefix):], hint=exc.hint) from None
