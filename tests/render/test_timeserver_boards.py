"""A Pi 5 as the time server: GPIO14/15 is UART0 there (`dtparam=uart0=on`, /dev/ttyAMA0), and
/dev/serial0 is the debug connector. A Pi 4 keeps `enable_uart=1` and /dev/serial0. A role image
whose nodes mix both boards carries each board's lines under its own `[pi4]`/`[pi5]` filter.

config.txt is judged by reading it the way the firmware does for each board (filters apply until
the next `[…]`, `[all]` ends them), independent of the code that wrote it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from builder.config import Cluster
from builder.errors import InputError
from builder.render import RenderPlan, apply_config_txt, load_profile
from tests.render.render_support import plan, text
from tests.render.test_configtxt import reference_text
from tests.render.test_profiles import write_profiles


def in_force(config: str, board: str) -> list[str]:
    """The lines a Pi 4 or Pi 5 obeys: those under no filter, `[all]`, or its own model filter."""
    applies, lines = True, []
    for raw in config.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            applies = line[1:-1] in ("all", board)
        elif applies and line and not line.startswith("#"):
            lines.append(line)
    return lines


def config_of(p: RenderPlan) -> str:
    return apply_config_txt(reference_text(), p.config_txt_lines, p.config_txt_boards)


def gpsd_devices(gpsd: str) -> str:
    values = dict(line.split("=", 1) for line in gpsd.splitlines() if line and not line.startswith("#"))
    return values["DEVICES"].strip('"')


def with_clock_model(small: Cluster, model: str, *more: tuple[str, str]) -> Cluster:
    models = {"clock": model, **dict(more)}
    nodes = tuple(dataclasses.replace(n, model=models[n.name]) if n.name in models else n for n in small.nodes)
    return dataclasses.replace(small, nodes=nodes)


def test_a_pi5_time_server_uses_uart0_on_gpio14_15(small: Cluster) -> None:
    p = plan(with_clock_model(small, "pi5-8gb"), node="clock")
    config = config_of(p)
    pi5 = in_force(config, "pi5")
    assert "dtparam=uart0=on" in pi5 and "dtoverlay=pps-gpio,gpiopin=18" in pi5
    assert "enable_uart=1" not in pi5      # on a Pi 5 that is the debug connector's UART
    assert gpsd_devices(text(p, "/etc/default/gpsd")) == "/dev/ttyAMA0 /dev/pps0"
    assert "[pi4]" not in config.split("[cm5]")[-1]    # no Pi 4 among its boards: no [pi4] lines added


def test_a_pi4_time_server_keeps_enable_uart_and_serial0(small: Cluster) -> None:
    p = plan(small, node="clock")      # a pi4-4gb
    config = config_of(p)
    pi4 = in_force(config, "pi4")
    assert "enable_uart=1" in pi4 and "dtoverlay=pps-gpio,gpiopin=18" in pi4
    assert "dtparam=uart0=on" not in pi4
    assert gpsd_devices(text(p, "/etc/default/gpsd")) == "/dev/serial0 /dev/pps0"


def test_a_role_image_mixing_pi4_and_pi5_filters_each_boards_lines(small: Cluster) -> None:
    cluster = with_clock_model(small, "pi5-4gb")
    cluster = dataclasses.replace(cluster, nodes=(*cluster.nodes, dataclasses.replace(
        small.node("clock"), name="clock2", ip=small.node("clock").ip + 100, serial="10000000c10c4a12")))
    p = plan(cluster, role="timeserver")
    config = config_of(p)
    pi4, pi5 = in_force(config, "pi4"), in_force(config, "pi5")
    assert "enable_uart=1" in pi4 and "dtparam=uart0=on" not in pi4
    assert "dtparam=uart0=on" in pi5 and "enable_uart=1" not in pi5
    for lines in (pi4, pi5):
        assert {"dtoverlay=gpio-shutdown,debounce=3000", "dtoverlay=pps-gpio,gpiopin=18"} <= set(lines)
    assert [line for line in config.splitlines() if line.startswith("[")][-1] == "[all]"
    # Each node's gpsd device is in the inventory the identity service installs at first boot.
    inventory = json.loads(text(p, "/etc/clusterbake/inventory.json"))
    devices = {n["name"]: gpsd_devices(next(f["text"] for f in n["files"] if f["path"] == "/etc/default/gpsd"))
               for n in inventory["nodes"]}
    assert devices == {"clock": "/dev/ttyAMA0 /dev/pps0", "clock2": "/dev/serial0 /dev/pps0"}
    assert "After=clusterbake-identity.service" in text(p, "/etc/systemd/system/gpsd.service.d/clusterbake.conf")


def test_board_lines_are_added_once() -> None:
    boards = (("pi4", ("enable_uart=1",)), ("pi5", ("dtparam=uart0=on",)))
    once = apply_config_txt(reference_text(), ["dtoverlay=gpio-shutdown"], boards)
    assert apply_config_txt(once, ["dtoverlay=gpio-shutdown"], boards) == once


@pytest.mark.parametrize("board", ["pi4", "pi5"])
def test_another_use_of_the_uart_pins_is_refused_for_that_board(board: str) -> None:
    line = "enable_uart=1" if board == "pi4" else "dtparam=uart0=on"
    with pytest.raises(InputError, match="GPIO14"):
        apply_config_txt(f"dtoverlay=uart0,txd0_pin=14\n[{board}]\n", [], ((board, (line,)),))


def test_config_txt_boards_knows_only_the_boards_clusterbake_builds_for(tmp_path: Path) -> None:
    folder = write_profiles(tmp_path, odd="config_txt_boards: {pi3: [enable_uart=1]}\n")
    with pytest.raises(InputError, match=r"profiles/odd\.yaml: config_txt_boards\.pi3: unknown key"):
        load_profile(folder, "odd")
