"""Bad input through the CLI (`python -m builder build …` as a subprocess): one clear line, exit 1,
nothing written (no output directory, no cache entry, no munge key made), nothing attached.

Broken profiles and overlays are temporary copies pointed at with CLUSTERBAKE_PROFILES and
CLUSTERBAKE_OVERLAYS. These fail while planning, before the base image is even fetched, so the
base_image here points at nothing reachable (and the cache is private to the test).
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from builder.paths import repo_root
from tests.built_images.conftest import cli, lab_data, write_cluster

UNREACHABLE = {
    "url": "http://127.0.0.1:9/never.img.xz",
    "sha256": "0" * 64,
    "signature_url": "http://127.0.0.1:9/never.img.xz.sig",
    "signing_key": "http://127.0.0.1:9/key.gpg",
    "fingerprint": "54C3DD610D9D1B4AF82A37758738CD6B956F460C",
}


def _loops_over(folder: Path) -> list[str]:
    """Loop devices backed by files under `folder` (other processes on this host have their own)."""
    backing = (p.read_text().strip() for p in Path("/sys/block").glob("loop*/loop/backing_file"))
    return [b for b in backing if b.startswith(str(folder))]


def _run_bad(tmp_path: Path, *, change: Callable[[dict[str, Any]], None] | None = None,
             target: tuple[str, str] = ("--role", "compute"), profiles: Path | None = None,
             overlays: Path | None = None, command: str = "build") -> str:
    data = copy.deepcopy(lab_data(UNREACHABLE, tmp_path / "secrets"))
    if change:
        change(data)
    cluster = write_cluster(tmp_path / "cluster.yaml", data)
    env = {}
    if profiles:
        env["CLUSTERBAKE_PROFILES"] = str(profiles)
    if overlays:
        env["CLUSTERBAKE_OVERLAYS"] = str(overlays)
    args = [command, "--cluster", cluster, "--cache", tmp_path / "cache"]
    if command != "check":
        args += [*target, "--out", tmp_path / "out"]
    proc = cli(*args, env=env, check=False)
    assert proc.returncode == 1, f"exit {proc.returncode}: {proc.stderr}"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("clusterbake: error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout == ""
    for made in ("out", "cache", "secrets"):
        assert not (tmp_path / made).exists(), f"{made} was written: {sorted((tmp_path / made).rglob('*'))}"
    assert _loops_over(tmp_path) == []
    return errors[0].removeprefix("clusterbake: error: ")


def _copy_data(tmp_path: Path) -> tuple[Path, Path]:
    profiles, overlays = tmp_path / "data" / "profiles", tmp_path / "data" / "overlays"
    shutil.copytree(repo_root() / "profiles", profiles)
    shutil.copytree(repo_root() / "overlays", overlays, symlinks=True)
    return profiles, overlays


def test_unknown_role(tmp_path: Path) -> None:
    error = _run_bad(tmp_path, target=("--role", "gpu"))
    assert error.startswith("role 'gpu' has no profile profiles/gpu.yaml") and "(fix: use one of" in error


def test_unknown_node(tmp_path: Path) -> None:
    assert "no node named 'c9'" in _run_bad(tmp_path, target=("--node", "c9"))


def test_a_node_whose_role_has_no_profile(tmp_path: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        data["nodes"][3]["role"] = "gpu"
    error = _run_bad(tmp_path, change=change)
    assert error.startswith("cluster.yaml: nodes[3].role: role 'gpu' has no profile profiles/gpu.yaml"), error


@pytest.mark.parametrize(("field", "value", "message"), [
    ("name", "c1", "nodes[3].name: name 'c1' is already used by nodes[2]"),
    ("ip", "10.9.0.101", "nodes[3].ip: 10.9.0.101 is already used by nodes[2]"),
    ("ip", "10.9.1.5", "nodes[3].ip: 10.9.1.5 is outside network.subnet 10.9.0.0/24"),
    ("ip", "10.9.0.1", "nodes[3].ip: 10.9.0.1 is the gateway's address"),
])
def test_bad_nodes(tmp_path: Path, field: str, value: str, message: str) -> None:
    def change(data: dict[str, Any]) -> None:
        data["nodes"][3][field] = value
    error = _run_bad(tmp_path, change=change)
    assert error.startswith(f"cluster.yaml: {message}"), error


@pytest.mark.parametrize("key", ["time", "slurm"])
def test_references_to_no_node(tmp_path: Path, key: str) -> None:
    def change(data: dict[str, Any]) -> None:
        data[key] = {"server": "nosuch"} if key == "time" else {"controller": "nosuch"}
    error = _run_bad(tmp_path, change=change)
    where = "time.server" if key == "time" else "slurm.controller"
    assert error.startswith(f"cluster.yaml: {where}: 'nosuch' names no node"), error


def test_two_profiles_claiming_the_same_gpio(tmp_path: Path) -> None:
    """compute wires a fan to GPIO18, and timeserver its PPS: the lab's auxiliary role includes both.
    Every role of the cluster is checked before the one asked for, so the clash is named at auxiliary."""
    profiles, _ = _copy_data(tmp_path)
    with (profiles / "compute.yaml").open("a") as f:
        f.write("\ngpio: {18: fan tachometer}\n")
    error = _run_bad(tmp_path, target=("--role", "compute"), profiles=profiles)
    assert error.startswith("profiles/auxiliary.yaml: GPIO18 is claimed twice:"), error
    assert "compute.yaml" in error and "pps-gpio" in error


def test_anything_else_on_the_power_buttons_gpio3(tmp_path: Path) -> None:
    profiles, _ = _copy_data(tmp_path)
    with (profiles / "controller.yaml").open("a") as f:
        f.write("\nconfig_txt: [dtparam=i2c_arm=on]\n")
    error = _run_bad(tmp_path, target=("--role", "controller"), profiles=profiles)
    assert "GPIO3 is claimed twice" in error and "gpio-shutdown" in error and "i2c_arm" in error
    assert "power button" in error


def test_check_renders_every_role_so_a_clash_shows_in_seconds(tmp_path: Path) -> None:
    profiles, _ = _copy_data(tmp_path)
    with (profiles / "controller.yaml").open("a") as f:
        f.write("\nconfig_txt: [dtparam=i2c_arm=on]\n")
    assert "GPIO3 is claimed twice" in _run_bad(tmp_path, profiles=profiles, command="check")


def test_check_passes_and_warns_that_pi5_buttons_cannot_wake_the_board(tmp_path: Path) -> None:
    cluster = write_cluster(tmp_path / "cluster.yaml", lab_data(UNREACHABLE, tmp_path / "secrets"))
    proc = cli("check", "--cluster", cluster, "--cache", tmp_path / "cache")
    assert proc.stdout.strip().endswith("4 nodes, roles controller, auxiliary, compute: ok")
    warnings = [line for line in proc.stderr.splitlines() if "cannot wake it" in line]
    assert any(w.startswith("head (Pi 5)") for w in warnings) and any(w.startswith("c1, c2 (Pi 5)") for w in warnings)
    assert not any("gps" in w for w in warnings), "gps is a Pi 4: the button wakes it"
    assert not (tmp_path / "secrets").exists(), "check must not make the cluster's munge key"


def test_a_template_using_an_undefined_variable(tmp_path: Path) -> None:
    _, overlays = _copy_data(tmp_path)
    with (overlays / "slurm" / "etc" / "slurm" / "cgroup.conf.j2").open("a") as f:
        f.write("AllowedSwapSpace={{ settings.swap_percent }}\n")
    # Configless Slurm: only the controller's image carries the slurm overlay (cgroup.conf).
    error = _run_bad(tmp_path, overlays=overlays, target=("--role", "controller"))
    assert error.startswith("overlays/slurm/etc/slurm/cgroup.conf.j2: line 6:"), error
    assert "swap_percent" in error


@pytest.mark.parametrize("escape", ["symlink", "name"])
def test_an_overlay_path_escaping_the_image_root(tmp_path: Path, escape: str) -> None:
    _, overlays = _copy_data(tmp_path)
    if escape == "symlink":
        (overlays / "base" / "etc" / "shadow").symlink_to("/etc/shadow")
        expected = "overlays/base/etc/shadow: symlink points outside the overlay"
    else:
        (overlays / "base" / "etc" / "{{ '..' }}").mkdir()
        (overlays / "base" / "etc" / "{{ '..' }}" / "passwd").write_text("evil\n")
        expected = "overlays/base/etc/{{ '..' }}/passwd: the name renders to '..'"
    error = _run_bad(tmp_path, overlays=overlays)
    assert error.startswith(expected), error
