"""first_user: the plan turns Raspberry Pi OS's first-boot user wizard (userconf-pi) off only when the
cluster file names a user. What the built images then look like is in test_first_boot.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from builder.build import plan_job
from builder.config import load_cluster
from tests.built_images.conftest import lab_data, write_cluster
from tests.built_images.test_bad_input import UNREACHABLE


def test_the_user_wizard_is_turned_off_only_when_the_cluster_names_a_first_user(tmp_path: Path) -> None:
    cluster = load_cluster(write_cluster(tmp_path / "c.yaml", lab_data(UNREACHABLE, tmp_path / "secrets")))
    for plan in plan_job(cluster, [(role, None) for role in cluster.roles], secrets=False).plans:
        assert "userconfig.service" in plan.disable and "userconfig.service" not in plan.enable
        assert plan.mask == ("userconfig.service",)
        assert "getty@tty1.service" in plan.enable
        assert "/etc/ssh/sshd_config.d/rename_user.conf" in plan.remove
    [without] = plan_job(dataclasses.replace(cluster, first_user=None), [(None, "c1")], secrets=False).plans
    assert "userconfig.service" not in without.disable and not without.mask
    assert "getty@tty1.service" not in without.enable


def test_the_preset_file_agrees_with_the_role(tmp_path: Path) -> None:
    cluster = load_cluster(write_cluster(tmp_path / "c.yaml", lab_data(UNREACHABLE, tmp_path / "secrets")))
    [plan] = plan_job(cluster, [("compute", None)], secrets=False).plans
    presets = {f.path: f for f in plan.files}["/etc/systemd/system-preset/00-clusterbake.preset"].data.decode()
    lines = [line for line in presets.splitlines() if not line.startswith("#")]
    assert "enable slurmd.service" in lines and "enable getty@.service tty1" in lines
    assert "disable systemd-timesyncd.service" in lines and "disable userconfig.service" in lines
