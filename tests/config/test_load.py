"""The cluster file: the shipped one loads; each kind of mistake gives one precise line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from builder.config import load_cluster
from builder.errors import InputError
from builder.paths import repo_root
from tests.config.conftest import write

ROOT = repo_root()


def test_reference_cluster_loads() -> None:
    cluster = load_cluster(ROOT / "cluster.yaml", profiles_dir=ROOT / "profiles")
    assert cluster.name == "picluster"
    assert [n.name for n in cluster.nodes_with_role("compute")] == [f"node0{i}" for i in range(1, 7)]
    assert cluster.node("gps").board == "pi4"
    # Raspberry Pi rotated its Downloads Signing Key with the 2025-11-24 release.
    assert cluster.base_image.fingerprints == ("F4AADD86C4687D69AE04543E796C114AD12B2292",)
    assert cluster.base_image.url.endswith(
        "/raspios_lite_arm64-2026-09-15/2026-09-15-raspios-trixie-arm64-lite.img.xz")
    assert cluster.base_image.signature_url == cluster.base_image.url + ".sig"
    assert cluster.base_image.sha256_url == cluster.base_image.url + ".sha256"
    assert cluster.base_image.signing_keys[1].endswith("search=0xF4AADD86C4687D69AE04543E796C114AD12B2292")



def test_base_image_references_are_resolved_once_when_the_cluster_file_loads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths against the cluster file's folder, not the working directory; acquire resolves nothing."""
    data = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    data["base_image"].update(url="images/x.img.xz", signature_url="file:///srv/x.img.xz.sig",
                              signing_key=["keys/k.asc", "https://example.org/k.asc"])
    site = tmp_path / "site"
    site.mkdir()
    (site / "cluster.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)
    base = load_cluster(Path("site/cluster.yaml")).base_image
    monkeypatch.chdir("/")

    assert (base.image.setting, base.image.path, base.image.url) == ("base_image.url", site / "images/x.img.xz", None)
    assert (base.signature.setting, base.signature.path) == ("base_image.signature_url", Path("/srv/x.img.xz.sig"))
    assert base.sha256_list is not None and base.sha256_list.url == data["base_image"]["sha256_url"]
    assert [(k.setting, k.path, k.url) for k in base.keys] == [
        ("base_image.signing_key[0]", site / "keys/k.asc", None),
        ("base_image.signing_key[1]", None, "https://example.org/k.asc")]
    assert base.url == "images/x.img.xz"    # as written, for the manifest

@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["nodes"][2].update(ip="10.0.1.5"),
         "cluster.yaml: nodes[2].ip: 10.0.1.5 is outside network.subnet 10.0.0.0/24"),
        (lambda d: d["nodes"][3].update(ip="10.0.0.101"),
         "cluster.yaml: nodes[3].ip: 10.0.0.101 is already used by nodes[2]"),
        (lambda d: d["nodes"][3].update(name="node01"),
         "cluster.yaml: nodes[3].name: name 'node01' is already used by nodes[2]"),
        (lambda d: d["nodes"][2].update(ip="10.0.0.1"), "cluster.yaml: nodes[2].ip: 10.0.0.1 is the gateway"),
        (lambda d: d["time"].update(server="nope"), "cluster.yaml: time.server: 'nope' names no node"),
        (lambda d: d["slurm"].update(controller="x"), "cluster.yaml: slurm.controller: 'x' names no node"),
        (lambda d: d["network"].update(subent="x"), "network.subent: unknown key (fix: did you mean 'subnet'?)"),
        (lambda d: d.update(nodez=[]), "cluster.yaml: nodez: unknown key (fix: did you mean 'nodes'?)"),
        (lambda d: d["base_image"].update(sha256="abc"), "base_image.sha256: 'abc' is not 64 hexadecimal"),
        (lambda d: d["base_image"].pop("signature_url"), "base_image.signature_url: is missing"),
        (lambda d: d["base_image"].update(fingerprint="1234"), "base_image.fingerprint: '1234' is not a 40"),
        (lambda d: d["nodes"][0].update(model="pi9"), "nodes[0].model: 'pi9' is not a known board model"),
        (lambda d: d["nodes"][0].update(role="gpu"), "nodes[0].role: role 'gpu' has no profile"),
        (lambda d: d["users"][0].update(uid=5), "users[0].uid: 5 is not a whole number from 1001 to 60000"),
        (lambda d: d.update(name="Pi Cluster"), "name: 'Pi Cluster' is not a cluster name (a-z, 0-9 and '-'"),
        (lambda d: d.update(power_button={"hold_ms": 5}),
         "cluster.yaml: power_button.hold_ms: 5 is not a whole number of milliseconds from 20 to 10000 (fix: how long"),
        (lambda d: d.update(power_button={"hold_ms": 600000}), "power_button.hold_ms: 600000 is not a whole number"),
        (lambda d: d.update(power_button={"hold_ms": "3s"}), "power_button.hold_ms: '3s' is not a whole number"),
        (lambda d: d.update(power_button={"hold_ms": 2.5}), "power_button.hold_ms: 2.5 is not a whole number"),
        (lambda d: d.update(power_button={"hold_ms": True}), "power_button.hold_ms: True is not a whole number"),
        (lambda d: d.update(power_button={"hold": 3000}),
         "power_button.hold: unknown key (fix: did you mean 'hold_ms'?)"),
    ],
)
def test_bad_input_names_file_key_and_problem(tmp_path: Path, data: dict, mutate, expected: str) -> None:
    mutate(data)
    with pytest.raises(InputError) as info:
        load_cluster(write(tmp_path, data), profiles_dir=ROOT / "profiles")
    assert expected in info.value.one_line()
    assert "\n" not in info.value.one_line()


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nnodes: [\n")
    with pytest.raises(InputError, match=r"broken.yaml: line \d+, column \d+: YAML syntax error"):
        load_cluster(path)


def test_cli_bad_input_is_one_line_and_exit_1(tmp_path: Path, data: dict) -> None:
    data["nodes"][2]["ip"] = "10.0.1.5"
    path = write(tmp_path, data)
    proc = subprocess.run([sys.executable, "-m", "builder", "check", "--cluster", str(path)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "nodes[2].ip: 10.0.1.5 is outside network.subnet 10.0.0.0/24" in proc.stderr


def test_cli_missing_file(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "builder", "check", "--cluster", str(tmp_path / "no.yaml")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "no.yaml: no such file" in proc.stderr


def test_an_addon_profile_is_no_role_and_not_offered_as_one(tmp_path: Path, data: dict) -> None:
    # One rule for "role has a profile": the cluster file's loader refuses what the profile loader
    # refuses (common and the add-ons exist as files, but are no roles), and offers neither.
    data["nodes"][0].update(role="accounting")
    with pytest.raises(InputError) as info:
        load_cluster(write(tmp_path, data), profiles_dir=ROOT / "profiles")
    line = info.value.one_line()
    assert "nodes[0].role: role 'accounting' has no profile profiles/accounting.yaml" in line, line
    offered = line.split("use one of ", 1)[1]
    assert not {"accounting", "access", "wireguard", "common"} & set(offered.replace(",", " ").split()), line
