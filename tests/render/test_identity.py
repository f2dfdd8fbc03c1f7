"""The first-boot identity script, run by the host's python3 against a fake root, /proc and /sys.

The script is what a role image runs under its own python3 (standard library only); here the
tree it reads and writes is a copy of the plan's files plus fake board facts.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from builder.config import Cluster, load_cluster
from builder.errors import InputError
from builder.render import RenderPlan
from builder.render.node_card import node_card
from tests.render.render_support import OVERLAYS, PROFILES, SMALL, plan, private, text

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


def assert_became(small: Cluster, root: Path, proc: Path, name: str, *, known: bool = True) -> None:
    """`known`: the image's /etc/hosts lists the node (a node added later gets its line at `apply`)."""
    node_image = plan(small, node=name)
    assert (root / "etc/hostname").read_text() == f"{name}\n"
    assert (proc / "sys/kernel/hostname").read_text() == f"{name}\n"
    if known:
        assert entries((root / "etc/hosts").read_text()) == entries(text(node_image, "/etc/hosts"))
    assert entries((root / "etc/hosts").read_text())[-1] == ["127.0.1.1", name]
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


def test_a_plain_node_txt_may_have_more_lines_than_the_name(tmp_path: Path, small: Cluster,
                                                             compute_image: RenderPlan) -> None:
    proc = run(compute_image, board(tmp_path, node_txt="c2\nthe one by the window\n"))
    assert proc.returncode == 0, proc.stderr
    assert_became(small, tmp_path / "root", tmp_path / "proc", "c2")


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


# A node added to the cluster file after the compute image was built: the image's inventory does not know it.
C3 = '  - {name: c3,    role: compute,    ip: 192.168.7.13, model: pi5-8gb}\n'


@pytest.fixture
def grown(tmp_path: Path) -> Cluster:
    path = tmp_path / "grown" / "minilab.yaml"
    path.parent.mkdir()
    path.write_text(SMALL.replace("users:\n", C3 + "users:\n"))
    return private(load_cluster(path, profiles_dir=PROFILES), tmp_path)


def card_of(cluster: Cluster, name: str) -> str:
    return node_card(cluster, name, profiles_dir=PROFILES, overlays_dir=OVERLAYS)


def test_a_node_card_makes_a_node_the_image_does_not_know(tmp_path: Path, grown: Cluster,
                                                         compute_image: RenderPlan) -> None:
    assert "c3" not in text(compute_image, "/etc/clusterbake/inventory.json")
    card = card_of(grown, "c3")
    assert card.startswith("c3\n# clusterbake node card: c3 of minilab (role compute), 192.168.7.13/24 via "
                           "192.168.7.1, DNS 192.168.7.1, 9.9.9.9.\n")
    tree = board(tmp_path, dt_serial="10000000d83add36", node_txt=card.replace("\n", "\r\n"))   # c1's board
    proc = run(compute_image, tree)
    assert proc.returncode == 0, proc.stderr
    assert "this board is c3 (node card /boot/firmware/node.txt)" in proc.stdout
    assert_became(grown, tree[0], tree[1], "c3", known=False)


def _edited(card: str, edit: Callable[[dict[str, Any]], None]) -> str:
    head, data, _ = card.rsplit("\n", 2)
    parsed = json.loads(data)
    edit(parsed)
    return f"{head}\n{json.dumps(parsed)}\n"


def _file(index: int, key: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda card: card["files"][index].__setitem__(key, value)


BAD_CARDS: dict[str, tuple[Callable[[str], str], str]] = {
    "truncated": (lambda c: c[:-40], "its identity line is not a node card's JSON"),
    "two JSON lines": (lambda c: c + "{}\n", "a node card is the name and one JSON line"),
    "another role": (lambda c: _edited(c, lambda d: d.__setitem__("role", "controller")),
                     "the card is for a 'controller' node of 'minilab', this image is a 'compute' image of 'minilab'"),
    "another cluster": (lambda c: _edited(c, lambda d: d.__setitem__("cluster", "otherlab")),
                        "the card is for a 'compute' node of 'otherlab'"),
    "renamed by hand": (lambda c: "c9" + c[2:], "the card's name 'c3' is not its first line 'c9'"),
    "boot partition": (lambda c: _edited(c, _file(0, "path", "/boot/firmware/config.txt")),
                       "file path '/boot/firmware/config.txt' is not an absolute, normal path"),
    "climbs out": (lambda c: _edited(c, _file(0, "path", "/etc/../root/.ssh/authorized_keys")),
                   "file path '/etc/../root/.ssh/authorized_keys' is not"),
    "mode": (lambda c: _edited(c, _file(0, "mode", "0644")), "mode '0644' is not a file mode"),
    "owner": (lambda c: _edited(c, _file(0, "owner", "mallory")), "owner 'mallory':'root' is not an account"),
    "no files": (lambda c: _edited(c, lambda d: d.__setitem__("files", [])), "the card has no files"),
}


@pytest.mark.parametrize("case", sorted(BAD_CARDS))
def test_a_bad_node_card_is_one_line_and_nothing_of_a_node_is_written(
        tmp_path: Path, grown: Cluster, compute_image: RenderPlan, case: str) -> None:
    spoil, why = BAD_CARDS[case]
    tree = board(tmp_path, dt_serial="10000000d83add36", node_txt=spoil(card_of(grown, "c3")))   # c1's serial
    root = tree[0]
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    proc = run(compute_image, tree)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and why in lines[0], proc.stdout
    assert "nothing written" in lines[0] or "not a node card" in lines[0] or "one JSON line" in lines[0]
    assert lines[0].endswith("staying on DHCP as minilab-3add36")
    assert not (root / KEYFILE.lstrip("/")).exists()                # not c3, and not c1 by its serial either
    assert (root / "etc/hostname").read_text() == "minilab-3add36\n"
    assert not (root / "var/lib/clusterbake/identity").exists()     # so the next boot tries again


def test_a_node_card_for_a_node_the_cluster_file_lacks_is_refused(small: Cluster) -> None:
    with pytest.raises(InputError, match=r"minilab\.yaml: nodes: no node named 'c3'"):
        card_of(small, "c3")


def test_a_plain_node_txt_naming_a_new_node_says_to_make_its_card(tmp_path: Path, compute_image: RenderPlan) -> None:
    proc = run(compute_image, board(tmp_path, node_txt="c3\n"))
    assert "(a node added since the image was built needs its node card: clusterbake node-card c3)" in proc.stdout
