"""Reports of the boot test, printed at the end of the session (pytest captures test output)."""

REPORTS: list[str] = []
