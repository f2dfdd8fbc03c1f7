"""The file server's side, rendered from the cluster file: dnsmasq (checked and run by dnsmasq) and the exports."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.config import Cluster
from builder.netboot.served_tree import write_served_tree
from builder.render import render_plan
from builder.render.netboot_server import dnsmasq_conf, exports
from tests.netboot.tree_support import ROOT, fake_boot, fake_root, netboot_cluster

UNKNOWN_MAC = "2c:cf:67:00:00:99"


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def dnsmasq_test(conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["dnsmasq", "--test", f"--conf-file={conf}"], capture_output=True, text=True, timeout=30)


@pytest.fixture
def cluster(tmp_path: Path, data: dict) -> Cluster:  # type: ignore[type-arg]
    return netboot_cluster(tmp_path, data)


def test_static_dhcp_answers_exactly_the_listed_macs_with_their_inventory_addresses(cluster: Cluster) -> None:
    conf = lines(dnsmasq_conf(cluster))
    assert [line for line in conf if line.startswith("dhcp-host=")] == [
        "dhcp-host=2c:cf:67:00:00:01,10.0.0.101,node01", "dhcp-host=2c:cf:67:00:00:02,10.0.0.102,node02"]
    assert "dhcp-range=10.0.0.0,static,255.255.255.0,12h" in conf and "dhcp-ignore=tag:!known" in conf
    assert {"port=0", "interface=eth0", "enable-tftp", "tftp-root=/srv/netboot", "log-dhcp",
            'pxe-service=0,"Raspberry Pi Boot"', "dhcp-option=option:router,10.0.0.1"} <= set(conf)


def test_proxy_dhcp_gives_no_address(tmp_path: Path, data: dict) -> None:  # type: ignore[type-arg]
    data["netboot"] = {"dhcp": "proxy"}
    conf = lines(dnsmasq_conf(netboot_cluster(tmp_path, data)))
    assert "dhcp-range=10.0.0.0,proxy,255.255.255.0" in conf
    assert [line for line in conf if line.startswith("dhcp-host=")] == [
        "dhcp-host=2c:cf:67:00:00:01,node01", "dhcp-host=2c:cf:67:00:00:02,node02"]
    assert not [line for line in conf if "static" in line or line.startswith("dhcp-option=option:router")]


@pytest.mark.parametrize("mode", ["static", "proxy"])
def test_dnsmasq_accepts_the_rendered_configuration(tmp_path: Path, data: dict, mode: str) -> None:  # type: ignore[type-arg]
    data["netboot"] = {"dhcp": mode}
    conf = tmp_path / "dnsmasq.conf"
    conf.write_text(dnsmasq_conf(netboot_cluster(tmp_path, data)))
    result = dnsmasq_test(conf)
    assert result.returncode == 0 and "syntax check OK" in result.stderr, result.stderr
    conf.write_text(conf.read_text() + "dhcp-range=nonsense,static\n")   # the check is real: a bad line fails it
    assert dnsmasq_test(conf).returncode != 0


def test_the_shared_root_is_read_only_and_each_state_folder_its_nodes_alone(cluster: Cluster) -> None:
    assert lines(exports(cluster)) == [
        "/srv/netroot/compute 10.0.0.101(ro,sync,no_subtree_check,no_root_squash) "
        "10.0.0.102(ro,sync,no_subtree_check,no_root_squash)",
        "/srv/netstate/node01 10.0.0.101(rw,sync,no_subtree_check,no_root_squash)",
        "/srv/netstate/node02 10.0.0.102(rw,sync,no_subtree_check,no_root_squash)",
    ]


def test_the_file_servers_plan_carries_dnsmasq_the_exports_and_the_served_folders(cluster: Cluster) -> None:
    server = cluster.node(cluster.fileserver.node) if cluster.fileserver else None
    assert server is not None
    plan = render_plan(cluster, node=server.name, profiles_dir=ROOT / "profiles", overlays_dir=ROOT / "overlays")
    files = {f.path: f for f in plan.files}
    assert files["/etc/clusterbake/netboot/dnsmasq.conf"].data.decode() == dnsmasq_conf(cluster)
    assert files["/etc/exports.d/clusterbake-netboot.exports"].data.decode() == exports(cluster)
    unit = files["/etc/systemd/system/clusterbake-netboot-dnsmasq.service"].data.decode()
    assert "--conf-file=/etc/clusterbake/netboot/dnsmasq.conf" in unit
    assert "ExecStartPre=/usr/sbin/dnsmasq --test" in unit
    assert "clusterbake-netboot-dnsmasq.service" in plan.enable and "dnsmasq-base" in plan.packages
    # exportfs and dnsmasq refuse a missing folder: they exist before the first push.
    for folder, mode in (("/srv/netboot", 0o755), ("/srv/netroot/compute", 0o755), ("/srv/netstate/node01", 0o700),
                         ("/srv/netstate/node02", 0o700)):
        assert files[folder].directory and files[folder].mode == mode, folder


def test_only_the_file_server_serves_and_only_with_diskless_nodes(tmp_path: Path, data: dict) -> None:  # type: ignore[type-arg]
    cluster = netboot_cluster(tmp_path, data)
    assert cluster.fileserver is not None
    for node in (n for n in cluster.nodes if n.name != cluster.fileserver.node):
        plan = render_plan(cluster, node=node.name, profiles_dir=ROOT / "profiles", overlays_dir=ROOT / "overlays")
        assert not [f for f in plan.files if "netboot" in f.path], node.name
        assert "clusterbake-netboot-dnsmasq.service" not in plan.enable, node.name
    for entry in data["nodes"]:
        entry.pop("boot", None)
    data.pop("netboot", None)
    (tmp_path / "plain").mkdir()
    plain = netboot_cluster(tmp_path / "plain", data)
    assert plain.fileserver is not None
    plan = render_plan(plain, node=plain.fileserver.node, profiles_dir=ROOT / "profiles",
                       overlays_dir=ROOT / "overlays")
    assert not [f for f in plan.files if "netboot" in f.path]
    assert "clusterbake-netboot-dnsmasq.service" not in plan.enable
    assert "dnsmasq-base" in plan.packages       # so that a diskless node added on day two needs no download


@pytest.fixture
def tree(tmp_path: Path, cluster: Cluster) -> Path:
    """The served tree and, beside it, the file server's dnsmasq.conf as its plan renders it."""
    dest = tmp_path / "served"
    write_served_tree(cluster, boot=fake_boot(cluster, tmp_path / "boot"),
                      root=fake_root(dest / "srv/netroot/compute/20261204T120000Z"), dest=dest,
                      overlays_dir=ROOT / "overlays")
    conf = dest / "etc/clusterbake/netboot/dnsmasq.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(dnsmasq_conf(cluster))
    return dest


