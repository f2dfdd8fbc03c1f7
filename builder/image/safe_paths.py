"""Safe access to files inside a mounted image root.

Every path is resolved here, one component at a time, the way the kernel would resolve it
inside a chroot: an absolute symlink target starts again at the image root, not at the host's.
Anything that would leave the root (`..` past it, a symlink loop such as an `/etc -> /etc`
link) is refused, so no image can make a build write to the host. Files are then opened
component by component with O_NOFOLLOW, so a link swapped in after resolution is refused too.
Owners are given by name and looked up in the image's own /etc/passwd and /etc/group: the
host's ids differ (munge is 990 in the image and something else, or nothing, on the host).
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import stat
from collections import deque
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from builder.errors import InputError

MAX_SYMLINKS = 40  # as the kernel's limit for one lookup


class UnsafePath(InputError):
    """A path inside the image resolves outside it."""


def _parts(path: str | PurePosixPath) -> list[str]:
    return [p for p in PurePosixPath(path).parts if p not in ("/", ".", "")]


def resolve(root: Path, path: str, *, follow_final: bool = True) -> Path:
    """The host path of `path` inside `root`, with every symlink resolved within the root.

    Components that don't exist yet are kept as they are (a file about to be created).
    """
    pending = deque(_parts(path))
    done: list[str] = []
    links = 0
    while pending:
        part = pending.popleft()
        if part == "..":
            if not done:
                raise UnsafePath(f"{path}: resolves outside the image root", hint=_HINT)
            done.pop()
            continue
        current = root.joinpath(*done, part)
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            done.append(part)
            continue
        if stat.S_ISLNK(info.st_mode) and (pending or follow_final):
            links += 1
            if links > MAX_SYMLINKS:
                raise UnsafePath(f"{path}: too many symlinks (a loop, e.g. a link to itself) inside the image",
                                 hint=_HINT)
            target = os.readlink(current)
            if target.startswith("/"):
                done = []
            pending.extendleft(reversed(_parts(target)))
            continue
        if pending and not stat.S_ISDIR(info.st_mode):
            raise InputError(f"{path}: /{'/'.join([*done, part])} is not a directory inside the image")
        done.append(part)
    return root.joinpath(*done)


_HINT = "the image contains a symlink pointing outside it; use an unmodified base image"


def _relative(root: Path, path: str, *, follow_final: bool = True) -> list[str]:
    parts = list(resolve(root, path, follow_final=follow_final).relative_to(root).parts)
    if not parts:
        raise InputError(f"{path}: names the image root itself, not a file in it")
    return parts


@contextlib.contextmanager
def _directory_fd(root: Path, parts: list[str], *, create: tuple[int, int, int] | None = None) -> Iterator[int]:
    """An fd of root/parts, opened with O_NOFOLLOW at each step; missing dirs made when `create`
    gives (mode, uid, gid)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts:
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
            try:
                child = os.open(part, flags, dir_fd=fd)
            except FileNotFoundError:
                if create is None:
                    raise
                mode, uid, gid = create
                os.mkdir(part, mode, dir_fd=fd)
                child = os.open(part, flags, dir_fd=fd)
                os.fchown(child, uid, gid)
                os.fchmod(child, mode)
            except OSError as exc:
                raise UnsafePath(f"/{'/'.join(parts)}: cannot open {part!r} without following a link ({exc})",
                                 hint=_HINT) from exc
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def write_file(root: Path, path: str, data: bytes, *, mode: int, uid: int, gid: int,
               dir_mode: int = 0o755, dir_uid: int = 0, dir_gid: int = 0) -> Path:
    """Write `data` to `path` inside the image atomically (temp file + rename) with mode and owner."""
    parts = _relative(root, path)
    with _directory_fd(root, parts[:-1], create=(dir_mode, dir_uid, dir_gid)) as dirfd:
        name = parts[-1]
        tmp = f".{name}.clusterbake-{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dirfd)
        try:
            with os.fdopen(fd, "wb", closefd=False) as stream:
                stream.write(data)
            # chown first: it clears set-id bits that fchmod then sets.
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
        except BaseException:
            os.close(fd)
            os.unlink(tmp, dir_fd=dirfd)
            raise
        os.close(fd)
        os.rename(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
    return root.joinpath(*parts)


def read_file(root: Path, path: str) -> bytes:
    """The bytes of `path` inside the image (symlinks resolved within the root)."""
    parts = _relative(root, path)
    try:
        with _directory_fd(root, parts[:-1]) as dirfd:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dirfd)
            with os.fdopen(fd, "rb") as stream:
                return stream.read()
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such file in the image") from exc


