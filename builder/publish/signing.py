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

import gnupg  # type: ignore[import-untyped]

from builder.command import require_tool, run
from builder.demo.signing import stop_agent
from builder.errors import CommandFailed, InputError, VerificationError

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
    gpg = gnupg.GPG(gnupghome=str(home))
    secret = {str(k["fingerprint"]).upper() for k in gpg.list_keys(secret=True)}
    for key in gpg.list_keys(secret=True):
        secret.update(str(s).upper() for s in key.get("subkey_info", {}))
    if fingerprint not in secret:
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
    """Write an armoured detached signature over `file` by the signer's key."""
    gpg = gnupg.GPG(gnupghome=str(signer.gnupghome))
    partial = signature.with_name(signature.name + ".partial")
    with file.open("rb") as data:
        result = gpg.sign_file(data, keyid=signer.fingerprint, detach=True, binary=False, output=str(partial),
                               extra_args=["--batch", "--pinentry-mode", "error"])
    if result.status != "signature created" or not partial.is_file():
        partial.unlink(missing_ok=True)
        lines = [ln for ln in str(result.stderr).splitlines() if ln.strip() and not ln.startswith("[GNUPG:]")]
        raise CommandFailed(f"gpg could not sign {file.name} with {signer.fingerprint}: "
                            + (" | ".join(lines[-3:]) or str(result.status)))
    partial.replace(signature)


@contextlib.contextmanager
def public_keyring(key_file: Path | None) -> Iterator[Path]:
    """The user's keyring, or a temporary one holding only the public key in `key_file`."""
    if key_file is None:
        yield keyring_home()
        return
    if not key_file.is_file():
        raise InputError(f"{key_file}: no such key file", hint="give the release's public key (.asc)")
    home = Path(tempfile.mkdtemp(prefix="clusterbake-verify-"))
    try:
        os.chmod(home, 0o700)
        run(["gpg", "--batch", "--homedir", home, "--import", key_file], label="gpg --import")
        yield home
    finally:
        stop_agent(home)
        run(["rm", "-rf", "--one-file-system", home], label="rm")


def verify_signature(signature: Path, data: Path, home: Path, expected: str | None = None) -> str:
    """`gpg --verify signature data` in keyring `home`; return the signing key's primary fingerprint."""
    proc = run(["gpg", "--batch", "--homedir", home, "--status-fd", "1", "--verify", signature, data],
               label="gpg --verify", capture=True, check=False)
    status = proc.stdout.decode(errors="replace").splitlines()
    valid = [line.split() for line in status if line.startswith("[GNUPG:] VALIDSIG ")]
    if proc.returncode != 0 or not valid:
        detail = " | ".join(ln for ln in proc.stderr.decode(errors="replace").splitlines() if ln.strip())[-300:]
        if any(line.startswith("[GNUPG:] NO_PUBKEY") for line in status):
            raise VerificationError(f"{signature}: made by a key that is not in {home}: {detail}",
                                    hint="import the release's public key (gpg --import) or pass --key-file")
        raise VerificationError(f"{signature}: BAD or unusable signature over {data.name}: {detail}",
                                hint="the sums were changed or the download is corrupt: do not use these files")
    fields = valid[0]
    signed_by = {fields[2].upper(), fields[-1].upper()}   # signing (sub)key and its primary key
    primary = fields[-1].upper()
    if expected is not None and normalise_fingerprint(expected, what="--key") not in signed_by:
        raise VerificationError(f"{signature}: signed by {primary}, not by the expected key {expected}",
                                hint="someone else signed these sums: do not use them")
    return primary
