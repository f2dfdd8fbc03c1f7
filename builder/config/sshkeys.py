"""OpenSSH public keys, parsed rather than pattern-matched: what goes into authorized_keys is a key.

A line is `TYPE BASE64 [COMMENT]`. The blob must decode, name the same type as the line, and
hold exactly the fields of that type; options before the type (`command="…"`, `from=`) are
refused, since no setting of the cluster file documents them.
"""

from __future__ import annotations

import base64
import binascii
import struct

from builder.config.grammar import control_problem

MAX_LINE = 4096
MIN_RSA_BITS = 2048

# The fields after the type name, per type: "string" or "mpint" (RFC 4253, RFC 5656, PROTOCOL.u2f).
KEY_FIELDS: dict[str, tuple[str, ...]] = {
    "ssh-ed25519": ("string",),
    "ssh-rsa": ("mpint", "mpint"),
    "ecdsa-sha2-nistp256": ("string", "string"),
    "ecdsa-sha2-nistp384": ("string", "string"),
    "ecdsa-sha2-nistp521": ("string", "string"),
    "sk-ssh-ed25519@openssh.com": ("string", "string"),
    "sk-ecdsa-sha2-nistp256@openssh.com": ("string", "string", "string"),
}


class _Blob:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def string(self) -> bytes:
        if self.offset + 4 > len(self.data):
            raise ValueError("ends inside a length")
        (size,) = struct.unpack_from(">I", self.data, self.offset)
        start = self.offset + 4
        if start + size > len(self.data):
            raise ValueError("is shorter than its fields say")
        self.offset = start + size
        return self.data[start:self.offset]

    @property
    def rest(self) -> int:
        return len(self.data) - self.offset


def ssh_key_problem(line: str) -> str | None:
    """None for one good public key line, else what is wrong with it."""
    if len(line) > MAX_LINE:
        return f"is {len(line)} characters long; a public key line is at most {MAX_LINE}"
    problem = control_problem(line)
    if problem is not None:
        return problem + "; give each key as its own list item"
    words = line.split(None, 2)
    if not words:
        return "is empty"
    kind = words[0]
    if kind not in KEY_FIELDS:
        if any(kind.startswith(p) for p in ("command=", "from=", "no-", "restrict", "environment=", "permit")):
            return "starts with authorized_keys options; only the key itself is accepted"
        if "PRIVATE KEY" in line:
            return "is a PRIVATE key; paste the .pub file instead"
        return f"has the unknown key type {kind[:40]!r} (known: {', '.join(KEY_FIELDS)})"
    if len(words) < 2:
        return "has no key data after the type"
    try:
        blob = _Blob(base64.b64decode(words[1], validate=True))
    except (binascii.Error, ValueError):
        return "has key data that is not base64"
    try:
        stated = blob.string()
        if stated != kind.encode():
            return f"says {kind} but its key data is a {stated[:40].decode('ascii', 'replace')!r} key"
        fields = [blob.string() for _ in KEY_FIELDS[kind]]
    except ValueError as exc:
        return f"has key data that {exc}"
    if blob.rest:
        return f"has {blob.rest} bytes after the key's fields"
    return _field_problem(kind, fields)


def _field_problem(kind: str, fields: list[bytes]) -> str | None:
    if kind in ("ssh-ed25519", "sk-ssh-ed25519@openssh.com") and len(fields[0]) != 32:
        return f"has an Ed25519 key of {len(fields[0])} bytes, not 32"
    if kind == "ssh-rsa":
        bits = int.from_bytes(fields[1], "big").bit_length()
        if bits < MIN_RSA_BITS:
            return f"is a {bits}-bit RSA key; at least {MIN_RSA_BITS} bits"
    if kind.startswith(("ecdsa-", "sk-ecdsa-")):
        curve = kind.split("@")[0].rsplit("-", 1)[1]
        if fields[0] != curve.encode():
            return f"says curve {curve} but its key data names {fields[0][:20].decode('ascii', 'replace')!r}"
    return None