def make_dir(root: Path, path: str, *, mode: int, uid: int, gid: int) -> Path:
    """Create `path` (and missing parents, with the same owner and mode) inside the image."""
    parts = _relative(root, path)
    with _directory_fd(root, parts, create=(mode, uid, gid)):
        pass
    return root.joinpath(*parts)


def symlink(root: Path, path: str, target: str, *, uid: int = 0, gid: int = 0) -> Path:
    """Create (or replace) the symlink `path` → `target`; the link itself is never followed."""
    parts = _relative(root, path, follow_final=False)
    with _directory_fd(root, parts[:-1], create=(0o755, 0, 0)) as dirfd:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISDIR(os.lstat(parts[-1], dir_fd=dirfd).st_mode):
                raise InputError(f"{path}: is a directory inside the image; not replacing it with a link")
            os.unlink(parts[-1], dir_fd=dirfd)
        os.symlink(target, parts[-1], dir_fd=dirfd)
        os.chown(parts[-1], uid, gid, dir_fd=dirfd, follow_symlinks=False)
    return root.joinpath(*parts)


def read_link(root: Path, path: str) -> str:
    """The target of the symlink `path` inside the image, as written (the link is not followed)."""
    parts = _relative(root, path, follow_final=False)
    with _directory_fd(root, parts[:-1]) as dirfd:
        return os.readlink(parts[-1], dir_fd=dirfd)


def remove(root: Path, path: str) -> bool:
    """Remove a file or symlink (not followed) inside the image; False when it wasn't there."""
    parts = _relative(root, path, follow_final=False)
    try:
        with _directory_fd(root, parts[:-1]) as dirfd:
            os.unlink(parts[-1], dir_fd=dirfd)
    except FileNotFoundError:
        return False
    return True


def rewrite(root: Path, path: str, data: bytes) -> Path:
    """Replace the content of the regular file `path`, keeping its mode and owner."""
    parts = _relative(root, path)
    try:
        with _directory_fd(root, parts[:-1]) as dirfd:
            info = os.stat(parts[-1], dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such file in the image") from exc
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path}: is not a regular file inside the image")
    return write_file(root, path, data, mode=stat.S_IMODE(info.st_mode), uid=info.st_uid, gid=info.st_gid)


def glob(root: Path, pattern: str) -> list[tuple[str, os.stat_result]]:
    """The entries matching an absolute `pattern` whose last component alone may hold wildcards,
    as (path inside the image, lstat) in name order; links are listed, not followed."""
    parent, _, name = pattern.rpartition("/")
    found = []
    for entry, info in _listing(root, parent or "/"):
        if fnmatch.fnmatchcase(entry, name):
            found.append((f"{parent}/{entry}", info))
    return found


def walk(root: Path, top: str = "/") -> Iterator[tuple[str, os.stat_result]]:
    """Every entry below `top` that is no directory (files, links, devices), as (path inside the
    image, lstat): a directory's entries in name order, then its subdirectories'. No link is
    followed, neither to a file nor to a directory; `top` itself being a link gives nothing."""
    top = "/" + "/".join(_parts(top))
    files: list[tuple[str, os.stat_result]] = []
    subdirs: list[tuple[str, os.stat_result]] = []
    for name, info in _listing(root, top):
        (subdirs if stat.S_ISDIR(info.st_mode) else files).append((f"{top.rstrip('/')}/{name}", info))
    yield from files
    for path, _info in subdirs:
        yield from walk(root, path)


def _listing(root: Path, path: str) -> list[tuple[str, os.stat_result]]:
    """(name, lstat) of each entry of the directory `path`, sorted; [] when it is no directory."""
    host = resolve(root, path, follow_final=False)
    if not os.path.isdir(host) or os.path.islink(host):
        return []
    parts = list(host.relative_to(root).parts)
    with _directory_fd(root, parts) as dirfd:
        return sorted((name, os.stat(name, dir_fd=dirfd, follow_symlinks=False)) for name in os.listdir(dirfd))


def exists(root: Path, path: str) -> bool:
    try:
        return os.path.lexists(resolve(root, path))
    except UnsafePath:
        return False


def lookup_id(root: Path, database: str, name: str) -> int:
    """The uid (database "passwd") or gid ("group") of `name` in the image's own /etc files."""
    if name.isdigit():
        return int(name)
    text = read_file(root, f"/etc/{database}").decode(errors="replace")
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) > 2 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    what = "user" if database == "passwd" else "group"
    raise InputError(f"{what} '{name}' does not exist in the image's /etc/{database}",
                     hint=f"install the package that creates the {what}, or create it, before writing files "
                          "owned by it")
