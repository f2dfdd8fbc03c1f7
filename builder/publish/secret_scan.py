"""The last check before an image is published: it must hold no secret of the cluster or of a board.

A release image is shared publicly and flashed to many cards, so it must not contain the
munge key, a password hash, SSH host keys, slurmdbd's database password or any private key.
The scan covers every file of the root filesystem and of the boot partition; the release stops
if it finds anything.

One exception: a file a Debian package ships, unchanged (its MD5 as in dpkg's md5sums). Such
keys are public test vectors (libgnutls carries FIPS self-test keys), the same on every
Debian system; a key made by a package script or written by us is in no md5sums list.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import stat
from pathlib import Path

from builder.image import OpenImage

# A whole PEM block (header, base64 lines, matching footer): programs such as ssh-keygen hold the
# bare header as a string, which is no key.
PRIVATE_KEY = re.compile(rb"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----\r?\n"
                         rb"(?:[A-Za-z0-9+/=:, -]*\r?\n)*?[A-Za-z0-9+/=]{16,}\r?\n"
                         rb"(?:[A-Za-z0-9+/=:, -]*\r?\n)*?-----END \1-----")
SECRET_NAMES = ("munge.key", "ssh_host_*_key")
# slurmdbd.conf's StoragePass (slurm.accounting): a release controller makes its own at first boot.
DB_PASSWORD = re.compile(rb"^[ \t]*StoragePass[ \t]*=[ \t]*[^\s#]", re.IGNORECASE | re.MULTILINE)
SHADOW_FILES = ("etc/shadow", "etc/shadow-", "etc/gshadow", "etc/gshadow-")
# Bigger files are archives or binaries; a PEM key lives in a small text file.
SCAN_LIMIT = 4 << 20


def shadow_hashes(text: str) -> list[str]:
    """Names whose shadow entry holds a password hash (locked `!<hash>` entries count: the hash is there)."""
    found = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 2 and fields[1].lstrip("!") not in ("", "*", "x"):
            found.append(fields[0])
    return found


def packaged_md5s(root: Path) -> dict[str, str]:
    """/path → MD5 of every file installed by a package, from the image's dpkg database."""
    found: dict[str, str] = {}
    for listing in sorted((root / "var/lib/dpkg/info").glob("*.md5sums")):
        for line in listing.read_text(errors="replace").splitlines():
            digest, _, path = line.partition("  ")
            if path:
                found["/" + path] = digest
    return found


def _shipped_verbatim(path: Path, rel: str, packaged: dict[str, str]) -> bool:
    expected = packaged.get("/" + rel)
    return expected is not None and hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest() == expected


def secrets_in_tree(root: Path) -> list[str]:
    """Problems found under a host directory holding a root filesystem (or a boot partition's files)."""
    problems = []
    packaged = packaged_md5s(root)
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(directory) / name
            rel = path.relative_to(root).as_posix()
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in SECRET_NAMES):
                problems.append(f"/{rel}: a secret by its name")
                continue
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode):
                continue
            if rel in SHADOW_FILES:
                users = shadow_hashes(path.read_text(errors="replace"))
                if users:
                    problems.append(f"/{rel}: password hash for {', '.join(users)}")
            if name == "slurmdbd.conf" and DB_PASSWORD.search(path.read_bytes()):
                problems.append(f"/{rel}: holds slurmdbd's database password (StoragePass)")
            if info.st_size <= SCAN_LIMIT and PRIVATE_KEY.search(path.read_bytes()) \
                    and not _shipped_verbatim(path, rel, packaged):
                problems.append(f"/{rel}: contains a private key")
    return problems


def secrets_on_boot(img: OpenImage) -> list[str]:
    problems = []
    for name in img.boot.list():
        base = name.rsplit("/", 1)[-1].lower()
        data = img.boot.read(name)
        if any(fnmatch.fnmatchcase(base, pattern) for pattern in SECRET_NAMES):
            problems.append(f"boot:/{name}: a secret by its name")
        elif base == "userconf.txt" and any(":" in line for line in data.decode(errors="replace").splitlines()):
            problems.append(f"boot:/{name}: a user with a password hash")
        elif PRIVATE_KEY.search(data):
            problems.append(f"boot:/{name}: contains a private key")
    return problems


def find_secrets(img: OpenImage) -> list[str]:
    return secrets_in_tree(img.root) + secrets_on_boot(img)
