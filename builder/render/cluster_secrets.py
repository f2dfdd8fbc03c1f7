"""The cluster's shared secrets, kept outside the repository (cluster.secrets_dir)."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from pathlib import Path

from builder.config.secretsdir import MUNGE_KEY, MUNGE_KEY_MAX_BYTES, make_private_dir, munge_key_problem
from builder.errors import InputError
from builder.input_files import read_bytes

MUNGE_KEY_BYTES = 1024


def munge_key(secrets_dir: Path) -> bytes:
    """The cluster's munge key: 1024 random bytes made on first use, the same bytes ever after.

    The directory is created 0700 and the key 0600 from the start (never written
    world-readable and tightened later); an existing key others can read is refused.
    """
    secrets_dir = Path(secrets_dir)
    make_private_dir(secrets_dir)
    path = secrets_dir / MUNGE_KEY
    if not os.path.lexists(path):
        _create(path, os.urandom(MUNGE_KEY_BYTES))
    problem = munge_key_problem(path)
    if problem is not None:
        raise InputError(f"{path.parent}: {problem[0]}", hint=problem[1])
    return read_bytes(path, str(path), MUNGE_KEY_MAX_BYTES)


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


DB_PASSWORD = "slurmdbd.pass"
DB_PASSWORD_RE = re.compile(r"[A-Za-z0-9]{16,128}")


def slurmdbd_password(secrets_dir: Path) -> str:
    """The password slurmdbd gives MariaDB (StoragePass): made on first use like the munge key, kept after.

    Letters and digits only, so it lands verbatim in slurmdbd.conf and in the SQL that makes the user.
    """
    secrets_dir = Path(secrets_dir)
    make_private_dir(secrets_dir)
    path = secrets_dir / DB_PASSWORD
    if not os.path.lexists(path):
        _create(path, (secrets.token_hex(24) + "\n").encode())
    info = os.lstat(path)
    fix = f"delete {path} to have a new one made (the controller then needs a new image)"
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path}: is not a regular file", hint=fix)
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise InputError(f"{path}: is readable by others (mode {stat.S_IMODE(info.st_mode):04o})",
                         hint=f"chmod 600 {path}")
    password = read_bytes(path, str(path), 256).decode(errors="replace").strip()
    if not DB_PASSWORD_RE.fullmatch(password):
        raise InputError(f"{path}: is not 16 to 128 letters and digits", hint=fix)
    return password
