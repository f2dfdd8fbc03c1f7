"""OpenPGP through python-gnupg: temporary keyrings, detached signatures and their checks.

The one place gpg is driven from, for the base image's signature (acquire), the release's signed
sums (publish) and the demo's stand-in publisher. A keyring is a GNUPGHOME folder: a temporary
one is private (0700) and removed, its agent stopped first, when its block ends. Key generation
and signing start a gpg-agent; in a keyring of ours it is stopped again before the call returns,
so none outlives the call (or keeps a cache folder busy); the user's own agent is left alone.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gnupg  # type: ignore[import-untyped]

from builder.command import require_tool, run
from builder.errors import CommandFailed

# python-gnupg warns on every non-zero gpg exit (a bad signature is one); callers say what
# happened in our words, so its warnings must not reach the terminal.
logging.getLogger("gnupg").addHandler(logging.NullHandler())


@contextlib.contextmanager
def temporary_keyring(prefix: str = "clusterbake-gpg-") -> Iterator[Path]:
    """A fresh, empty, private GNUPGHOME, removed (agent stopped first) when the block ends."""
    require_tool("gpg")
    home = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        os.chmod(home, 0o700)
        yield home
    finally:
        stop_agent(home)
        shutil.rmtree(home, ignore_errors=True)


def stop_agent(home: Path) -> None:
    """Stop any gpg-agent (and friends) serving keyring `home`; harmless when none runs."""
    if home.is_dir():
        run(["gpgconf", "--homedir", home, "--kill", "all"], label="gpgconf", check=False)


def create_signing_key(home: Path, name: str) -> str:
    """Generate an unprotected ed25519 signing key in keyring `home` (made 0700); return its fingerprint."""
    with _gpg(home) as gpg:
        email = "".join(c if c.isalnum() else "-" for c in name.lower()) + "@clusterbake.invalid"
        spec = gpg.gen_key_input(key_type="EDDSA", key_curve="ed25519", key_usage="sign",
                                 name_real=name, name_email=email, expire_date=0, no_protection=True)
        result = gpg.gen_key(spec)
        if not result.fingerprint:
            raise CommandFailed(f"gpg could not create a signing key in {home}: {stderr_tail(result.stderr)}")
        return str(result.fingerprint)


def export_public_key(home: Path, fingerprint: str, dest: Path | None = None) -> str:
    """The armoured public key of `fingerprint` in keyring `home` (also written to `dest` if given)."""
    armoured = gnupg.GPG(gnupghome=str(home)).export_keys(fingerprint, armor=True)
    if not armoured:
        raise CommandFailed(f"gpg has no public key {fingerprint} in {home}")
    if dest is not None:
        dest.write_text(armoured)
    return str(armoured)


def import_keys(home: Path, key_data: bytes) -> tuple[list[str], str]:
    """Import `key_data` into keyring `home`: (the fingerprints imported, upper case; gpg's stderr)."""
    imported = gnupg.GPG(gnupghome=str(home)).import_keys(key_data)
    return [str(f).upper() for f in imported.fingerprints if f], str(imported.stderr)


def scan_keys(key_data: bytes) -> list[dict[str, Any]]:
    """What a key file holds, as python-gnupg lists keys; nothing is imported anywhere."""
    with temporary_keyring() as home, tempfile.NamedTemporaryFile(dir=home, suffix=".key") as tmp:
        tmp.write(key_data)
        tmp.flush()
        return list(gnupg.GPG(gnupghome=str(home)).scan_keys(tmp.name))


def secret_fingerprints(home: Path) -> set[str]:
    """The fingerprints of the secret keys and subkeys in keyring `home`, upper case."""
    found: set[str] = set()
    for key in gnupg.GPG(gnupghome=str(home)).list_keys(secret=True):
        found.add(str(key["fingerprint"]).upper())
        found.update(str(sub).upper() for sub in key.get("subkey_info", {}))
    return found


def sign_detached(home: Path, fingerprint: str, file: Path, signature: Path, *, armor: bool = False,
                  users_agent: bool = False) -> None:
    """Write a detached signature over `file` by `fingerprint` to `signature` (binary unless `armor`).

    Never prompts: a key that needs a passphrase the agent does not hold fails. With
    `users_agent`, `home` is the user's keyring and its agent is theirs: it keeps running.
    """
    partial = signature.with_name(signature.name + ".partial")
    with _gpg(home, stop=not users_agent) as gpg, file.open("rb") as data:
        result = gpg.sign_file(data, keyid=fingerprint, detach=True, binary=not armor, output=str(partial),
                               extra_args=["--batch", "--pinentry-mode", "error"])
    if result.status != "signature created" or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise CommandFailed(f"gpg could not sign {file.name} with {fingerprint}: "
                            + (stderr_tail(result.stderr, 3) if result.stderr else str(result.status)))
    partial.replace(signature)


@dataclass(frozen=True)
class Verification:
    """gpg's verdict on a detached signature.

    `signer` is the fingerprint of the primary key that made a valid signature (of the signing
    subkey's primary key), `signing_key` that of the (sub)key itself; `issuer` is what the
    signature names as its maker whether or not the key is known: a fingerprint or a 16-digit key ID.
    """

    valid: bool
    status: str
    signer: str = ""
    signing_key: str = ""
    issuer: str = ""
    detail: str = ""


def verify_detached(home: Path, signature: bytes, data: Path) -> Verification:
    """Check `signature` over `data` against the keys in keyring `home`."""
    result = gnupg.GPG(gnupghome=str(home)).verify_file(io.BytesIO(signature), data_filename=str(data))
    signing_key = str(result.fingerprint or "").upper()
    return Verification(
        valid=bool(result.valid),
        status=str(result.status or ""),
        signer=str(result.pubkey_fingerprint or signing_key).upper() if result.valid else "",
        signing_key=signing_key,
        issuer=str(result.fingerprint or result.key_id or "").upper(),
        detail=stderr_tail(str(result.stderr or "")),
    )


def stderr_tail(stderr: str, lines: int = 4) -> str:
    """The last lines gpg wrote for people (not its status lines), joined on one line."""
    kept = [line for line in stderr.splitlines() if line.strip() and not line.startswith("[GNUPG:]")]
    return " | ".join(kept[-lines:]) or "no message"


# Without /run/user/<uid>, gpg-agent puts its sockets in the keyring folder, and a Unix socket's path
# holds at most 107 bytes: a keyring deep in a long cache path got no agent ("failed to start agent").
SOCKET_PATH_MAX = 107
LONGEST_SOCKET = "/S.gpg-agent.browser"


@contextlib.contextmanager
def _short_path(home: Path) -> Iterator[Path]:
    """`home`, or a short link to it in the temporary folder when the agent's sockets would not fit in it."""
    if len(os.fsencode(home.absolute())) + len(LONGEST_SOCKET) <= SOCKET_PATH_MAX:
        yield home
        return
    folder = Path(tempfile.mkdtemp(prefix="cbgpg-"))
    link = folder / "k"
    try:
        link.symlink_to(home.absolute())
        yield link
    finally:
        stop_agent(link)
        link.unlink(missing_ok=True)
        folder.rmdir()


@contextlib.contextmanager
def _gpg(home: Path, *, stop: bool = True) -> Iterator[gnupg.GPG]:
    home.mkdir(parents=True, exist_ok=True)
    if not stop:
        yield gnupg.GPG(gnupghome=str(home))        # the user's keyring and agent, as they are
        return
    # gpg refuses (or warns about) a home that others can read; secret keys live here.
    os.chmod(home, 0o700)
    with _short_path(home) as used:
        try:
            yield gnupg.GPG(gnupghome=str(used))
        finally:
            stop_agent(used)
