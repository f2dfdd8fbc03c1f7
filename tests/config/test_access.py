"""`access:` in the cluster file: the door's uplink, its WireGuard peers, and the mistakes refused in one line."""

from __future__ import annotations

import subprocess
import sys
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest

from builder.config import load_cluster
from builder.errors import InputError
from builder.paths import repo_root
from tests.config.conftest import write

# A real WireGuard public key's shape: 32 bytes in base64 (these are bytes 0..31 and 32 x 0xff).
KEY_A = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
KEY_B = "//////////////////////////////////////////8="


def with_access(data: dict, **access: object) -> dict:
    """The shipped lab with gps as the door, its cluster address the others' gateway and DNS."""
    data["network"]["gateway"] = "10.0.0.20"
    data["network"]["dns"] = ["10.0.0.20"]
    data["access"] = {"node": "gps", "uplink": {"interface": "eth1"}, **access}
    return data


def refused(tmp_path: Path, data: dict) -> InputError:
    with pytest.raises(InputError) as err:
        load_cluster(write(tmp_path, data))
    return err.value


def test_without_access_there_is_none() -> None:
    assert load_cluster(repo_root() / "cluster.yaml").access is None


def test_an_ethernet_uplink_on_dhcp(tmp_path: Path, data: dict) -> None:
    access = load_cluster(write(tmp_path, with_access(data))).access
    assert access is not None and access.node == "gps" and access.wireguard is None
    assert access.uplink.interface == "eth1" and access.uplink.address is None and access.uplink.wifi is None


def test_a_static_wifi_uplink_and_wireguard(tmp_path: Path, data: dict) -> None:
    access = load_cluster(write(tmp_path, with_access(
        data,
        uplink={"interface": "wlan0", "address": "192.168.1.50/24", "gateway": "192.168.1.1", "dns": ["192.168.1.1"],
                "wifi": {"country": "GB", "ssid": "home net"}},
        wireguard={"address": "10.99.0.1/24", "peers": [{"name": "laptop", "public_key": KEY_A,
                                                         "address": "10.99.0.2"}]}))).access
    assert access is not None and access.uplink.wifi is not None
    assert (access.uplink.wifi.country, access.uplink.wifi.ssid) == ("GB", "home net")
    assert access.uplink.address == IPv4Interface("192.168.1.50/24")
    assert access.uplink.gateway == IPv4Address("192.168.1.1")
    assert access.wireguard is not None and access.wireguard.port == 51820
    assert [(p.name, p.public_key) for p in access.wireguard.peers] == [("laptop", KEY_A)]


def peers(*keys: str) -> dict:
    return {"address": "10.99.0.1/24",
            "peers": [{"name": f"p{i}", "public_key": k, "address": f"10.99.0.{i + 2}"} for i, k in enumerate(keys)]}


@pytest.mark.parametrize(("change", "where", "problem", "fix"), [
    ({"uplink": {"interface": "eth0"}}, "access.uplink.interface", "eth0 is the cluster's interface",
     "the door's second interface"),
    ({"uplink": {"interface": "eth1", "address": "10.0.0.200/16", "gateway": "10.0.0.1"}}, "access.uplink.address",
     "10.0.0.0/16 overlaps the cluster's network.subnet 10.0.0.0/24", "a subnet of its own"),
    ({"uplink": {"interface": "wlan0", "wifi": {"country": "GB", "ssid": "home", "psk": "hunter2hunter2"}}},
     "access.uplink.wifi.psk", "does not belong in the cluster file", "wifi.psk (chmod 600) and remove psk:"),
    ({"uplink": {"interface": "wlan0", "wifi": {"country": "gb", "ssid": "home"}}}, "access.uplink.wifi.country",
     "is not a two-letter ISO 3166 country code", "e.g. GB"),
    ({"uplink": {"interface": "wlan0", "wifi": {"country": "GBR", "ssid": "home"}}}, "access.uplink.wifi.country",
     "is not a two-letter ISO 3166 country code", "e.g. GB"),
    ({"wireguard": peers("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAA")},
     "access.wireguard.peers[0].public_key", "is not a WireGuard key", "wg pubkey"),
    ({"wireguard": peers(KEY_A[:-2] + "==")}, "access.wireguard.peers[0].public_key", "is not a WireGuard key",
     "44 characters"),
    ({"wireguard": peers(KEY_A, KEY_A)}, "access.wireguard.peers[1].public_key", "already access.wireguard.peers[0]",
     "its own key pair"),
    ({"wireguard": {"address": "10.0.0.1/24", "peers": []}}, "access.wireguard.address",
     "overlaps the cluster's network.subnet", "a subnet of its own"),
    ({"node": "nas"}, "access.node", "'nas' names no node", "one of head, gps"),
    ({"uplink": {"interface": "eth1", "address": "192.168.1.50/24", "gateway": "192.168.1.1"}}, "access.uplink.dns",
     "is missing", "dns: [192.168.1.1]"),
    ({"uplink": {"interface": "eth1", "gateway": "192.168.1.1"}}, "access.uplink.gateway",
     "only for a static address", "remove it"),
    ({"uplink": {"interface": "eth1"}, "wireguard": {"address": "10.99.0.1/24", "port": 22, "peers": []}},
     "access.wireguard.port", "22 is SSH's port", "51820"),
])
def test_bad_access_is_one_line_naming_key_and_fix(tmp_path: Path, data: dict, change: dict, where: str,
                                                    problem: str, fix: str) -> None:
    err = refused(tmp_path, with_access(data, **change))
    assert str(err).startswith(f"cluster.yaml: {where}: "), str(err)
    assert problem in str(err)
    assert err.hint is not None and fix in err.hint, err.hint


def test_a_psk_in_the_cluster_file_is_never_shown(tmp_path: Path, data: dict) -> None:
    err = refused(tmp_path, with_access(data, uplink={"interface": "wlan0", "wifi": {
        "country": "GB", "ssid": "home", "psk": "correct horse battery"}}))
    assert "correct horse" not in err.one_line()
    assert str(tmp_path / "secrets" / "wifi.psk") in (err.hint or "") or "wifi.psk" in (err.hint or "")


def test_the_door_must_be_the_gateway(tmp_path: Path, data: dict) -> None:
    changed = with_access(data)
    changed["network"]["gateway"] = "10.0.0.1"
    err = refused(tmp_path, changed)
    assert str(err).startswith("cluster.yaml: network.gateway: 10.0.0.1 is not the door")
    assert err.hint == "set network.gateway: 10.0.0.20 and network.dns: [10.0.0.20]"


def test_the_cli_prints_one_line_with_the_fix(tmp_path: Path, data: dict) -> None:
    path = write(tmp_path, with_access(data, uplink={"interface": "eth0"}))
    proc = subprocess.run([sys.executable, "-m", "builder", "check", "--cluster", path],
                          cwd=repo_root(), capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "clusterbake: error: cluster.yaml: access.uplink.interface: eth0 is the cluster's interface "
        "(network.interface) (fix: name the door's second interface, the one cabled to the home network "
        "(e.g. eth1 or wlan0))"]


@pytest.mark.parametrize("dns", [[], ["10.0.0.1"], ["10.0.0.20", "9.9.9.9"]])
def test_the_door_must_be_the_only_resolver(tmp_path: Path, data: dict, dns: list[str]) -> None:
    changed = with_access(data)
    changed["network"]["dns"] = dns
    err = refused(tmp_path, changed)
    assert str(err).startswith("cluster.yaml: network.dns: ") and "is not the door" in str(err)
    assert err.hint == "set network.gateway: 10.0.0.20 and network.dns: [10.0.0.20]"
