"""What the proofs tell at the end of the session: pytest captures a test's own output.

A boot or cluster test calls `report(section, text)`; `tests/conftest.py` prints every section
in the terminal summary, in the order the sections were first reported.
"""

from __future__ import annotations

import pytest

_SECTIONS: dict[str, list[str]] = {}


def report(section: str, text: str) -> None:
    """Keep `text` for the end of the session, under `section` (e.g. "boot test report")."""
    _SECTIONS.setdefault(section, []).append(text)


def print_reports(terminalreporter: pytest.TerminalReporter) -> None:
    for section, texts in _SECTIONS.items():
        terminalreporter.section(section)
        for text in texts:
            terminalreporter.write_line(text)
