"""Breaking one thing a real boot depends on fails the boot test with the node and the unit named.

Three copies of the compute image (of the lab without its file server: alone, a node could not
mount the homes its SSH keys are in), each broken in one way, boot at once as node01, each alone
on a LAN of its own (the failure is the node's own: no cluster needed):
- the first-boot munge-key service installs the key owned by root: munged, which runs as
  `munge`, cannot read it;
- the identity service writes the node's NetworkManager keyfile with mode 0644: NetworkManager
  refuses a keyfile others can read, so the node never takes its address (SSH cannot reach it:
  the harness powers it off and reads its journal off its disk);
- the munge-key service is ordered after multi-user.target, a target that cannot come before it
  (munge, which multi-user.target waits for, waits for it): systemd breaks the cycle by dropping
  a job, and nothing is "failed".
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.boot import checks, disks
from tests.boot.conftest import SERVICES, BootLab, vms
from tests.boot.machines import Machine
from tests.built_images.image_reader import ImageReader
from tests.reports import report

pytestmark = [pytest.mark.slow, pytest.mark.root]

MUNGE_KEY_UNIT = "/etc/systemd/system/clusterbake-munge-key.service"
INVENTORY = "/etc/clusterbake/inventory.json"
# Three VMs on two cores reach their login prompts in about 6 minutes with nothing else running;
# this bounds a boot that went wrong (a node up but unreachable is given up on sooner).
BOOT_TIMEOUT = 1500
# The breakage that keeps the node off the network is given up on 120 s after its login prompt, not the
# 300 s a working node's sshd may need on a busy host: it never answers (its journal then says why), and
# the wait was the largest part of the boot folder's time kept for nothing.
NEVER_ON_THE_NETWORK = "keyfile-0644"
UNREACHABLE_GRACE = 120


def munge_key_owned_by_root(image: Path) -> None:
    unit = ImageReader(image).text(MUNGE_KEY_UNIT)
    assert "-o munge -g munge" in unit, unit
    disks.replace_root_file(image, MUNGE_KEY_UNIT, unit.replace("-o munge -g munge", "-o root -g root").encode())


def keyfile_readable_by_all(image: Path) -> None:
    inventory = json.loads(ImageReader(image).text(INVENTORY))
    keyfiles = [f for node in inventory["nodes"] for f in node["files"] if f["path"].endswith(".nmconnection")]
    assert keyfiles and all(f["mode"] == 0o600 for f in keyfiles), keyfiles
    for f in keyfiles:
        f["mode"] = 0o644
    disks.replace_root_file(image, INVENTORY, json.dumps(inventory).encode())


def munge_key_after_multi_user(image: Path) -> None:
    unit = ImageReader(image).text(MUNGE_KEY_UNIT)
    assert "Before=munge.service\n" in unit, unit
    disks.replace_root_file(image, MUNGE_KEY_UNIT,
                            unit.replace("Before=munge.service\n",
                                         "Before=munge.service\nAfter=multi-user.target\n").encode())


BREAKAGES: dict[str, Callable[[Path], None]] = {
    "munge-key-owner": munge_key_owned_by_root,
    "keyfile-0644": keyfile_readable_by_all,
    "ordering-cycle": munge_key_after_multi_user,
}


@dataclass
class Broken:
    machine: Machine
    problems: list[str]
    seconds: float


@pytest.fixture(scope="module")
def broken(bootlab: BootLab, lone_compute: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Broken]]:
    """Each breakage booted as node01 on its own LAN, all at once; the problems the checks found."""
    folder = tmp_path_factory.mktemp("broken")
    with contextlib.ExitStack() as stack:
        machines = {}
        for name, breakage in BREAKAGES.items():
            image = disks.sparse_copy(lone_compute, folder / name / "compute.img")
            breakage(image)
            spec = bootlab.disk("node01", folder / name / "disks", image=image)
            machines[name] = stack.enter_context(vms(bootlab, [spec], folder / name))["node01"]
        started = time.monotonic()
        found = {}
        for name, node in machines.items():
            grace = UNREACHABLE_GRACE if name == NEVER_ON_THE_NETWORK else checks.LOGIN_GRACE
            state = checks.wait_booted(node, started + BOOT_TIMEOUT, login_grace=grace)
            problems = checks.check_system(node, state, SERVICES["compute"])
            if state in ("unreachable", "powered off"):
                problems += checks.journal_problems(node, folder / name)
            found[name] = Broken(node, problems, time.monotonic() - started)
            report("boot test report", f"broken ({name}): node01 {state} after {time.monotonic() - started:.0f}s; "
                           f"the test said: {problems[:3] or 'nothing'}")
        yield found


def failure(case: Broken) -> str:
    return "\n".join(case.problems or ["the checks found nothing wrong"]) + "\n" + case.machine.console_tail()


def test_a_munge_key_owned_by_root_fails_naming_node_and_unit(broken: dict[str, Broken]) -> None:
    case = broken["munge-key-owner"]
    assert any(re.match(r"node01: munge\.service (is )?failed", p) for p in case.problems), failure(case)


def test_a_keyfile_readable_by_all_fails_naming_node_and_unit(broken: dict[str, Broken]) -> None:
    case = broken["keyfile-0644"]
    assert any(p.startswith("node01: no SSH answer") for p in case.problems), failure(case)
    assert any(p.startswith("node01: NetworkManager.service: ") and "eth0.nmconnection" in p
               for p in case.problems), failure(case)


def test_a_unit_ordered_after_a_target_that_never_comes_fails_naming_node_and_unit(
        broken: dict[str, Broken]) -> None:
    case = broken["ordering-cycle"]
    assert any(p.startswith("node01: ") and "was dropped from the boot" in p and "ordering cycle" in p
               for p in case.problems), failure(case)
    assert any(p.startswith(("node01: munge.service", "node01: clusterbake-munge-key.service"))
               for p in case.problems), failure(case)
