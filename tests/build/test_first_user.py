"""first_user: Raspberry Pi OS's first-boot user wizard (userconfig.service, from userconf-pi) is turned off.

The stand-in base has no userconf-pi, so no produced image here can show the missing link; this
checks the plan the build applies (disabling a unit the image lacks is a no-op by design).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from builder.build import BuildRequest, plan_build
from builder.config import load_cluster
from tests.build.conftest import lab_data, write_cluster
from tests.build.test_bad_input import UNREACHABLE


def test_the_user_wizard_is_disabled_only_when_the_cluster_names_a_first_user(tmp_path: Path) -> None:
    cluster = load_cluster(write_cluster(tmp_path / "c.yaml", lab_data(UNREACHABLE, tmp_path / "secrets")))
    for role in cluster.roles:
        plan = plan_build(BuildRequest(cluster=cluster, role=role, secrets=False))
        assert "userconfig.service" in plan.disable and "userconfig.service" not in plan.enable
    without = dataclasses.replace(cluster, first_user=None)
    assert "userconfig.service" not in plan_build(BuildRequest(cluster=without, node="c1", secrets=False)).disable
