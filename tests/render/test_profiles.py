"""Profiles: includes and common merge in order without duplicates; every mistake is one precise line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from builder.errors import InputError
from builder.render import load_profile
from tests.render.render_support import PROFILES


def write_profiles(tmp_path: Path, **profiles: str) -> Path:
    folder = tmp_path / "profiles"
    folder.mkdir(exist_ok=True)
    for name, body in profiles.items():
        (folder / f"{name}.yaml").write_text(body)
    return folder


def shipped_plus(tmp_path: Path, **profiles: str) -> Path:
    folder = tmp_path / "profiles"
    shutil.copytree(PROFILES, folder)
    return write_profiles(tmp_path, **profiles)


def test_timeserver_is_common_then_compute_then_itself() -> None:
    p = load_profile(PROFILES, "timeserver")
    assert p.sources == ("common", "compute", "timeserver")
    assert p.packages[:5] == ("chrony", "munge", "nfs-common", "prometheus-node-exporter", "slurm-client")
    assert {"gpsd", "pps-tools"} <= set(p.packages)
    assert p.runs("slurmd") and p.runs("gpsd.service")
    assert "systemd-timesyncd.service" in p.disable
    assert p.config_txt == ("dtoverlay=gpio-shutdown", "dtoverlay=pps-gpio,gpiopin=18")
    assert p.config_txt_boards == (("pi4", ("enable_uart=1",)), ("pi5", ("dtparam=uart0=on",)))
    assert p.remove_serial_console
    assert p.overlays[-1] == "time-server"        # after time-client, so its chrony.conf wins
    assert p.grow_mib == sum(load_profile(PROFILES, r).grow_mib for r in ("compute",)) + 24


@pytest.mark.parametrize("role", ["controller", "compute", "login"])
def test_other_roles_keep_the_serial_console_and_have_the_power_button(role: str) -> None:
    p = load_profile(PROFILES, role)
    assert not p.remove_serial_console
    assert p.config_txt[0] == "dtoverlay=gpio-shutdown"
    assert "chrony.service" in p.enable and "systemd-timesyncd.service" in p.disable
    assert p.runs("slurmctld") == (role == "controller")
    assert p.runs("slurmd") == (role == "compute")


def test_lists_merge_in_include_order_without_duplicates(tmp_path: Path) -> None:
    folder = write_profiles(
        tmp_path,
        common="packages: [pa, pb]\nenable: [x]\nsettings: {level: 1, keep: common}\n",
        base1="packages: [pc, pa]\nsettings: {level: 2}\n",
        base2="include: [base1]\npackages: [pd, pc]\ndisable: [x]\n",
        role="include: [base2, base1]\npackages: [pe, pb]\nenable: [x.service]\nsettings: {level: 3}\ngrow_mib: 5\n",
    )
    p = load_profile(folder, "role")
    assert p.sources == ("common", "base1", "base2", "role")
    assert p.packages == ("pa", "pb", "pc", "pd", "pe")
    assert p.enable == ("x.service",) and p.disable == ()     # the last mention (role's) wins
    assert p.settings == {"level": 3, "keep": "common"}
    assert p.grow_mib == 5


def test_config_txt_lines_use_the_merged_settings(tmp_path: Path) -> None:
    folder = shipped_plus(tmp_path, gps2="include: [timeserver]\nsettings: {pps_gpio: 4}\n")
    assert "dtoverlay=pps-gpio,gpiopin=4" in load_profile(folder, "gps2").config_txt


@pytest.mark.parametrize(
    ("profiles", "role", "expected"),
    [
        ({"a": "packagez: [x]\n"}, "a",
         "profiles/a.yaml: packagez: unknown key (fix: did you mean 'packages'?)"),
        ({"a": "include: [b]\n", "b": "include: [a]\n"}, "a",
         "profiles/b.yaml: include: include cycle a -> b -> a (fix: remove one of these includes)"),
        ({"a": "include: [a]\n"}, "a", "profiles/a.yaml: include: include cycle a -> a"),
        ({"a": "include: [nope]\n"}, "a", "profiles/a.yaml: include: no profile profiles/nope.yaml"),
        ({"a": "packages: [Bad_Name]\n"}, "a", "profiles/a.yaml: packages[0]: 'Bad_Name' is not a Debian package"),
        ({"a": "enable: [x]\ndisable: [x.service]\n"}, "a",
         "profiles/a.yaml: enable: x.service is both enabled and disabled"),
        ({"a": "role_image: {overlayz: [x]}\n"}, "a",
         "profiles/a.yaml: role_image.overlayz: unknown key (fix: did you mean 'overlays'?)"),
        ({"a": "gpio: {40: fan}\n"}, "a", "profiles/a.yaml: gpio.40: is not a GPIO number 0-27"),
        ({"a": "grow_mib: lots\n"}, "a", "profiles/a.yaml: grow_mib: 'lots' is not a whole number >= 0"),
        ({"a": "remove: [etc/x]\n"}, "a", "profiles/a.yaml: remove[0]: 'etc/x' is not an absolute path"),
        ({"a": "config_txt: ['x={{ settings.nope }}']\n"}, "a",
         "profiles/a.yaml: config_txt[0]: 'dict object' has no attribute 'nope'"),
        ({"a": "packages: [x\n"}, "a", "profiles/a.yaml: line 2, column 1: YAML syntax error"),
        ({"a": "- x\n"}, "a", "profiles/a.yaml: (top level): expected a mapping, got a list"),
    ],
)
def test_bad_profile_is_one_precise_line(tmp_path: Path, profiles: dict[str, str], role: str, expected: str) -> None:
    folder = write_profiles(tmp_path, common="", **profiles)
    with pytest.raises(InputError) as info:
        load_profile(folder, role)
    assert expected in info.value.one_line()
    assert "\n" not in info.value.one_line()


def test_unknown_role_names_the_known_ones() -> None:
    with pytest.raises(InputError) as info:
        load_profile(PROFILES, "gpu")
    assert info.value.one_line() == ("role 'gpu' has no profile profiles/gpu.yaml "
                                     "(fix: use one of auxiliary, compute, controller, fileserver, login, "
                                     "monitor, timeserver or add that profile)")
    with pytest.raises(InputError, match="role 'common' has no profile"):
        load_profile(PROFILES, "common")     # common is a part of every role, not a role


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("config_txt: [dtparam=i2c_arm=on]\n",
         "GPIO3 is claimed twice: 'dtoverlay=gpio-shutdown' (common.yaml) and 'dtparam=i2c_arm=on' (clash.yaml)"),
        ("config_txt: ['dtoverlay=gpio-fan,gpiopin=3']\n",
         "GPIO3 is claimed twice: 'dtoverlay=gpio-shutdown' (common.yaml) and 'dtoverlay=gpio-fan,gpiopin=3'"),
        ("gpio: {3: status LED}\n",
         "GPIO3 is claimed twice: 'dtoverlay=gpio-shutdown' (common.yaml) and 'status LED' (clash.yaml)"),
        ("include: [timeserver]\ngpio: {18: fan tachometer}\n",
         "GPIO18 is claimed twice: 'dtoverlay=pps-gpio,gpiopin=18' (timeserver.yaml) and 'fan tachometer'"),
        ("include: [timeserver]\nconfig_txt: [dtparam=i2s=on]\n",
         "GPIO18 is claimed twice: 'dtoverlay=pps-gpio,gpiopin=18' (timeserver.yaml) and 'dtparam=i2s=on'"),
        ("include: [timeserver]\nconfig_txt: ['dtoverlay=uart0']\n",
         "GPIO14 is claimed twice: 'dtoverlay=uart0' (clash.yaml) and 'enable_uart=1' (timeserver.yaml)"),
    ],
)
def test_a_gpio_claimed_twice_is_an_error(tmp_path: Path, body: str, expected: str) -> None:
    folder = shipped_plus(tmp_path, clash=body)
    with pytest.raises(InputError) as info:
        load_profile(folder, "clash")
    assert f"profiles/clash.yaml: {expected}" in info.value.one_line()


def test_two_included_profiles_claiming_one_gpio_clash(tmp_path: Path) -> None:
    folder = shipped_plus(tmp_path, fan="gpio: {17: fan}\n", led="gpio: {17: LED}\n", both="include: [fan, led]\n")
    with pytest.raises(InputError, match=r"GPIO17 is claimed twice: 'fan' \(fan.yaml\) and 'LED' \(led.yaml\)"):
        load_profile(folder, "both")


def test_free_gpios_and_pin_free_lines_are_fine(tmp_path: Path) -> None:
    folder = shipped_plus(tmp_path, ok="config_txt: [dtparam=audio=on, 'dtoverlay=w1-gpio']\ngpio: {17: fan}\n")
    claims = {c.pin: c.what for c in load_profile(folder, "ok").gpio}
    assert claims == {3: "dtoverlay=gpio-shutdown", 4: "dtoverlay=w1-gpio", 17: "fan"}


def test_a_profile_names_its_file_in_the_profiles_folder_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under $CLUSTERBAKE_PROFILES, what the plan blames is that folder's file, not the repository's."""
    from builder.build import plan_job
    from builder.config import load_cluster
    from builder.paths import repo_root

    folder = tmp_path / "lab-profiles"
    shutil.copytree(PROFILES, folder)
    monkeypatch.setenv("CLUSTERBAKE_PROFILES", str(folder))
    cluster = load_cluster(repo_root() / "cluster.yaml", profiles_dir=folder)
    [plan] = plan_job(cluster, [("compute", None)], secrets=False).plans
    assert plan.profile.file == plan.source == "lab-profiles/compute.yaml"
    preset = next(f for f in plan.files if f.path == "/etc/systemd/system-preset/00-clusterbake.preset")
    assert preset.source == "lab-profiles/compute.yaml"
    assert load_profile(PROFILES, "compute").file == "profiles/compute.yaml"
