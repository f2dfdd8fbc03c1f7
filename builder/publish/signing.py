"""The release signature: a detached, ASCII-armoured OpenPGP signature over SHA256SUMS.

The key is named by its fingerprint (RELEASE_KEY) and must be usable from the keyring in
$GNUPGHOME (gpg's default, ~/.gnupg, when unset). `release_signer` checks that, and makes a
throw-away signature, before anything is built: a release never ends with unsigned sums.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from builder.command import require_tool
from builder.errors import CommandFailed, InputError, VerificationError
from builder.openpgp import (
    import_keys,
    secret_fingerprints,
    sign_detached,
    stderr_tail,
    temporary_keyring,
    verify_detached,
)

FINGERPRINT = re.compile(r"[0-9A-F]{40}")


@dataclass(frozen=True)
class Signer:
    gnupghome: Path
    fingerprint: str


def keyring_home() -> Path:
    """Where gpg keeps its keys: $GNUPGHOME, else ~/.gnupg."""
    explicit = os.environ.get("GNUPGHOME")
    return Path(explicit) if explicit else Path.home() / ".gnupg"


def normalise_fingerprint(text: str, *, what: str = "RELEASE_KEY") -> str:
    fingerprint = re.sub(r"\s+", "", text).upper().removeprefix("0X")
    if not fingerprint:
        raise InputError(f"{what} is not set: a release needs the fingerprint of the key that signs SHA256SUMS",
                         hint="make release RELEASE_KEY=<40 hex digits> (gpg --list-secret-keys --with-colons)")
    if not FINGERPRINT.fullmatch(fingerprint):
        raise InputError(f"{what}: '{text}' is not a full OpenPGP fingerprint (40 hex digits)",
                         hint="copy it from `gpg --list-secret-keys --fingerprint`; key ids are not enough")
    return fingerprint


def release_signer(fingerprint_text: str) -> Signer:
    """Check that the release key can sign from $GNUPGHOME, without prompting; fail early if not."""
    require_tool("gpg")
    fingerprint = normalise_fingerprint(fingerprint_text)
    home = keyring_home()
    if not home.is_dir():
        raise InputError(f"no GnuPG keyring at {home} to find the release key {fingerprint} in",
                         hint="set GNUPGHOME to the keyring holding the release signing key")
    if fingerprint not in secret_fingerprints(home):
        raise InputError(f"the release key {fingerprint} has no secret key in {home}",
                         hint="import it (gpg --import) or point GNUPGHOME at the keyring that holds it")
    with tempfile.TemporaryDirectory(prefix="clusterbake-sign-check-") as scratch:
        probe = Path(scratch) / "probe"
        probe.write_text("clusterbake release: can this key sign?\n")
        try:
            sign_detached_armoured(Signer(home, fingerprint), probe, Path(scratch) / "probe.asc")
        except CommandFailed as exc:
            raise InputError(f"the release key {fingerprint} in {home} cannot sign: {exc.message}",
                             hint="unlock it (gpg-agent, --pinentry-mode loopback) or use a key without a "
                                  "passphrase on the build machine") from exc
    return Signer(home, fingerprint)


def sign_detached_armoured(signer: Signer, file: Path, signature: Path) -> None:
    """Write an armoured detached signature over `file` by the signer's key (the user's keyring and agent)."""
    sign_detached(signer.gnupghome, signer.fingerprint, file, signature, armor=True, users_agent=True)


@contextlib.contextmanager
def public_keyring(key_file: Path | None) -> Iterator[Path]:
    """The user's keyring, or a temporary one holding only the public key in `key_file`."""
    if key_file is None:
        yield keyring_home()
        return
    if not key_file.is_file():
        raise InputError(f"{key_file}: no such key file", hint="give the release's public key (.asc)")
    with temporary_keyring(prefix="clusterbake-verify-") as home:
        imported, stderr = import_keys(home, key_file.read_bytes())
        if not imported:
            raise CommandFailed(f"gpg --import {key_file}: {stderr_tail(stderr, 3)}")
        yield home


def verify_signature(signature: Path, data: Path, home: Path, expected: str | None = None) -> str:
    """Check the detached `signature` over `data` in keyring `home`; return the signing key's primary fingerprint."""
    result = verify_detached(home, signature.read_bytes(), data)
    if not result.valid:
        detail = result.detail[-300:]
        if result.status == "no public key":
            raise VerificationError(f"{signature}: made by a key that is not in {home}: {detail}",
                                    hint="import the release's public key (gpg --import) or pass --key-file")
        raise VerificationError(f"{signature}: BAD or unusable signature over {data.name}: {detail}",
                                hint="the sums were changed or the download is corrupt: do not use these files")
    signed_by = {result.signing_key, result.signer}   # signing (sub)key and its primary key
    if expected is not None and normalise_fingerprint(expected, what="--key") not in signed_by:
        raise VerificationError(f"{signature}: signed by {result.signer}, not by the expected key {expected}",
                                hint="someone else signed these sums: do not use them")
    return result.signer
