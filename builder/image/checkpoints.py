"""Named points in the engine's work where a test can inject a fault (an exception or a signal).

The fault-injection tests drive a real build in a subprocess and, through this hook, raise or
send themselves SIGINT/SIGTERM/SIGKILL at one stage, then check that nothing was left behind.
Production code never sets the hook.
"""

from __future__ import annotations

from collections.abc import Callable

STAGES = ("root-attached", "root-mounted", "chroot-entered", "boot-writeback")

_hook: Callable[[str], None] | None = None


def set_checkpoint_hook(hook: Callable[[str], None] | None) -> None:
    global _hook
    _hook = hook


def checkpoint(stage: str) -> None:
    if _hook is not None:
        _hook(stage)
