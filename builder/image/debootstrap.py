"""debootstrap: a minimal Debian root from Debian's archive, the one way both bases are begun.

The container's base (amd64, native) and the demo's stand-in for Raspberry Pi OS (arm64, whose
second stage runs under qemu-user) start here. The suite's Release file is checked against Debian's
archive keyring (`--force-check-gpg`: a missing or bad signature fails, never a warning); the
mirror is the caller's, by default $CLUSTERBAKE_DEBIAN_MIRROR; downloaded .debs are kept in a
folder of the cache, so a rebuild needs no network. When debootstrap fails, its own log is kept
beside the cache entry and named in the error's hint.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from builder.command import run
from builder.errors import CommandFailed, EnvironmentProblem
from builder.image.chroot import emulation_env, ensure_emulation

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
FAILED_LOG = "debootstrap-failed.log"


def debootstrap(root: Path, *, arch: str, suite: str, mirror: str, include: Sequence[str], debs: Path,
                logs: Path, variant: str = "minbase", timeout: float = 3 * 3600) -> None:
    """debootstrap `suite` for `arch` into `root` from `mirror`, with the `include` packages."""
    if not KEYRING.is_file():
        raise EnvironmentProblem(f"{KEYRING} is missing: debootstrap could not check Debian's signatures",
                                 hint="apt-get install debian-archive-keyring")
    ensure_emulation(arch)
    (debs / "partial").mkdir(parents=True, exist_ok=True)
    argv: list[str | os.PathLike[str]] = [
        "debootstrap", f"--arch={arch}", f"--variant={variant}", "--include=" + ",".join(include),
        f"--keyring={KEYRING}", "--force-check-gpg",
        f"--cache-dir={debs.resolve()}",
        suite, root, mirror,
    ]
    saved = logs / FAILED_LOG
    saved.unlink(missing_ok=True)
    try:
        run(argv, label="debootstrap", timeout=timeout, env={**os.environ, **emulation_env(arch)})
    except CommandFailed as exc:
        detail = root / "debootstrap" / "debootstrap.log"
        if detail.exists():
            shutil.copyfile(detail, saved)
        raise CommandFailed(exc.message, hint=f"see {saved} for debootstrap's own log") from exc
