"""The project's errors: each carries a one-line message, a hint and an exit code.

Exit codes (the CLI contract): 0 success, 1 bad input or failed verification,
2 environment problem (missing tool, not root, no network).
"""

from __future__ import annotations


class ClusterbakeError(Exception):
    """An expected failure: printed as one line, never as a traceback."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = " ".join(self.message.split())
        if self.hint:
            text += f" (fix: {' '.join(self.hint.split())})"
        return text


class InputError(ClusterbakeError):
    """The cluster file, a profile, an overlay or an argument is wrong."""


class VerificationError(ClusterbakeError):
    """A download or an image failed a check (hash, signature, fsck)."""


class EnvironmentProblem(ClusterbakeError):
    """The machine lacks something: a tool, root, the network, a kernel feature."""

    exit_code = 2


class CommandFailed(ClusterbakeError):
    """An external command exited non-zero; the message carries its stderr tail."""


class Interrupted(ClusterbakeError):
    """SIGINT or SIGTERM arrived; raised so every ExitStack unwinds. Exits 128 + the signal's number."""

    exit_code = 130

    def __init__(self, message: str, signum: int = 2) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


# What crosses a process boundary (a layer built in a child): the kind, the message and the hint,
# so the parent raises the child's error as it was, not a CommandFailed with the hint in its text.
KINDS: dict[str, type[ClusterbakeError]] = {
    kind.__name__: kind for kind in (InputError, VerificationError, EnvironmentProblem, CommandFailed)}


def error_report(exc: ClusterbakeError) -> dict[str, object]:
    """A picklable account of `exc` for another process (see reported_error)."""
    return {"kind": type(exc).__name__, "message": exc.message, "hint": exc.hint, "exit_code": exc.exit_code}


def reported_error(report: dict[str, object], where: str) -> ClusterbakeError:
    """The error an error_report describes, its message prefixed with `where`; an unknown kind is a
    ClusterbakeError with the same exit code."""
    message, hint = f"{where}: {report['message']}", report.get("hint")
    code = int(str(report.get("exit_code", 1)))
    if report.get("kind") == Interrupted.__name__ or code >= 128:
        return Interrupted(message, code - 128 if code >= 128 else 2)
    kind = KINDS.get(str(report.get("kind")))
    if kind is not None:
        return kind(message, hint=None if hint is None else str(hint))
    error = ClusterbakeError(message, hint=None if hint is None else str(hint))
    error.exit_code = code
    return error
