"""The first-boot identity script, run by the host's python3 against a fake root, /proc and /sys.

The script is what a role image runs under its own python3 (standard library only); here the
tree it reads and writes is a copy of the plan's files plus fake board facts.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from builder.config import Cluster
from builder.render import RenderPlan
from tests.render.render_support import plan, text

SCRIPT = "/usr/local/lib/clusterbake/identity.py"
KEYFILE = "/etc/NetworkManager/system-connections/eth0.nmconnection"
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else shutil.which("python3") or sys.executable


def install(p: RenderPlan, root: Path) -> None:
    """Write the plan's files the way the engine would (modes only; owners are not the point here)."""
    for f in p.files:
        target = root / f.path.lstrip("/")
        if f.directory:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.data)
        target.chmod(f.mode)


def board(tmp_path: Path, *, dt_serial: str | None = None, cpuinfo_serial: str | None = None,
          macs: tuple[str, ...] = (), node_txt: str | None = None) -> tuple[Path, Path, Path]:
    root, proc, sys_dir = tmp_path / "root", tmp_path / "proc", tmp_path / "sys"
    (proc / "sys" / "kernel").mkdir(parents=True)
    (proc / "sys" / "kernel" / "hostname").write_text("raspberrypi\n")
    if dt_serial is not None:
        (proc / "device-tree").mkdir()
        (proc / "device-tree" / "serial-number").write_bytes(dt_serial.encode() + b"\0")
    cpuinfo = "processor\t: 0\nBogoMIPS\t: 108.00\n\nRevision\t: d04170\n"
    if cpuinfo_serial is not None:
        cpuinfo += f"Serial\t\t: {cpuinfo_serial}\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n"
    (proc / "cpuinfo").write_text(cpuinfo)
    for i, mac in enumerate(("00:00:00:00:00:00", *macs)):
        iface = sys_dir / "class" / "net" / ("lo" if i == 0 else f"eth{i - 1}")
        iface.mkdir(parents=True)
        (iface / "address").write_text(mac + "\n")
    if node_txt is not None:
        (root / "boot" / "firmware").mkdir(parents=True)
        (root / "boot" / "firmware" / "node.txt").write_text(node_txt)
    return root, proc, sys_dir


def run(p: RenderPlan, tree: tuple[Path, Path, Path], *, via_env: bool = False) -> subprocess.CompletedProcess[str]:
    root, proc, sys_dir = tree
    install(p, root)
    script = str(root / SCRIPT.lstrip("/"))
    if via_env:
        env = {**os.environ, "CLUSTERBAKE_ROOT": str(root), "CLUSTERBAKE_PROC": str(proc),
               "CLUSTERBAKE_SYS": str(sys_dir)}
        return subprocess.run([PYTHON, script], capture_output=True, text=True, env=env, timeout=30)
    return subprocess.run([PYTHON, script, "--root", str(root), "--proc", str(proc), "--sys", str(sys_dir)],
                          capture_output=True, text=True, timeout=30)


def entries(hosts: str) -> list[list[str]]:
    return [line.split() for line in hosts.splitlines() if line.strip() and not line.startswith("#")]


def assert_became(small: Cluster, root: Path, proc: Path, name: str) -> None:
    node_image = plan(small, node=name)
    assert (root / "etc/hostname").read_text() == f"{name}\n"
    assert (proc / "sys/kernel/hostname").read_text() == f"{name}\n"
    assert entries((root / "etc/hosts").read_text()) == entries(text(node_image, "/etc/hosts"))
    keyfile = root / KEYFILE.lstrip("/")
    assert keyfile.read_text() == text(node_image, KEYFILE)
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    assert (root / "var/lib/clusterbake/identity").read_text() == f"{name}\n"


@pytest.fixture
def compute_image(small: Cluster) -> RenderPlan:
    return plan(small, role="compute", secrets=False)


