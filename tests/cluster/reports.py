"""Reports of the cluster runs, printed at the end of the session (pytest captures test output)."""

REPORTS: list[str] = []
