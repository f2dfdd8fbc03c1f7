"""`boot: network` in the cluster file: a diskless node the bootloader can find, or one line with the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from builder.config import load_cluster
from builder.config.netboot import PROXY, STATIC, network_booted, tftp_folder
from builder.errors import InputError
from builder.paths import repo_root
from tests.config.conftest import write

ROOT = repo_root()


def node(data: dict, name: str) -> dict:
    [entry] = [n for n in data["nodes"] if n["name"] == name]
    return entry


def refusal(tmp_path: Path, data: dict) -> str:
    with pytest.raises(InputError) as caught:
        load_cluster(write(tmp_path, data), profiles_dir=ROOT / "profiles")
    line = caught.value.one_line()
    assert "\n" not in line
    return line


def test_the_shipped_lab_boots_every_node_from_its_card() -> None:
    cluster = load_cluster(ROOT / "cluster.yaml", profiles_dir=ROOT / "profiles")
    assert network_booted(cluster) == () and cluster.netboot is None
    assert {n.boot for n in cluster.nodes} == {"sd"}


def test_diskless_nodes_are_found_by_the_low_8_digits_of_their_serial(tmp_path: Path, data: dict) -> None:
    cluster = load_cluster(write(tmp_path, data), profiles_dir=ROOT / "profiles")
    assert [n.name for n in network_booted(cluster)] == ["node01", "node02"]
    assert [tftp_folder(n) for n in network_booted(cluster)] == ["abcdef01", "abcdef02"]


def test_a_node_known_by_its_mac_only_is_served_from_the_dashed_mac_folder(tmp_path: Path, data: dict) -> None:
    del node(data, "node02")["serial"]
    cluster = load_cluster(write(tmp_path, data), profiles_dir=ROOT / "profiles")
    assert tftp_folder(cluster.node("node02")) == "2c-cf-67-00-00-02"


def test_a_role_can_boot_every_one_of_its_nodes_from_the_network(tmp_path: Path, data: dict) -> None:
    for i, name in enumerate(("node03", "node04", "node05", "node06")):
        node(data, name).update(serial=f"20000000aaaa000{i}", mac=f"2c:cf:67:00:01:0{i}")
    for name in ("node01", "node02"):
        del node(data, name)["boot"]
    data["netboot"] = {"roles": ["compute"], "dhcp": "proxy"}
    cluster = load_cluster(write(tmp_path, data), profiles_dir=ROOT / "profiles")
    assert len(network_booted(cluster)) == 6 and cluster.netboot is not None and cluster.netboot.dhcp == PROXY


def test_proxy_dhcp_needs_no_mac_but_static_dhcp_does(tmp_path: Path, data: dict) -> None:
    del node(data, "node02")["mac"]
    assert refusal(tmp_path, data) == (
        "cluster.yaml: nodes[3].mac: node02 boots from the network with netboot.dhcp: static, which gives "
        "addresses only to the MACs listed (fix: add the board's mac: (ip link show eth0), or set netboot: "
        "{dhcp: proxy} if another DHCP server gives the addresses)")
    data["netboot"] = {"dhcp": "proxy"}
    cluster = load_cluster(write(tmp_path, data), profiles_dir=ROOT / "profiles")
    assert cluster.netboot is not None and cluster.netboot.dhcp == PROXY and cluster.node("node02").mac is None
    assert STATIC != PROXY


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: node(d, "node01").pop("serial") and node(d, "node01").pop("mac"),
         "cluster.yaml: nodes[2].boot: node01 boots from the network but has neither serial nor mac: the bootloader "
         "asks for its files by one of them (fix: add serial: \"abcdef01\" (the last 8 hex digits of Serial in "
         "/proc/cpuinfo) or mac: (its Ethernet address))"),
        (lambda d: node(d, "node02").update(serial="20000000abcdef01"),
         "cluster.yaml: nodes[3].serial: node02's boot folder abcdef01 is already that of nodes[2] (node01): the "
         "bootloader could not tell the two boards apart (fix: give each board its own serial (the last 8 hex "
         "digits decide) and MAC)"),
        (lambda d: node(d, "node02").update(mac="2c:cf:67:00:00:01"),
         "cluster.yaml: nodes[3].mac: 2c:cf:67:00:00:01 is already the MAC of nodes[2] (fix: every board has its "
         "own MAC address)"),
        (lambda d: node(d, "node02").update(serial="10000000abcdef01"),
         "cluster.yaml: nodes[3].serial: 10000000abcdef01 and the serial 10000000abcdef01 of nodes[2] could be the "
         "same board"),
        (lambda d: node(d, "head").update(boot="network", serial="30000000aaaa0001", mac="2c:cf:67:00:02:01"),
         "cluster.yaml: nodes[0].boot: head has role 'controller'; only compute nodes boot from the network (they "
         "share one served root) (fix: give the node role: compute, or remove boot: network (it boots from its SD "
         "card))"),
        (lambda d: d.pop("fileserver"),
         "cluster.yaml: nodes[2].boot: node01 boots from the network, but the cluster has no file server to serve "
         "it (fix: add fileserver: {node: gps} (the node that serves DHCP, TFTP and the root over NFS))"),
        (lambda d: node(d, "gps").update(boot="network", role="compute", serial="30000000aaaa0002",
                                         mac="2c:cf:67:00:02:02"),
         "nodes[1].boot: gps serves the network boot and cannot boot from it itself"),
        (lambda d: node(d, "node01").update(boot="pxe"),
         "cluster.yaml: nodes[2].boot: 'pxe' is not 'sd' or 'network' (fix: boot: network for a diskless node, "
         "else leave it out)"),
        (lambda d: node(d, "node01").update(boot=True),
         "cluster.yaml: nodes[2].boot: YAML reads the unquoted True as true/false, not text; quote it"),
        (lambda d: d.update(netboot={"dhcp": "dynamic"}),
         "cluster.yaml: netboot.dhcp: 'dynamic' is not 'static' or 'proxy' (fix: static: the file server gives"),
        (lambda d: d.update(netboot={"roles": ["controller"]}),
         "cluster.yaml: netboot.roles[0]: role 'controller' cannot boot from the network; only compute nodes share "
         "a served root (fix: list only compute, or mark single nodes boot: network)"),
        (lambda d: d.update(netboot={"roles": "compute"}),
         "cluster.yaml: netboot.roles: expected a list, got a string"),
        (lambda d: d.update(netboot={"server": "gps"}),
         "cluster.yaml: netboot.server: unknown key (fix: known keys: dhcp, roles)"),
        (lambda d: d.update(netboot=["compute"]), "cluster.yaml: netboot: expected a mapping, got a list"),
    ],
    ids=["no-serial-no-mac", "same-tftp-folder", "same-mac", "same-serial", "controller", "no-fileserver",
         "fileserver-diskless", "bad-mode", "unquoted-bool", "bad-dhcp", "role-not-compute", "roles-not-list",
         "unknown-key", "not-mapping"],
)
def test_a_diskless_node_the_bootloader_could_not_find_is_one_line(tmp_path: Path, data: dict, change: object,
                                                                   expected: str) -> None:
    change(data)  # type: ignore[operator]
    assert expected in refusal(tmp_path, data)


def test_cli_check_refuses_it_in_one_line_and_exit_1(tmp_path: Path, data: dict) -> None:
    node(data, "node02")["serial"] = "20000000abcdef01"
    result = subprocess.run([sys.executable, "-m", "builder", "check", "--cluster", str(write(tmp_path, data))],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("clusterbake: error: cluster.yaml: nodes[3].serial: node02's boot folder abcdef01")