def test_node_txt_wins_over_serial_and_mac(tmp_path: Path, small: Cluster, compute_image: RenderPlan) -> None:
    tree = board(tmp_path, dt_serial="10000000d83add36", macs=("2c:cf:67:00:00:11",), node_txt="# mine\nc2\n")
    proc = run(compute_image, tree)
    assert proc.returncode == 0, proc.stderr
    assert "this board is c2 (named in /boot/firmware/node.txt)" in proc.stdout
    assert_became(small, tree[0], tree[1], "c2")


def test_serial_from_the_device_tree_in_its_short_form(tmp_path: Path, small: Cluster,
                                                       compute_image: RenderPlan) -> None:
    tree = board(tmp_path, dt_serial="10000000d83add36", macs=("2c:cf:67:00:00:99",))
    proc = run(compute_image, tree)
    assert proc.returncode == 0, proc.stderr
    assert "this board is c1 (serial 10000000d83add36)" in proc.stdout
    assert_became(small, tree[0], tree[1], "c1")


def test_serial_from_cpuinfo_when_there_is_no_device_tree(tmp_path: Path, small: Cluster,
                                                          compute_image: RenderPlan) -> None:
    tree = board(tmp_path, cpuinfo_serial="D83ADD36")
    proc = run(compute_image, tree, via_env=True)
    assert proc.returncode == 0, proc.stderr
    assert "this board is c1 (serial d83add36)" in proc.stdout
    assert_became(small, tree[0], tree[1], "c1")


def test_mac_address(tmp_path: Path, small: Cluster, compute_image: RenderPlan) -> None:
    tree = board(tmp_path, dt_serial="10000000aaaaaaaa", macs=("dc:a6:32:00:00:01", "2C:CF:67:00:00:12"))
    proc = run(compute_image, tree)
    assert proc.returncode == 0, proc.stderr
    assert "this board is c2 (MAC 2c:cf:67:00:00:12)" in proc.stdout
    assert_became(small, tree[0], tree[1], "c2")


def test_node_txt_naming_a_node_of_another_role_is_ignored(tmp_path: Path, small: Cluster,
                                                           compute_image: RenderPlan) -> None:
    tree = board(tmp_path, dt_serial="10000000d83add36", node_txt="boss\n")
    proc = run(compute_image, tree)
    assert "node.txt names 'boss', which is not a compute node of minilab (known: c1, c2); ignoring it" in proc.stdout
    assert_became(small, tree[0], tree[1], "c1")


def test_no_match_stays_on_dhcp_with_a_serial_name_and_says_so(tmp_path: Path, compute_image: RenderPlan) -> None:
    tree = board(tmp_path, dt_serial="10000000cafe1234", macs=("dc:a6:32:00:00:01",))
    root, proc_dir, _ = tree
    proc = run(compute_image, tree)
    assert proc.returncode == 0, proc.stderr
    assert ("no compute node of minilab matches this board (serial 10000000cafe1234, MAC dc:a6:32:00:00:01); "
            "staying on DHCP as minilab-fe1234") in proc.stdout
    assert "node.txt" in proc.stdout                          # and says how to fix it
    assert (root / "etc/hostname").read_text() == "minilab-fe1234\n"
    assert (proc_dir / "sys/kernel/hostname").read_text() == "minilab-fe1234\n"
    assert entries((root / "etc/hosts").read_text())[-1] == ["127.0.1.1", "minilab-fe1234"]
    assert ["192.168.7.11", "c1.lab.example", "c1"] in entries((root / "etc/hosts").read_text())
    assert not (root / KEYFILE.lstrip("/")).exists()
    assert not (root / "var/lib/clusterbake/identity").exists()     # so the next boot tries again


def test_missing_inventory_fails_loudly(tmp_path: Path) -> None:
    root, proc, sys_dir = board(tmp_path)
    script = Path(__file__).resolve().parents[2] / "overlays/identity" / SCRIPT.lstrip("/")
    out = subprocess.run([PYTHON, str(script), "--root", str(root), "--proc", str(proc), "--sys", str(sys_dir)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "cannot read /etc/clusterbake/inventory.json" in out.stdout
