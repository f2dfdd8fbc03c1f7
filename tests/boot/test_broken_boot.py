"""Breaking one thing a real boot depends on fails the boot test with the node and the unit named.

A single compute VM (no cluster needed: the failure is the node's own) boots a copy of the
compute image whose first-boot munge-key service installs the key owned by root: munged, which
runs as `munge`, cannot read it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.boot import checks, disks
from tests.boot.conftest import BootLab, vms
from tests.boot.reports import REPORTS
from tests.build.image_reader import ImageReader

pytestmark = [pytest.mark.slow, pytest.mark.root]

MUNGE_KEY_UNIT = "/etc/systemd/system/clusterbake-munge-key.service"


def test_a_munge_key_owned_by_root_fails_naming_node_and_unit(bootlab: BootLab, tmp_path: Path) -> None:
    image = disks.sparse_copy(bootlab.images["compute"], tmp_path / "compute-root-munge-key.img")
    unit = ImageReader(image).text(MUNGE_KEY_UNIT)
    assert "-o munge -g munge" in unit, unit
    disks.replace_root_file(image, MUNGE_KEY_UNIT, unit.replace("-o munge -g munge", "-o root -g root").encode())
    spec = bootlab.disk("node01", tmp_path / "disks", image=image)
    with vms(bootlab, [spec], tmp_path) as machines:
        node = machines["node01"]
        started = time.monotonic()
        state = checks.wait_booted(node, started + 600)
        problems = checks.check_system(node, state)
    REPORTS.append(f"broken munge key owner: node01 answered after {time.monotonic() - started:.0f}s ({state}); "
                   f"the test said: {problems[0] if problems else 'nothing'}")
    assert any(p.startswith("node01: munge.service failed") for p in problems), "\n".join(problems) or state
