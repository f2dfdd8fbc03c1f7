"""SHA256SUMS: one `<hex>  <name>` line per artefact, in sha256sum's format, checked the same way."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from builder.acquire.checksum import sha256_file
from builder.errors import InputError, VerificationError

SUMS = "SHA256SUMS"


def write_sums(folder: Path, names: Iterable[str]) -> Path:
    """Write folder/SHA256SUMS over `names` (files in `folder`), sorted so the file is stable."""
    lines = [f"{sha256_file(folder / name)}  {name}\n" for name in sorted(names)]
    sums = folder / SUMS
    sums.write_text("".join(lines))
    return sums


def read_sums(sums: Path) -> dict[str, str]:
    """name → hex digest from a sha256sum-format file (text ` ` or binary `*` marker)."""
    entries: dict[str, str] = {}
    for number, line in enumerate(sums.read_text().splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, name = line.partition(" ")
        name = name[1:] if name[:1] in (" ", "*") else name
        if not sep or len(digest) != 64 or not name or "/" in name:
            raise InputError(f"{sums}: line {number}: not a '<sha256>  <file name>' line",
                             hint="regenerate it with `make release`")
        entries[name] = digest.lower()
    return entries


def check_sums(sums: Path) -> list[str]:
    """Like `sha256sum -c`: every listed file exists beside `sums` with its digest; return the names."""
    entries = read_sums(sums)
    if not entries:
        raise VerificationError(f"{sums}: lists no files", hint="regenerate it with `make release`")
    for name, digest in entries.items():
        path = sums.parent / name
        if not path.is_file():
            raise VerificationError(f"{sums}: lists {name}, which is missing", hint="download every release file")
        actual = sha256_file(path)
        if actual != digest:
            raise VerificationError(f"{path}: SHA-256 {actual} differs from {digest} in {sums.name}",
                                    hint="the file is corrupt or was changed: download it again")
    return sorted(entries)
