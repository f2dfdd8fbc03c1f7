"""config.txt and cmdline.txt edits: land for all boards whatever the file's last section, once."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import InputError
from builder.render import apply_cmdline, apply_config_txt

REFERENCE = Path(__file__).resolve().parents[2] / "builder" / "demo" / "raspios-config.txt"
LINES = ["dtoverlay=gpio-shutdown", "enable_uart=1", "dtoverlay=pps-gpio,gpiopin=18"]


def sections(text: str) -> dict[str, list[str]]:
    """Which lines apply under which filter, read the way the firmware does (independent of the code)."""
    current = "[all]"
    out: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            current = line
        elif line and not line.startswith("#"):
            out.setdefault(current, []).append(line)
    return out


def reference_text() -> str:
    if REFERENCE.exists():
        return REFERENCE.read_text()
    return "arm_64bit=1\n\n[cm4]\notg_mode=1\n\n[cm5]\ndtoverlay=dwc2,dr_mode=host\n\n[all]\n"


@pytest.mark.parametrize("ending", ["[cm5]\ndtoverlay=dwc2,dr_mode=host\n", "[pi4]\narm_boost=1", "[all]\n", ""])
def test_lines_apply_to_all_boards_whatever_the_last_section(ending: str) -> None:
    original = "dtparam=audio=on\ncamera_auto_detect=1\n" + ending
    out = apply_config_txt(original, LINES)
    assert out.startswith(original)                      # existing lines stay, in place
    assert out.endswith("\n")
    last_header = [line for line in out.splitlines() if line.startswith("[")][-1:] or ["[all]"]
    assert last_header == ["[all]"]
    tail = out.split("[all]")[-1] if "[all]" in out else out
    assert [line for line in LINES if line in tail.splitlines()] == LINES
    assert out.count("[all]") == (0 if not ending else 1)
    for section, lines in sections(out).items():
        if section != "[all]":
            assert not set(LINES) & set(lines), f"{section} got a line meant for every board"


def test_reference_config_txt_keeps_every_line_and_ends_in_all() -> None:
    original = reference_text()
    out = apply_config_txt(original, LINES)
    assert out.startswith(original)
    assert sections(out)["[cm5]"] == sections(original)["[cm5]"]
    assert sections(out)["[all]"][-3:] == LINES


@pytest.mark.parametrize("ending", ["[cm5]\nx=1\n", "[pi4]\n", "[all]\n"])
def test_applying_twice_changes_nothing(ending: str) -> None:
    once = apply_config_txt("a=1\n" + ending, LINES)
    assert apply_config_txt(once, LINES) == once
    assert once.count("dtoverlay=gpio-shutdown") == 1


def test_line_already_in_force_for_all_is_not_repeated_but_one_in_a_board_section_is() -> None:
    text = "dtoverlay=gpio-shutdown\n[pi4]\nenable_uart=1\n"
    out = apply_config_txt(text, ["dtoverlay=gpio-shutdown", "enable_uart=1"])
    assert out == text + "\n[all]\nenable_uart=1\n"


def test_missing_final_newline_is_added_before_appending() -> None:
    assert apply_config_txt("a=1", ["b=2"]) == "a=1\nb=2\n"


def test_a_base_image_line_using_a_pin_we_need_is_an_error() -> None:
    with pytest.raises(InputError) as info:
        apply_config_txt("dtparam=i2c_arm=on\n[all]\n", LINES)
    assert info.value.one_line() == (
        "config.txt: 'dtparam=i2c_arm=on' (already in the base image for all boards) uses GPIO3, which "
        "'dtoverlay=gpio-shutdown' needs (fix: remove or comment out 'dtparam=i2c_arm=on' in the base image's "
        "config.txt)")
    # Commented out, or only for another board: no conflict on ours.
    assert apply_config_txt("#dtparam=i2c_arm=on\n[cm4]\ndtparam=i2c_arm=on\n", LINES).endswith(
        "[all]\n" + "".join(f"{line}\n" for line in LINES))


CMDLINE = ("console=serial0,115200 console=tty1 root=PARTUUID=1234abcd-02 rootfstype=ext4 fsck.repair=yes "
           "rootwait resize\n")


@pytest.mark.parametrize("console", ["console=serial0,115200", "console=ttyAMA0,115200", "console=ttyS0,9600",
                                     "console=serial0"])
def test_cmdline_drops_serial_consoles_and_stays_one_line(console: str) -> None:
    text = CMDLINE.replace("console=serial0,115200", console)
    out = apply_cmdline(text, remove_serial_console=True)
    assert out == "console=tty1 root=PARTUUID=1234abcd-02 rootfstype=ext4 fsck.repair=yes rootwait resize\n"
    assert out.count("\n") == 1


def test_cmdline_untouched_without_removal_and_args_added_once() -> None:
    assert apply_cmdline(CMDLINE, remove_serial_console=False) == CMDLINE
    once = apply_cmdline(CMDLINE, remove_serial_console=True, add=["cgroup_enable=memory"])
    assert once.rstrip("\n").endswith(" resize cgroup_enable=memory")
    assert apply_cmdline(once, remove_serial_console=True, add=["cgroup_enable=memory"]) == once
    assert once.count("\n") == 1
