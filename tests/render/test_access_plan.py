"""`access:` in the images: the door gets nftables, dnsmasq, forwarding and its uplink; the others point at it.

Without `access:` nothing of it is in any image. The nftables ruleset is read back as text here;
that it does what it says is proven in tests/cluster/test_access_cluster.py with the kernel.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest

from builder.config import Cluster
from builder.config.access import Access, Peer, Uplink, Wifi, WireGuard
from builder.errors import InputError
from builder.image.image_root import DirectoryRoot
from builder.publish.secret_scan import secrets_in_tree
from tests.render.render_support import paths, plan, text

ROLES = ("controller", "auxiliary", "compute")
NFT = "/etc/nftables.conf"
UPLINK = "/etc/NetworkManager/system-connections/clusterbake-uplink.nmconnection"
SYSCTL = "/etc/sysctl.d/60-clusterbake-forward.conf"
DNSMASQ = "/etc/dnsmasq.d/clusterbake.conf"
WG = "/etc/wireguard/wg0.conf"
KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
DOOR_FILES = {NFT, UPLINK, SYSCTL, DNSMASQ}


def door(cluster: Cluster, uplink: Uplink | None = None, wireguard: WireGuard | None = None) -> Cluster:
    """The reference lab with gps as its door (as the loader accepts it: gps is the gateway and DNS)."""
    gps = cluster.node("gps").ip
    return dataclasses.replace(
        cluster, network=dataclasses.replace(cluster.network, gateway=gps, dns=(gps,)),
        access=Access(node="gps", uplink=uplink or Uplink(interface="eth1"), wireguard=wireguard))


def wifi(cluster: Cluster, psk: str | None = "correct horse battery") -> Cluster:
    if psk is not None:
        cluster.secrets_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
        path = cluster.secrets_dir / "wifi.psk"
        path.write_text(psk + "\n")
        os.chmod(path, 0o600)
    return door(cluster, Uplink(interface="wlan0", wifi=Wifi(country="DE", ssid="home")))


def keyfile(body: str) -> dict[str, str]:
    """A NetworkManager keyfile as `section.key` -> value."""
    found, section = {}, ""
    for line in body.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found[f"{section}.{key}"] = value
    return found


def test_without_access_no_image_has_any_of_it(reference: Cluster) -> None:
    for role in ROLES:
        p = plan(reference, role=role)
        assert not {"nftables", "dnsmasq", "wireguard-tools"} & set(p.packages), role
        assert not {"nftables.service", "dnsmasq.service"} & set(p.enable), role
        assert not (DOOR_FILES | {WG}) & paths(p), role


def test_the_door_gets_firewall_nat_dns_forwarding_and_uplink(reference: Cluster) -> None:
    p = plan(door(reference), node="gps")
    assert {"nftables", "dnsmasq"} <= set(p.packages) and "wireguard-tools" not in p.packages
    assert {"nftables.service", "dnsmasq.service"} <= set(p.enable)
    assert paths(p) >= DOOR_FILES and WG not in paths(p)
    assert "net.ipv4.ip_forward = 1" in text(p, SYSCTL)
    rules = text(p, NFT)
    assert 'iifname "eth0" oifname "eth1" ip saddr 10.0.0.0/24 accept' in rules
    assert 'oifname "eth1" ip saddr 10.0.0.0/24 masquerade' in rules
    assert 'iifname "eth1" tcp dport 22 accept' in rules
    assert rules.count("policy drop;") == 2 and "51820" not in rules
    uplink = keyfile(text(p, UPLINK))
    assert (uplink["connection.type"], uplink["connection.interface-name"], uplink["ipv4.method"]) == (
        "ethernet", "eth1", "auto")
    assert next(f for f in p.files if f.path == UPLINK).mode == 0o600
    assert "interface=eth0" in text(p, DNSMASQ).splitlines()


def test_the_door_has_no_cluster_gateway_and_the_others_point_at_it(reference: Cluster) -> None:
    cluster = door(reference)
    own = keyfile(text(plan(cluster, node="gps"), "/etc/NetworkManager/system-connections/eth0.nmconnection"))
    assert own["ipv4.address1"] == "10.0.0.20/24" and own["ipv4.never-default"] == "true"
    assert "ipv4.dns" not in own
    other = keyfile(text(plan(cluster, node="node01"), "/etc/NetworkManager/system-connections/eth0.nmconnection"))
    assert other["ipv4.address1"] == "10.0.0.101/24,10.0.0.20" and other["ipv4.dns"] == "10.0.0.20;"
    for role in ("controller", "compute"):
        assert not DOOR_FILES & paths(plan(cluster, role=role)), role


def test_wireguard_adds_its_endpoint_without_a_private_key(reference: Cluster) -> None:
    wg = WireGuard(address=IPv4Interface("10.99.0.1/24"), peers=(Peer("laptop", KEY, IPv4Address("10.99.0.2")),))
    p = plan(door(reference, wireguard=wg), role="auxiliary")
    assert "wireguard-tools" in p.packages
    assert {"clusterbake-wireguard-key.service", "wg-quick@wg0.service"} <= set(p.enable)
    conf = text(p, WG)
    assert f"PublicKey = {KEY}" in conf and "AllowedIPs = 10.99.0.2/32" in conf
    assert "PrivateKey" not in conf
    rules = text(p, NFT)
    assert 'iifname "eth1" udp dport 51820 accept' in rules
    assert 'iifname "wg0" oifname "eth0" ip saddr 10.99.0.0/24 ip daddr 10.0.0.0/24 accept' in rules


def test_wifi_psk_from_the_secrets_folder_only_with_secrets(reference: Cluster, tmp_path: Path) -> None:
    cluster = wifi(reference)
    with_secrets = plan(cluster, role="auxiliary")
    assert keyfile(text(with_secrets, UPLINK))["wifi-security.psk"] == "correct horse battery"
    assert "cfg80211.ieee80211_regdom=DE" in with_secrets.cmdline_args
    release = plan(cluster, role="auxiliary", secrets=False)
    assert "wifi-security.psk" not in keyfile(text(release, UPLINK))
    assert "correct horse" not in "".join(f.data.decode(errors="replace") for f in release.files)
    # The release scan would catch it had it slipped through.
    for name, p in (("secrets", with_secrets), ("release", release)):
        folder = tmp_path / "trees" / name / UPLINK.lstrip("/")
        folder.parent.mkdir(parents=True)
        folder.write_bytes(next(f for f in p.files if f.path == UPLINK).data)
    trees = tmp_path / "trees"
    assert secrets_in_tree(DirectoryRoot(trees / "secrets")) == [f"{UPLINK}: holds a network passphrase (psk)"]
    assert secrets_in_tree(DirectoryRoot(trees / "release")) == []


@pytest.mark.parametrize(("psk", "problem"), [
    (None, "is missing"),
    ("short", "is not a WPA passphrase"),
])
def test_a_missing_or_bad_psk_file_names_the_file_not_the_secret(reference: Cluster, psk: str | None,
                                                                  problem: str) -> None:
    with pytest.raises(InputError) as err:
        plan(wifi(reference, psk), role="auxiliary")
    assert str(err.value).startswith(f"{reference.secrets_dir / 'wifi.psk'}: {problem}")
    assert "short" not in err.value.one_line().replace("shortcut", "")


def test_a_door_sharing_its_role_is_refused(reference: Cluster) -> None:
    node01 = reference.node("node01").ip
    cluster = dataclasses.replace(
        reference, network=dataclasses.replace(reference.network, gateway=node01, dns=(node01,)),
        access=Access(node="node01", uplink=Uplink(interface="eth1")))
    with pytest.raises(InputError) as err:
        plan(cluster, role="compute")
    assert str(err.value).startswith("cluster.yaml: access.node: node01's role 'compute' is also the role of node02")
    assert err.value.hint is not None and "a role of its own" in err.value.hint


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("nft") is None, reason="needs root and nft (make deps)")
@pytest.mark.parametrize("with_wireguard", [False, True], ids=["ethernet", "wifi-wireguard"])
def test_the_kernel_accepts_the_ruleset(reference: Cluster, tmp_path: Path, with_wireguard: bool) -> None:
    """`nft -c` (check only, nothing loaded) in a network namespace of its own: the ruleset parses and the
    kernel would take it. The booted proof (tests/cluster/test_access_cluster.py) loads the Ethernet one."""
    wg = WireGuard(address=IPv4Interface("10.99.0.1/24"), peers=(Peer("laptop", KEY, IPv4Address("10.99.0.2")),))
    cluster = door(wifi(reference), Uplink(interface="wlan0", wifi=Wifi(country="DE", ssid="home")),
                   wireguard=wg) if with_wireguard else door(reference)
    rules = tmp_path / "nftables.conf"
    rules.write_text(text(plan(cluster, node="gps"), NFT))
    checked = subprocess.run(["unshare", "--net", "nft", "-c", "-f", str(rules)], capture_output=True, text=True,
                             check=False)
    assert checked.returncode == 0, checked.stderr
