"""A throw-away OpenPGP signing key, made and used with python-gnupg.

The demo and the tests sign their stand-in image the way Raspberry Pi signs theirs: a
detached signature over the compressed file, checked against a pinned fingerprint.
Key generation and signing start a gpg-agent; each function stops it again before
returning, so no agent outlives the call (and none keeps a cache directory busy).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import gnupg  # type: ignore[import-untyped]

from builder.command import run
from builder.errors import CommandFailed


@contextlib.contextmanager
def temporary_gnupghome() -> Iterator[Path]:
    """A fresh private GNUPGHOME, removed (agent stopped first) when the block ends."""
    home = Path(tempfile.mkdtemp(prefix="clusterbake-gpg-"))
    try:
        yield home
    finally:
        stop_agent(home)
        shutil.rmtree(home, ignore_errors=True)


def create_signing_key(gnupghome: Path, name: str) -> str:
    """Generate an unprotected ed25519 signing key in `gnupghome`; return its fingerprint."""
    with _gpg(gnupghome) as gpg:
        email = "".join(c if c.isalnum() else "-" for c in name.lower()) + "@clusterbake.invalid"
        spec = gpg.gen_key_input(key_type="EDDSA", key_curve="ed25519", key_usage="sign",
                                 name_real=name, name_email=email, expire_date=0, no_protection=True)
        result = gpg.gen_key(spec)
        if not result.fingerprint:
            raise CommandFailed(f"gpg could not create a signing key in {gnupghome}: {_tail(result.stderr)}")
        return str(result.fingerprint)


def export_public_key(gnupghome: Path, fingerprint: str, dest: Path) -> None:
    """Write the armoured public key of `fingerprint` to `dest`."""
    with _gpg(gnupghome) as gpg:
        armoured = gpg.export_keys(fingerprint, armor=True)
        if not armoured:
            raise CommandFailed(f"gpg has no public key {fingerprint} in {gnupghome}")
        dest.write_text(armoured)


def sign_detached(gnupghome: Path, fingerprint: str, file: Path, sig: Path, *, armor: bool = False) -> None:
    """Write a detached signature over `file` by `fingerprint` to `sig` (binary unless `armor`)."""
    with _gpg(gnupghome) as gpg, file.open("rb") as data:
        partial = sig.with_name(sig.name + ".tmp")
        result = gpg.sign_file(data, keyid=fingerprint, detach=True, binary=not armor, output=str(partial))
        if result.status != "signature created" or not partial.is_file():
            partial.unlink(missing_ok=True)
            raise CommandFailed(f"gpg could not sign {file} with {fingerprint}: {_tail(result.stderr)}")
        partial.replace(sig)


def stop_agent(gnupghome: Path) -> None:
    """Stop any gpg-agent (and friends) serving `gnupghome`; harmless when none runs."""
    if gnupghome.is_dir():
        run(["gpgconf", "--homedir", gnupghome, "--kill", "all"], label="gpgconf", check=False)


@contextlib.contextmanager
def _gpg(gnupghome: Path) -> Iterator[gnupg.GPG]:
    gnupghome.mkdir(parents=True, exist_ok=True)
    # gpg refuses (or warns about) a home that others can read; secret keys live here.
    os.chmod(gnupghome, 0o700)
    try:
        yield gnupg.GPG(gnupghome=str(gnupghome))
    finally:
        stop_agent(gnupghome)


def _tail(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("[GNUPG:]")]
    return " | ".join(lines[-4:]) or "no message"
