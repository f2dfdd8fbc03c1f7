"""Issue item 1: the power button and the time server's UART/PPS, read from the produced boot partitions."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from builder.build import plan_job
from builder.config import load_cluster
from builder.image import open_image
from builder.provision.rendered_files import apply_boot_edits
from tests.built_images.conftest import Lab
from tests.built_images.image_reader import ImageReader, config_sections, sh

pytestmark = [pytest.mark.slow, pytest.mark.root]

SERIAL = ("console=serial0", "console=ttyAMA0", "console=ttyS0", "console=ttyAMA10")


def _all_lines(reader: ImageReader) -> list[str]:
    return [line for section, line in config_sections(reader.boot_text("config.txt")) if section == "[all]"]


def _board_lines(reader: ImageReader, board: str) -> list[str]:
    """What a Pi 4 or Pi 5 obeys: `[all]` and its own model filter."""
    return [line for section, line in config_sections(reader.boot_text("config.txt"))
            if section in ("[all]", f"[{board}]")]


def test_every_image_has_the_power_button_for_all_boards_and_keeps_the_base_lines(lab: Lab,
                                                                                  standin_image: Path) -> None:
    base = ImageReader(standin_image).boot_text("config.txt")
    for image in lab.all:
        config = image.boot_text("config.txt")
        assert config.startswith(base), f"{image.path.name}: the base image's config.txt lines must stay as they were"
        # Held three seconds (the cluster file's default power_button.hold_ms) before it shuts the node down.
        assert _all_lines(image).count("dtoverlay=gpio-shutdown,debounce=3000") == 1, image.path.name
        assert config.count("gpio-shutdown") == 1


def test_only_the_time_server_gets_the_uart_and_pps_and_loses_its_serial_console(lab: Lab,
                                                                                 standin_image: Path) -> None:
    base_cmdline = ImageReader(standin_image).boot_text("cmdline.txt").split()
    assert any(a.startswith(SERIAL) for a in base_cmdline), "the base must have a serial console to remove"
    gps = lab.roles["auxiliary"]
    assert "dtoverlay=pps-gpio,gpiopin=18" in _all_lines(gps)
    # gps is the role's only node, a Pi 4: its UART line under [pi4], no Pi 5 line at all.
    assert "enable_uart=1" in _board_lines(gps, "pi4") and "enable_uart=1" not in _all_lines(gps)
    assert "dtparam=uart0=on" not in gps.boot_text("config.txt")
    cmdline = gps.boot_text("cmdline.txt")
    assert cmdline.count("\n") == 1
    args = cmdline.split()
    assert not any(a.startswith(SERIAL) for a in args)
    assert "console=tty1" in args and [a for a in args if a.startswith("root=")] == \
        [a for a in base_cmdline if a.startswith("root=")]
    for image in (lab.roles["compute"], lab.roles["controller"], lab.node):
        assert "pps-gpio" not in image.boot_text("config.txt")
        assert "enable_uart=1" not in image.boot_text("config.txt")
        assert image.boot_text("cmdline.txt").split()[0] == base_cmdline[0], "others keep their serial console"


@pytest.mark.parametrize("ending", ["[cm5]\ndtoverlay=dwc2,dr_mode=host\n", "[pi4]\narm_boost=1"])
def test_lines_land_in_all_when_the_file_ends_in_a_board_section_and_twice_adds_nothing(
        lab: Lab, tmp_path: Path, ending: str) -> None:
    """A user's config.txt may end inside [cm5] or [pi4] (without a final newline, even): the build's
    boot step, run on a copy of the produced time-server image, must close that section first."""
    copy = tmp_path / "gps.img"
    subprocess.run(["cp", "--sparse=always", lab.roles["auxiliary"].path, copy], check=True)
    reader = ImageReader(copy)
    ours = ("dtoverlay=gpio-shutdown,debounce=3000", "dtoverlay=pps-gpio,gpiopin=18")
    built = reader.boot_text("config.txt")
    kept = built[:built.index("\n[pi4]\nenable_uart=1\n")].splitlines()
    kept = [line for line in kept if line not in ours]
    while kept and kept[-1].strip() in ("", "[all]"):
        kept.pop()
    user_config = "\n".join(kept) + "\n\n" + ending
    (tmp_path / "config.txt").write_text(user_config)
    sh("mcopy", "-o", "-i", f"{copy}@@{reader.boot_offset}", tmp_path / "config.txt", "::config.txt")

    [plan] = plan_job(load_cluster(lab.cluster_file), [("auxiliary", None)]).plans
    for _ in range(2):
        with open_image(copy) as img:
            apply_boot_edits(img, plan)

    config = reader.boot_text("config.txt")
    assert config.startswith(user_config), "the user's lines stay, in place"
    sections = config_sections(config)
    board = ending.split("]")[0] + "]"
    headers = [line.strip() for line in config.splitlines() if line.strip().startswith("[")]
    assert headers[-1] == "[all]" and (board, ending.splitlines()[1]) in sections
    for line in ours:
        assert [s for s, text in sections if text == line] == ["[all]"], line
    assert [s for s, text in sections if text == "enable_uart=1"] == ["[pi4]"]
    assert reader.boot_text("cmdline.txt").count("\n") == 1
