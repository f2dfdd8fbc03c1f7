"""Check a detached OpenPGP signature against the pinned keys, and nothing else.

Trust comes from the fingerprints in the cluster file alone: one, or several while a publisher
rotates its key. The signature packet names the key that made it; that key's public part is
taken from a key file only if it is one of the pinned keys, and then alone: exported from a
scratch keyring (other keys in the same file never leave it) and imported into a private,
temporary GNUPGHOME that holds nothing else, so a good signature by any other key (from the
user's keyring, say) can never count.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from builder.errors import CommandFailed, VerificationError
from builder.openpgp import export_public_key, import_keys, scan_keys, stderr_tail, temporary_keyring, verify_detached


@dataclass(frozen=True)
class SignatureCheck:
    """The verdict on one signature: `problem` says what is wrong when not `good`."""

    good: bool
    problem: str = ""


class PinnedKeyring:
    """A throw-away keyring holding only the pinned key."""

    def __init__(self, home: Path, fingerprint: str) -> None:
        self._home = home
        self.fingerprint = fingerprint

    def check(self, signature: bytes, file: Path) -> SignatureCheck:
        """Is `signature` a good detached signature over `file` by the pinned key?"""
        result = verify_detached(self._home, signature, file)
        if result.valid and result.signer == self.fingerprint:
            return SignatureCheck(True)
        if result.valid:
            return SignatureCheck(False, f"signature made by key {result.signer}, "
                                         f"not by the pinned key {self.fingerprint}")
        if result.status in ("no public key", "signature error") and result.issuer:
            return SignatureCheck(False, f"signature made by key {result.issuer}, "
                                         f"not by the pinned key {self.fingerprint}")
        if result.status == "signature bad":
            return SignatureCheck(False, f"BAD signature by the pinned key {self.fingerprint}: the file is not "
                                         "the one that was signed")
        if result.status in ("signing key has expired", "signing key was revoked", "signature expired"):
            return SignatureCheck(False, f"{result.status} (key {self.fingerprint})")
        return SignatureCheck(False, "not a valid OpenPGP detached signature "
                                     f"({result.status or 'no signature found'})")


@dataclass(frozen=True)
class PublicKey:
    """One primary key in a key file, with the fingerprints of its subkeys."""

    fingerprint: str
    subkeys: tuple[str, ...] = ()

    def made(self, issuer: str) -> bool:
        """Could this key (or a subkey) have made a signature naming `issuer` (a fingerprint or a key ID)?"""
        return any(fpr == issuer or (len(issuer) == 16 and fpr.endswith(issuer))
                   for fpr in (self.fingerprint, *self.subkeys))


def signature_issuer(signature: bytes) -> str | None:
    """The key a detached signature names as its maker: its fingerprint, or (older signatures) its
    16-digit key ID; None when the data is no signature. Needs neither the key nor the signed file."""
    with temporary_keyring(prefix="clusterbake-verify-") as home:
        return verify_detached(home, signature, Path(os.devnull)).issuer or None


def public_keys(key_data: bytes) -> list[PublicKey]:
    """The primary keys a key file holds (nothing is imported anywhere)."""
    return [PublicKey(str(key["fingerprint"]).upper(),
                      tuple(str(sub[2]).upper() for sub in key.get("subkeys", []) if len(sub) > 2 and sub[2]))
            for key in scan_keys(key_data) if key.get("type") == "pub"]


def pinned_signer(key_data: bytes, issuer: str, pinned: Sequence[str], origin: str) -> tuple[str, bytes]:
    """The pinned key in `key_data` that made a signature naming `issuer`, exported alone.

    Returns (its fingerprint, its armoured public key). Raises VerificationError saying what the
    file holds instead; `origin` names the key file in messages.
    """
    keys = public_keys(key_data)
    if not keys:
        raise VerificationError(f"{origin}: holds no OpenPGP public key",
                                hint="base_image.signing_key must name the armoured public key of the signer")
    found = ", ".join(k.fingerprint for k in keys)
    signer = next((k for k in keys if k.fingerprint in pinned and k.made(issuer)), None)
    if signer is None and not any(k.fingerprint in pinned for k in keys):
        raise VerificationError(
            f"{origin}: holds key {found}, not the pinned key {' or '.join(pinned)}; refusing to trust it",
            hint="base_image.fingerprint is the trust anchor: point signing_key at that key, or pin the "
                 "right fingerprint only after checking it independently")
    if signer is None:
        raise VerificationError(f"{origin}: holds key {found}, but not the key {issuer} that made the signature",
                                hint="add a base_image.signing_key source that holds the new key")
    with temporary_keyring(prefix="clusterbake-verify-") as home:
        import_keys(home, key_data)
        try:
            exported = export_public_key(home, signer.fingerprint)
        except CommandFailed as exc:
            raise VerificationError(f"{origin}: gpg could not read the pinned key {signer.fingerprint} "
                                    "from it") from exc
    return signer.fingerprint, exported.encode()


@contextlib.contextmanager
def pinned_keyring(key_data: bytes, fingerprint: str, origin: str) -> Iterator[PinnedKeyring]:
    """Import `key_data` into a fresh private keyring if it is exactly the pinned key.

    `origin` names the key file in messages. The check happens before the import: key data
    that holds any other key is refused outright (`pinned_signer` exports the one key needed).
    """
    found = [key.fingerprint for key in public_keys(key_data)]
    if not found:
        raise VerificationError(f"{origin}: holds no OpenPGP public key",
                                hint="base_image.signing_key must name the armoured public key of the signer")
    if found != [fingerprint]:
        raise VerificationError(
            f"{origin}: holds key {', '.join(found)}, not the pinned key {fingerprint}; refusing to trust it",
            hint="base_image.fingerprint is the trust anchor: point signing_key at that key, or pin the "
                 "right fingerprint only after checking it independently")
    with temporary_keyring(prefix="clusterbake-verify-") as home:
        imported, stderr = import_keys(home, key_data)
        if imported != [fingerprint]:
            raise VerificationError(f"{origin}: gpg could not import the pinned key {fingerprint}: "
                                    f"{stderr_tail(stderr, 3)}")
        yield PinnedKeyring(home, fingerprint)
