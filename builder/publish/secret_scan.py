"""The last check before an image is published: it must hold no secret of the cluster or of a board.

A release image is shared publicly and flashed to many cards, so it must not contain the
munge key, a password hash, SSH host keys, slurmdbd's database password, a Wi-Fi passphrase or any
private key.
The scan covers every file of the root filesystem and of the boot partition; the release stops
if it finds anything.

One exception: a file a Debian package ships, unchanged (its MD5 as in dpkg's md5sums). Such
keys are public test vectors (libgnutls carries FIPS self-test keys), the same on every
Debian system; a key made by a package script or written by us is in no md5sums list.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import stat

from builder.image import OpenImage
from builder.image.image_root import ImageRoot

# A whole PEM block (header, base64 lines, matching footer): programs such as ssh-keygen hold the
# bare header as a string, which is no key.
PRIVATE_KEY = re.compile(rb"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----\r?\n"
                         rb"(?:[A-Za-z0-9+/=:, -]*\r?\n)*?[A-Za-z0-9+/=]{16,}\r?\n"
                         rb"(?:[A-Za-z0-9+/=:, -]*\r?\n)*?-----END \1-----")
SECRET_NAMES = ("munge.key", "ssh_host_*_key")
# slurmdbd.conf's StoragePass (slurm.accounting): a release controller makes its own at first boot.
DB_PASSWORD = re.compile(rb"^[ \t]*StoragePass[ \t]*=[ \t]*[^\s#]", re.IGNORECASE | re.MULTILINE)
# A NetworkManager keyfile's Wi-Fi passphrase (access.uplink.wifi): a release door is given its own on the card.
WIFI_PSK = re.compile(rb"^[ \t]*(?:psk|password|wep-key[0-3])[ \t]*=[ \t]*[^\s#]", re.MULTILINE)
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


def packaged_md5s(tree: ImageRoot) -> dict[str, str]:
    """/path → MD5 of every file installed by a package, from the image's dpkg database."""
    found: dict[str, str] = {}
    for listing, info in tree.glob("/var/lib/dpkg/info/*.md5sums"):
        if not stat.S_ISREG(info.st_mode):
            continue
        for line in tree.read_file(listing).decode(errors="replace").splitlines():
            digest, _, path = line.partition("  ")
            if path:
                found["/" + path] = digest
    return found


def secrets_in_tree(tree: ImageRoot) -> list[str]:
    """Problems found in a root filesystem (an image's, or any directory's), read through its safe file layer."""
    problems = []
    packaged = packaged_md5s(tree)
    for path, info in tree.walk("/"):
        name = path.rsplit("/", 1)[-1]
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in SECRET_NAMES):
            problems.append(f"{path}: a secret by its name")
            continue
        if not stat.S_ISREG(info.st_mode):
            continue
        if path[1:] in SHADOW_FILES:
            users = shadow_hashes(tree.read_file(path).decode(errors="replace"))
            if users:
                problems.append(f"{path}: password hash for {', '.join(users)}")
        if name == "slurmdbd.conf" and DB_PASSWORD.search(tree.read_file(path)):
            problems.append(f"{path}: holds slurmdbd's database password (StoragePass)")
        if name.endswith(".nmconnection") and WIFI_PSK.search(tree.read_file(path)):
            problems.append(f"{path}: holds a network passphrase (psk)")
        if info.st_size <= SCAN_LIMIT:
            data = tree.read_file(path)
            if PRIVATE_KEY.search(data) and not _shipped_verbatim(data, path, packaged):
                problems.append(f"{path}: contains a private key")
    return problems


def _shipped_verbatim(data: bytes, path: str, packaged: dict[str, str]) -> bool:
    expected = packaged.get(path)
    return expected is not None and hashlib.md5(data, usedforsecurity=False).hexdigest() == expected


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
    return secrets_in_tree(img) + secrets_on_boot(img)
