"""Edits of the boot partition's config.txt and cmdline.txt, as pure text functions.

config.txt is read top to bottom with conditional sections: `[pi4]`, `[cm5]`, `[gpio4=1]` …
apply only below their header until the next one, and `[all]` ends them. A line meant for
every board must therefore sit where `[all]` (or no section yet) is in force.
"""

from __future__ import annotations

from collections.abc import Sequence

from builder.errors import InputError
from builder.render.gpio import claims_of_line

SERIAL_CONSOLES = ("serial0", "ttyAMA0", "ttyAMA10", "ttyS0")


def apply_config_txt(text: str, lines: Sequence[str],
                     by_board: Sequence[tuple[str, Sequence[str]]] = ()) -> str:
    """Add `lines` for all boards, and each board's own lines under its filter (`[pi5]` …, then `[all]`).

    Lines already in force (for all boards, or for that board) are not repeated.
    """
    present, in_all = _in_force(text, None)
    missing = [line for line in dict.fromkeys(s.strip() for s in lines) if line and line not in present]
    _check_pins(present, missing)
    out = text
    if missing:
        out = out if not out or out.endswith("\n") else out + "\n"
        if not in_all:
            # The file ends inside a board section: close it, or the lines would only apply to that board.
            out += "\n[all]\n"
        out += "".join(f"{line}\n" for line in missing)
    for board, board_lines in by_board:
        for_board, _ = _in_force(out, board)
        wanted = [line for line in dict.fromkeys(s.strip() for s in board_lines) if line and line not in for_board]
        _check_pins(for_board, wanted)
        if wanted:
            out = out if not out or out.endswith("\n") else out + "\n"
            out += f"\n[{board}]\n" + "".join(f"{line}\n" for line in wanted) + "[all]\n"
    return out


def _in_force(text: str, board: str | None) -> tuple[set[str], bool]:
    """The lines in force for every board (board None), or for `board`; and whether `[all]` is in force
    at the end of the file. Other filters (`[cm5]`, `[gpio4=1]` …) are read as not applying."""
    applies, at_all = True, True
    present: set[str] = set()
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].lower()
            at_all = section == "all"
            applies = at_all or section == board
        elif applies and line and not line.startswith("#"):
            present.add(line)
    return present, at_all


def apply_cmdline(text: str, *, remove_serial_console: bool, add: Sequence[str] = ()) -> str:
    """cmdline.txt stays one line: drop serial consoles if asked, append `add` arguments not there yet."""
    args = text.split()
    if remove_serial_console:
        args = [a for a in args if not _is_serial_console(a)]
    args += [a for a in dict.fromkeys(add) if a not in args]
    return " ".join(args) + "\n"


def _is_serial_console(arg: str) -> bool:
    key, _, value = arg.partition("=")
    return key == "console" and value.split(",", 1)[0] in SERIAL_CONSOLES


def _check_pins(present: set[str], adding: Sequence[str]) -> None:
    """The base image's own config.txt may already use a pin we need (someone enabled I2C)."""
    used = {claim.pin: claim.what for line in sorted(present) for claim in claims_of_line(line, "config.txt")}
    for line in adding:
        for claim in claims_of_line(line, "profile"):
            if claim.pin in used and used[claim.pin] != claim.what:
                raise InputError(
                    f"config.txt: {used[claim.pin]!r} (already in the base image for all boards) uses "
                    f"GPIO{claim.pin}, which {line!r} needs",
                    hint=f"remove or comment out {used[claim.pin]!r} in the base image's config.txt")
