"""The EEPROM step: a compute node marked boot: network, booted once from the role image's card, sets its
bootloader to try the SD card and then the network, and says so in the journal.

The files are judged as rendered (the role image's inventory, a node image) and the script is run with
dash, as the node runs it. rpi-eeprom-config itself is Raspberry Pi's (package rpi-eeprom, not in Debian,
so not installable here): the script meets a stand-in on PATH that prints the settings in force and records
what it is asked to apply. That stand-in is the one faked binary of these tests.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from builder.config import Cluster
from builder.render import render_plan
from tests.netboot.tree_support import ROOT, netboot_cluster

UNIT = "clusterbake-bootloader.service"
CONF = "/etc/clusterbake/bootloader.conf"
SCRIPT = ROOT / "overlays/bootloader/usr/local/lib/clusterbake/bootloader-order"


@pytest.fixture
def cluster(tmp_path: Path, data: dict) -> Cluster:  # type: ignore[type-arg]
    del next(n for n in data["nodes"] if n["name"] == "node02")["serial"]   # node02: known by its MAC only
    return netboot_cluster(tmp_path, data)


def settings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def inventory_file(cluster: Cluster, node: str) -> str:
    plan = render_plan(cluster, role="compute", secrets=False, profiles_dir=ROOT / "profiles",
                       overlays_dir=ROOT / "overlays")
    [inventory] = [f for f in plan.files if f.path == "/etc/clusterbake/inventory.json"]
    [entry] = [n for n in json.loads(inventory.data)["nodes"] if n["name"] == node]
    [conf] = [f for f in entry["files"] if f["path"] == CONF]
    return str(conf["text"])


def test_each_node_of_the_role_image_gets_its_own_settings_at_first_boot(cluster: Cluster) -> None:
    assert settings(inventory_file(cluster, "node01")) == ["BOOT_ORDER=0xf21"]          # SD (1), network (2), again
    assert settings(inventory_file(cluster, "node02")) == ["BOOT_ORDER=0xf21", "TFTP_PREFIX=2"]   # its MAC names it
    assert settings(inventory_file(cluster, "node03")) == []                             # boots from its card


def test_the_compute_image_runs_the_unit_after_the_identity_service(cluster: Cluster) -> None:
    plan = render_plan(cluster, role="compute", secrets=False, profiles_dir=ROOT / "profiles",
                       overlays_dir=ROOT / "overlays")
    assert UNIT in plan.enable
    files = {f.path: f for f in plan.files}
    assert files["/usr/local/lib/clusterbake/bootloader-order"].mode == 0o755
    unit = files[f"/etc/systemd/system/{UNIT}"].data.decode()
    assert "After=clusterbake-identity.service" in unit and f"ConditionPathExists={CONF}" in unit
    # A board already booted from the network has nothing to set (and no card): the first diskless VM boot
    # failed here, its root having no rpi-eeprom-config.
    assert "ConditionKernelCommandLine=!root=/dev/nfs" in unit.splitlines()
    node = render_plan(cluster, node="node01", secrets=False, profiles_dir=ROOT / "profiles",
                       overlays_dir=ROOT / "overlays")
    assert settings({f.path: f for f in node.files}[CONF].data.decode()) == ["BOOT_ORDER=0xf21"]
    controller = render_plan(cluster, role="controller", secrets=False, profiles_dir=ROOT / "profiles",
                             overlays_dir=ROOT / "overlays")
    assert UNIT not in controller.enable and CONF not in {f.path for f in controller.files}


FAKE_EEPROM_CONFIG = """#!/bin/sh
# Stand-in for Raspberry Pi's rpi-eeprom-config (not in Debian): prints the settings in force, records --apply.
if [ "$#" -eq 0 ]; then cat "$FAKE_EEPROM"; exit 0; fi
[ "$1" = --apply ] && cp "$2" "$FAKE_EEPROM.applied" && exit 0
exit 2
"""


def run_script(tmp_path: Path, wanted: str | None, current: str, *,
               tool: bool = True) -> subprocess.CompletedProcess[str]:
    root = tmp_path / "root"
    (root / "etc/clusterbake").mkdir(parents=True, exist_ok=True)
    if wanted is not None:
        (root / CONF.lstrip("/")).write_text(wanted)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if tool:
        (bin_dir / "rpi-eeprom-config").write_text(FAKE_EEPROM_CONFIG)
        (bin_dir / "rpi-eeprom-config").chmod(0o755)
    (tmp_path / "eeprom.txt").write_text(current)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CLUSTERBAKE_ROOT": str(root),
           "FAKE_EEPROM": str(tmp_path / "eeprom.txt")}
    return subprocess.run(["dash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)


EEPROM = "[all]\nBOOT_UART=0\nWAKE_ON_GPIO=1\nBOOT_ORDER=0xf41\n"


def test_a_marked_board_gets_sd_then_network_and_keeps_its_other_settings(tmp_path: Path) -> None:
    result = run_script(tmp_path, "# comment\nBOOT_ORDER=0xf21\nTFTP_PREFIX=2\n", EEPROM)
    assert result.returncode == 0, result.stderr
    applied = (tmp_path / "eeprom.txt.applied").read_text().splitlines()
    assert applied == ["[all]", "BOOT_UART=0", "WAKE_ON_GPIO=1", "BOOT_ORDER=0xf21", "TFTP_PREFIX=2"]
    assert result.stdout == ("clusterbake-bootloader: bootloader set: BOOT_ORDER=0xf21 TFTP_PREFIX=2 (SD card first, "
                             "then the network); written at the next reboot\n")


def test_a_board_already_set_is_left_alone(tmp_path: Path) -> None:
    result = run_script(tmp_path, "BOOT_ORDER=0xf21\n", EEPROM.replace("0xf41", "0xf21"))
    assert result.returncode == 0 and not (tmp_path / "eeprom.txt.applied").exists()
    assert result.stdout == "clusterbake-bootloader: bootloader already set: BOOT_ORDER=0xf21\n"


def test_a_board_booting_from_its_card_is_left_alone(tmp_path: Path) -> None:
    result = run_script(tmp_path, "# boots from its SD card\n", EEPROM)
    assert result.returncode == 0 and not (tmp_path / "eeprom.txt.applied").exists()
    assert "not boot: network" in result.stdout


def test_without_rpi_eeprom_config_the_unit_fails_naming_the_package(tmp_path: Path) -> None:
    result = run_script(tmp_path, "BOOT_ORDER=0xf21\n", EEPROM, tool=False)
    assert result.returncode == 1
    assert "rpi-eeprom-config is missing (Raspberry Pi's package rpi-eeprom)" in result.stdout
    assert os.access(SCRIPT, os.X_OK)
