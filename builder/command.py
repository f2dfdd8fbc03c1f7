"""The one function that runs external commands.

Every command is an argv list (never a shell string), logged with a label; stderr is
captured and its last lines end up in the error when the command fails.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from builder.errors import CommandFailed, EnvironmentProblem

log = logging.getLogger("clusterbake.command")

# Which Debian package brings a tool: used in the hint of a "missing tool" error.
TOOL_PACKAGES = {
    "mcopy": "mtools",
    "mdir": "mtools",
    "mdel": "mtools",
    "mattrib": "mtools",
    "mmd": "mtools",
    "mtype": "mtools",
    "fsck.vfat": "dosfstools",
    "mkfs.vfat": "dosfstools",
    "sfdisk": "fdisk",
    "losetup": "mount",
    "e2fsck": "e2fsprogs",
    "resize2fs": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "mkfs.ext4": "e2fsprogs",
    "xz": "xz-utils",
    "zstd": "zstd",
    "pigz": "pigz",
    "gpg": "gnupg",
    "qemu-aarch64-static": "qemu-user-static",
    "debootstrap": "debootstrap",
    "bmaptool": "bmap-tools",
    "blkid": "util-linux",
    "prlimit": "util-linux",
    "dumpe2fs": "e2fsprogs",
    "mount": "mount",
    "umount": "mount",
    "mrd": "mtools",
    "chroot": "coreutils",
    "sync": "coreutils",
    "cp": "coreutils",
}

STDERR_TAIL_LINES = 12


def require_tool(name: str) -> str:
    """Return the path of `name`, or fail with the package that provides it."""
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if path is None:
        package = TOOL_PACKAGES.get(name, name)
        raise EnvironmentProblem(
            f"required tool '{name}' is not installed",
            hint=f"apt-get install {package} (or run 'make deps')",
        )
    return path


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    label: str | None = None,
    input: bytes | None = None,
    capture: bool = False,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float | None = None,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run argv; raise CommandFailed (with stderr's tail) when it exits non-zero.

    stdout is returned when `capture` is set, otherwise it goes to the debug log.
    `stdin`/`stdout` connect the command to open files instead, so that a stream of any
    size (a decompressor's input and output) never passes through memory.
    """
    if input is not None and stdin is not None:
        raise ValueError("run(): give either input or stdin, not both")
    if capture and stdout is not None:
        raise ValueError("run(): give either capture or stdout, not both")
    # Without input or a file, stdin is /dev/null so that nothing ever waits on the terminal.
    stdin_source: IO[bytes] | int | None = stdin if stdin is not None else (
        None if input is not None else subprocess.DEVNULL)
    args = [os.fspath(a) for a in argv]
    if "/" not in args[0]:
        require_tool(args[0])
    name = label or Path(args[0]).name
    log.debug("run [%s]: %s", name, " ".join(args))
    try:
        proc = subprocess.run(
            args,
            input=input,
            stdin=stdin_source,
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(f"{name}: timed out after {timeout:.0f}s: {' '.join(args)}") from exc
    if not capture and proc.stdout:
        log.debug("[%s] stdout: %s", name, proc.stdout.decode(errors="replace").rstrip())
    if check and proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-STDERR_TAIL_LINES:]
        if not tail and proc.stdout:
            tail = proc.stdout.decode(errors="replace").strip().splitlines()[-STDERR_TAIL_LINES:]
        detail = " | ".join(line.strip() for line in tail if line.strip())
        raise CommandFailed(
            f"{name} failed (exit {proc.returncode}): {' '.join(args)}"
            + (f": {detail}" if detail else "")
        )
    return proc


def output(
    argv: Sequence[str | os.PathLike[str]],
    *,
    label: str | None = None,
    input: bytes | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run argv and return its stdout as text."""
    return run(argv, label=label, input=input, capture=True, cwd=cwd, env=env).stdout.decode()
