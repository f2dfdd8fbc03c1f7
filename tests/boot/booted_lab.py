"""The booted lab, shared by the boot test's modules: the four VMs boot once per session.

`test_boot.py` proves the first boot on it, `test_boot_day_two.py` then changes it with `apply`
(issue 24: reuse the booted lab rather than boot a second one, to keep CI under its hour). The
VMs stop as soon as the next test does not use them, not at the end of the session: the broken
boots that follow need the two cores to themselves.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.boot import checks
from tests.boot.machines import Machine

if TYPE_CHECKING:
    from tests.boot.conftest import BootLab

BOOT_TIMEOUT = 1500         # four VMs on two cores take ~11 min, much longer when the host is busy
FIXTURE = "booted"
_RUNNING: list[contextlib.ExitStack] = []


@dataclass
class Booted:
    machines: dict[str, Machine]
    states: dict[str, str]          # is-system-running after the first boot
    seconds: float                  # until every node answered
    folder: Path


@pytest.fixture(scope="session")
def booted(bootlab: BootLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booted]:
    from tests.boot.conftest import vms  # conftest imports this module: its fixtures are found there

    folder = tmp_path_factory.mktemp("boot")
    specs = [bootlab.disk(n.name, folder / "disks") for n in bootlab.cluster.nodes]
    with contextlib.ExitStack() as stack:
        machines = stack.enter_context(vms(bootlab, specs, folder))
        _RUNNING.append(stack)
        try:
            started = time.monotonic()
            deadline = started + BOOT_TIMEOUT
            states = {name: checks.wait_booted(m, deadline) for name, m in machines.items()}
            yield Booted(machines, states, time.monotonic() - started, folder)
        finally:
            _RUNNING.remove(stack)


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop the lab (every VM killed, the LAN deleted) once the next test does not use it."""
    if _RUNNING and (nextitem is None or FIXTURE not in getattr(nextitem, "fixturenames", ())):
        for stack in list(_RUNNING):
            stack.close()
