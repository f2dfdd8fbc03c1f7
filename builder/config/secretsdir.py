"""The rules for `secrets_dir`: a private directory (0700, owned by the user) or a path where one can be made.

Checked when the cluster file is loaded, so `check` finds a wrong setting; the directory itself is
made (0700, by `make_private_dir`) only when a build first needs the munge key.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

MUNGE_KEY = "munge.key"
MUNGE_KEY_MIN_BYTES = 32    # munged refuses shorter keys
MUNGE_KEY_MAX_BYTES = 1 << 16


def secrets_dir_problem(path: Path) -> tuple[str, str] | None:
    """(problem, fix) when `path` cannot be the cluster's private secrets directory, else None."""
    return _own_problem(path) or _ancestors_problem(path)


def _ancestors_problem(path: Path) -> tuple[str, str] | None:
    """As OpenSSH checks the folders above a key: each must be owned by root or by you, and writable
    by no one else, or whoever can write there can put a folder of their own in the secrets' place.
    A sticky folder (/tmp) is allowed: others cannot rename or remove what you own in it."""
    try:
        real = path.resolve()
    except (RuntimeError, OSError):
        return None     # a symlink loop: _own_problem has named it
    me = os.geteuid()
    for parent in real.parents:
        try:
            info = os.stat(parent)
        except OSError:
            continue    # not there yet: it will be made 0700
        mode = stat.S_IMODE(info.st_mode)
        if info.st_uid not in (0, me):
            return (f"lies under {parent}, owned by uid {info.st_uid}, who could replace what is in it",
                    "keep secrets_dir under folders owned by you or root, e.g. ~/.config/clusterbake/secrets/NAME")
        if mode & 0o022 and not mode & stat.S_ISVTX:
            return (f"lies under {parent}, which others can write to (mode {mode:04o}) and so replace what is in it",
                    f"chmod go-w {parent}, or keep secrets_dir under ~/.config/clusterbake/secrets/NAME")
    return None


def _own_problem(path: Path) -> tuple[str, str] | None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return _parent_problem(path)
    except NotADirectoryError:
        return _parent_problem(path)
    except OSError as exc:
        return f"cannot be examined: {exc.strerror}", "choose a directory of your own"
    if not stat.S_ISDIR(info.st_mode):
        return "is a file, not a directory", "point secrets_dir at a directory (it is created if absent)"
    if info.st_uid != os.geteuid():
        return (f"is owned by uid {info.st_uid}, not by you (uid {os.geteuid()})",
                "use a directory of your own, e.g. ~/.config/clusterbake/secrets/NAME")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        return (f"is shared (mode {mode:04o}); it must be private (0700)",
                f"chmod 700 {path}, or choose a directory of its own")
    return munge_key_problem(path / MUNGE_KEY)


def _parent_problem(path: Path) -> tuple[str, str] | None:
    for parent in path.parents:
        try:
            info = os.stat(parent)
        except FileNotFoundError:
            continue
        except OSError as exc:
            return f"cannot be created: {parent}: {exc.strerror}", "choose a directory of your own"
        if not stat.S_ISDIR(info.st_mode):
            return f"lies under {parent}, which is a file", "choose a path whose parents are directories"
        return None
    return None


def munge_key_problem(path: Path) -> tuple[str, str] | None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(info.st_mode):
        return (f"{path.name} is a directory, not the key",
                f"remove the directory {path} to have a new key generated (every node then needs new images)")
    if not stat.S_ISREG(info.st_mode):
        return f"{path.name} is not a regular file", f"remove {path} to have a new key generated"
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        return f"{path.name} is readable by others (mode {mode:04o})", f"chmod 600 {path}"
    if not MUNGE_KEY_MIN_BYTES <= info.st_size <= MUNGE_KEY_MAX_BYTES:
        size = "too short" if info.st_size < MUNGE_KEY_MIN_BYTES else "too long"
        return (f"{path.name} is {info.st_size} bytes, {size} for a munge key ({MUNGE_KEY_MIN_BYTES} to "
                f"{MUNGE_KEY_MAX_BYTES})", f"delete {path} to have a new one generated "
                                           "(every node then needs new images)")
    return None


def make_private_dir(path: Path) -> None:
    """Create `path` (and missing parents) 0700; an existing directory is left as it is."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
