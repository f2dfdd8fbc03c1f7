"""The cluster's shared secrets, kept outside the repository (cluster.secrets_dir)."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from builder.errors import InputError

MUNGE_KEY_BYTES = 1024
MUNGE_KEY_MIN_BYTES = 32   # munged refuses shorter keys


def munge_key(secrets_dir: Path) -> bytes:
    """The cluster's munge key: 1024 random bytes made on first use, the same bytes ever after.

    The directory is created 0700 and the key 0600 from the start (never written
    world-readable and tightened later); an existing key others can read is refused.
    """
    secrets_dir = Path(secrets_dir)
    secrets_dir.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        secrets_dir.mkdir(mode=0o700)
    path = secrets_dir / "munge.key"
    if not path.exists():
        _create(path, os.urandom(MUNGE_KEY_BYTES))
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise InputError(f"{path}: the munge key is readable by others (mode {mode:04o})",
                         hint=f"chmod 600 {path}")
    key = path.read_bytes()
    if len(key) < MUNGE_KEY_MIN_BYTES:
        raise InputError(f"{path}: {len(key)} bytes is too short for a munge key (at least {MUNGE_KEY_MIN_BYTES})",
                         hint=f"delete {path} to have a new one generated (every node then needs new images)")
    return key


def _create(path: Path, data: bytes) -> None:
    """Write to a private temporary file, then link it into place: never a partial or public key."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        # link() fails if another build made the key meanwhile; theirs wins and is read back.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