# --- the rendered configuration run by dnsmasq, on a private LAN of two network namespaces --------------------

def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def private_lan() -> Iterator[tuple[str, str]]:
    """A file server namespace and a client namespace joined by a veth pair, each end named eth0."""
    server, client = f"nb-srv-{os.getpid()}", f"nb-cli-{os.getpid()}"
    try:
        ip("netns", "add", server)
        ip("netns", "add", client)
        ip("link", "add", "nbs0", "netns", server, "type", "veth", "peer", "name", "nbc0", "netns", client)
        for ns, end in ((server, "nbs0"), (client, "nbc0")):
            ip("-n", ns, "link", "set", end, "name", "eth0")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", server, "addr", "add", "10.0.0.20/24", "dev", "eth0")
        yield server, client
    finally:
        for ns in (client, server):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def probe(client: str, mac: str) -> dict[str, object] | None:
    out = subprocess.run(["ip", "netns", "exec", client, sys.executable, "-m", "tests.netboot.dhcp_probe",
                          "--interface", "eth0", "--mac", mac], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         check=True)
    offer: dict[str, object] | None = json.loads(out.stdout)["offer"]
    return offer


@pytest.mark.root
def test_dnsmasq_offers_a_listed_board_its_address_and_serves_its_folder(tmp_path: Path, tree: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces")
    log = tmp_path / "dnsmasq.log"
    with private_lan() as (server, client), open(log, "wb") as log_file:
        dnsmasq = subprocess.Popen(["ip", "netns", "exec", server, sys.executable, "-m", "tests.netboot.file_server_ns",
                                    "--tftp-tree", str(tree / "srv/netboot"),
                                    "--conf", str(tree / "etc/clusterbake/netboot/dnsmasq.conf")],
                                   cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while b"TFTP root is /srv/netboot" not in log.read_bytes():
                assert dnsmasq.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            offer = probe(client, "2c:cf:67:00:00:01")
            assert offer is not None, log.read_text()
            assert offer["type"] == 2 and offer["yiaddr"] == "10.0.0.101" and offer["siaddr"] == "10.0.0.20"
            assert "Raspberry Pi Boot" in str(offer["vendor"]) and offer["router"] == "10.0.0.1"
            assert probe(client, UNKNOWN_MAC) is None
            # The board, with its address, fetches its files as the bootloader does: TFTP, by its folder.
            ip("-n", client, "addr", "add", "10.0.0.101/24", "dev", "eth0")
            fetched = tmp_path / "cmdline.txt"
            subprocess.run(["ip", "netns", "exec", client, "tftp", "-m", "binary", "10.0.0.20", "-c", "get",
                            "abcdef01/cmdline.txt", str(fetched)], check=True, capture_output=True, timeout=60)
            assert fetched.read_bytes() == (tree / "srv/netboot/abcdef01/cmdline.txt").read_bytes()
            missing = subprocess.run(["ip", "netns", "exec", client, "tftp", "-m", "binary", "10.0.0.20", "-c", "get",
                                      "deadbeef/start4.elf", str(tmp_path / "no")], capture_output=True, text=True,
                                     timeout=60)
            assert "not found" in (missing.stdout + missing.stderr).lower() or not (tmp_path / "no").stat().st_size
        finally:
            dnsmasq.terminate()
            dnsmasq.wait(timeout=30)
    text = log.read_text()
    assert f"{UNKNOWN_MAC} ignored" in text, text          # an unknown client is ignored, and logged
    assert "sent /srv/netboot/abcdef01/cmdline.txt to 10.0.0.101" in text, text
