"""`platform:` on a node: a Proxmox LXC container beside the Pis, and the one-line errors around it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from builder.config import load_cluster
from builder.paths import repo_root

ROOT = repo_root()


def lab(tmp_path: Path, **head: object) -> Path:
    """The reference cluster with `head` as a container (plus the keys given)."""
    data = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    data["nodes"][0] = {"name": "head", "role": "controller", "ip": "10.0.0.10", "platform": "proxmox-lxc", **head}
    data["secrets_dir"] = str(tmp_path / "secrets")
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "builder", "check", "--cluster", str(path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)


def test_a_container_node_loads_with_its_own_cpus_and_memory(tmp_path: Path) -> None:
    cluster = load_cluster(lab(tmp_path, cpus=4, memory_mb=4096), profiles_dir=ROOT / "profiles")
    head = cluster.node("head")
    assert (head.platform, head.cpus, head.memory_mb, head.model, head.serial, head.mac) == \
        ("proxmox-lxc", 4, 4096, "", None, None)
    assert all(n.platform == "raspberry-pi" for n in cluster.nodes[1:])


def test_a_container_node_defaults_to_two_cpus_and_2_gib(tmp_path: Path) -> None:
    head = load_cluster(lab(tmp_path)).node("head")
    assert (head.cpus, head.memory_mb) == (2, 2048)


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"model": "pi5-8gb"}, "cluster.yaml: nodes[0].model: is a Raspberry Pi key; a proxmox-lxc node has no board "
                               "(fix: remove 'model:'"),
        ({"serial": "10000000abcdef01"}, "cluster.yaml: nodes[0].serial: is a Raspberry Pi key"),
        ({"mac": "2c:cf:67:00:00:01"}, "cluster.yaml: nodes[0].mac: is a Raspberry Pi key"),
        ({"platform": "vmware"}, "cluster.yaml: nodes[0].platform: 'vmware' is not a platform "
                                 "(raspberry-pi, proxmox-lxc)"),
        ({"cpus": 0}, "cluster.yaml: nodes[0].cpus: 0 is not a whole number >= 1"),
        ({"memory_mb": 100}, "cluster.yaml: nodes[0].memory_mb: 100 is not a whole number >= 256"),
        ({"gpio": 3}, "cluster.yaml: nodes[0].gpio: unknown key"),
    ],
    ids=["model", "serial", "mac", "platform", "cpus", "memory", "unknown"],
)
def test_bad_container_keys_are_one_line(tmp_path: Path, keys: dict[str, object], expected: str) -> None:
    result = check(lab(tmp_path, **keys))
    assert result.returncode != 0
    assert result.stderr.startswith("clusterbake: error: ")
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(
    ("role", "unit"),
    [("timeserver", "gpsd.service"), ("compute", "clusterbake-slurm-power.service")],
)
def test_a_role_that_needs_a_board_is_refused_in_a_container(tmp_path: Path, role: str, unit: str) -> None:
    data = yaml.safe_load(lab(tmp_path).read_text())
    data["nodes"][2].pop("model")
    data["nodes"][2]["platform"] = "proxmox-lxc"
    data["nodes"][2]["role"] = role
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = check(path)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"cluster.yaml: nodes[2].role: 'node01' is a proxmox-lxc node, but role '{role}' enables {unit}" \
        in result.stderr
    assert "(fix: run this role on a Raspberry Pi (remove 'platform:')" in result.stderr


def test_make_check_accepts_a_container_controller(tmp_path: Path) -> None:
    result = check(lab(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "8 nodes, roles controller, auxiliary, compute: ok" in result.stdout
