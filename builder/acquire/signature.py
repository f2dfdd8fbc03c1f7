"""Check a detached OpenPGP signature against one pinned key, and nothing else.

Trust comes from the fingerprint in the cluster file alone. A key file is accepted only
when it holds exactly that key; it is then imported into a private, temporary GNUPGHOME
that holds nothing else, so a good signature by any other key (from the user's keyring,
say) can never count.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gnupg  # type: ignore[import-untyped]

from builder.command import require_tool, run
from builder.errors import VerificationError

# python-gnupg warns on every non-zero gpg exit (a bad signature is one); the verdict
# below says what happened in our words, so its warnings must not reach the terminal.
logging.getLogger("gnupg").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class SignatureCheck:
    """The verdict on one signature: `problem` says what is wrong when not `good`."""

    good: bool
    problem: str = ""


class PinnedKeyring:
    """A throw-away keyring holding only the pinned key."""

    def __init__(self, gpg: gnupg.GPG, fingerprint: str) -> None:
        self._gpg = gpg
        self.fingerprint = fingerprint

    def check(self, signature: bytes, file: Path) -> SignatureCheck:
        """Is `signature` a good detached signature over `file` by the pinned key?"""
        result = self._gpg.verify_file(io.BytesIO(signature), data_filename=str(file))
        signer = (result.pubkey_fingerprint or result.fingerprint or "").upper()
        if result.valid and signer == self.fingerprint:
            return SignatureCheck(True)
        if result.valid:
            return SignatureCheck(False, f"signature made by key {signer}, not by the pinned key {self.fingerprint}")
        if result.status in ("no public key", "signature error") and result.key_id:
            other = (result.fingerprint or result.key_id).upper()
            return SignatureCheck(False, f"signature made by key {other}, not by the pinned key {self.fingerprint}")
        if result.status == "signature bad":
            return SignatureCheck(False, f"BAD signature by the pinned key {self.fingerprint}: the file is not "
                                         "the one that was signed")
        if result.status in ("signing key has expired", "signing key was revoked", "signature expired"):
            return SignatureCheck(False, f"{result.status} (key {self.fingerprint})")
        return SignatureCheck(False, "not a valid OpenPGP detached signature "
                                     f"({result.status or 'no signature found'})")


@contextlib.contextmanager
def pinned_keyring(key_data: bytes, fingerprint: str, origin: str) -> Iterator[PinnedKeyring]:
    """Import `key_data` into a fresh private keyring if it is exactly the pinned key.

    `origin` names the key file in messages. The check happens before the import: a key
    file that holds any other key is refused outright.
    """
    require_tool("gpg")
    home = Path(tempfile.mkdtemp(prefix="clusterbake-verify-"))
    try:
        gpg = gnupg.GPG(gnupghome=str(home))
        found = _primary_fingerprints(gpg, key_data)
        if not found:
            raise VerificationError(f"{origin}: holds no OpenPGP public key",
                                    hint="base_image.signing_key must name the armoured public key of the signer")
        if found != [fingerprint]:
            raise VerificationError(
                f"{origin}: holds key {', '.join(found)}, not the pinned key {fingerprint}; refusing to trust it",
                hint="base_image.fingerprint is the trust anchor: point signing_key at that key, or pin the "
                     "right fingerprint only after checking it independently")
        imported = gpg.import_keys(key_data)
        if [f.upper() for f in imported.fingerprints if f] != [fingerprint]:
            raise VerificationError(f"{origin}: gpg could not import the pinned key {fingerprint}: "
                                    f"{_stderr_tail(imported.stderr)}")
        yield PinnedKeyring(gpg, fingerprint)
    finally:
        # Verifying needs no agent, but a gpg that started one must not leave it behind.
        run(["gpgconf", "--homedir", home, "--kill", "all"], label="gpgconf", check=False)
        shutil.rmtree(home, ignore_errors=True)


def _primary_fingerprints(gpg: gnupg.GPG, key_data: bytes) -> list[str]:
    # A dry-run import lists what the file holds without adding anything to any keyring.
    with tempfile.NamedTemporaryFile(dir=gpg.gnupghome, suffix=".key") as tmp:
        tmp.write(key_data)
        tmp.flush()
        listed = gpg.scan_keys(tmp.name)
    return [str(key["fingerprint"]).upper() for key in listed if key.get("type") == "pub"]


def _stderr_tail(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("[GNUPG:]")]
    return " | ".join(lines[-3:]) or "no message"
