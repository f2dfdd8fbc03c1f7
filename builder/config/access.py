"""`access:` in the cluster file: the one door between the isolated cluster network and the outside.

One node (the auxiliary node, or any node with a second interface) gets an uplink (Ethernet, or
Wi-Fi whose passphrase stays in the secrets folder), forwards the cluster's traffic out with NAT,
serves the cluster's DNS, and lets in only SSH (a jump host) and, optionally, WireGuard. Without
`access:` none of this exists. The checks here are those of the section alone and of the section
against the rest of the file (`check_access`); what the profiles must say is checked by render.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING

from builder.config import grammar
from builder.config.grammar import INTERFACE_RE, shown
from builder.config.reader import Reader

if TYPE_CHECKING:
    from builder.config.model import Cluster, Network

WIFI_PSK = "wifi.psk"                 # the Wi-Fi passphrase, in secrets_dir: never in the cluster file
COUNTRY_RE = re.compile(r"[A-Z]{2}")  # ISO 3166-1 alpha-2: the regulatory domain of the Wi-Fi radio
SSID_MAX_BYTES = 32
WIREGUARD_KEY_RE = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")   # 32 bytes in base64
WIREGUARD_PORT = 51820
WIREGUARD_INTERFACE = "wg0"
DHCP = "dhcp"


@dataclass(frozen=True)
class Wifi:
    country: str          # upper-case ISO 3166-1 alpha-2
    ssid: str


@dataclass(frozen=True)
class Uplink:
    interface: str                          # the door's second interface: eth1, wlan0, …
    mac: str | None = None                  # Ethernet: match the adapter by its address instead of its name
    address: IPv4Interface | None = None    # None: DHCP from the home router
    gateway: IPv4Address | None = None      # with a static address
    dns: tuple[IPv4Address, ...] = ()       # with a static address
    wifi: Wifi | None = None


@dataclass(frozen=True)
class Peer:
    name: str
    public_key: str
    address: IPv4Address                    # the peer's address inside the tunnel


@dataclass(frozen=True)
class WireGuard:
    address: IPv4Interface                  # the door's address in the tunnel, with the tunnel's prefix
    port: int = WIREGUARD_PORT
    peers: tuple[Peer, ...] = ()

    @property
    def subnet(self) -> IPv4Network:
        return self.address.network


@dataclass(frozen=True)
class Access:
    node: str               # the door
    uplink: Uplink
    wireguard: WireGuard | None = None


def read_access(top: Reader, network: Network, secrets_dir: Path) -> Access | None:
    """`access:` (optional): the door node, its uplink and its WireGuard endpoint."""
    raw = top.take("access", None)
    if raw is None:
        return None
    r = Reader(raw, top.file, "access")
    node = r.text("node", check=grammar.hostname_problem)
    uplink = _uplink(r.sub("uplink"), network, secrets_dir)
    raw_wireguard = r.take("wireguard", None)
    wireguard = None
    if raw_wireguard is not None:
        wireguard = _wireguard(Reader(raw_wireguard, top.file, "access.wireguard"), network, uplink)
    r.done()
    return Access(node=node, uplink=uplink, wireguard=wireguard)


def _uplink(r: Reader, network: Network, secrets_dir: Path) -> Uplink:
    interface = r.text("interface", pattern=INTERFACE_RE.fullmatch,
                       expected="an interface name like eth1 or wlan0 (1-15 of a-z, 0-9)")
    if interface == network.interface:
        r.fail(f"{interface} is the cluster's interface (network.interface)", key="interface",
               hint="name the door's second interface, the one cabled to the home network (e.g. eth1 or wlan0)")
    mac = r.text("mac", None, check=lambda v: grammar.mac_problem(v.lower()))
    wifi = None
    raw_wifi = r.take("wifi", None)
    if raw_wifi is not None:
        wifi = _wifi(Reader(raw_wifi, r.file, "access.uplink.wifi"), secrets_dir)
        if mac is not None:
            r.fail("is for an Ethernet uplink; a Wi-Fi uplink is named by its interface", key="mac",
                   hint="remove mac: or wifi:")
    address_text = r.text("address", DHCP, expected=f"'{DHCP}' or an address with its prefix like 192.168.1.50/24")
    address = gateway = None
    dns: list[IPv4Address] = []
    if address_text != DHCP:
        address = _interface(r, "address", address_text)
        if address.network.overlaps(network.subnet):
            r.fail(f"{address.network} overlaps the cluster's network.subnet {network.subnet}", key="address",
                   hint="the uplink is the home network: give the cluster a subnet of its own "
                        "(e.g. 10.0.0.0/24 beside a home 192.168.1.0/24)")
        gateway = r.parse("gateway", IPv4Address, "an IPv4 address (the home router)")
        if gateway not in address.network:
            r.fail(f"{gateway} is outside the uplink's {address.network}", key="gateway",
                   hint="the home router's address on that network")
        for i, value in enumerate(r.items("dns", [])):
            try:
                dns.append(IPv4Address(value))
            except ValueError:
                r.fail(f"{shown(value)} is not an IPv4 address", key=f"dns[{i}]")
        if not dns:
            r.fail("is missing: with a static address the door needs the home network's resolvers", key="dns",
                   hint=f"e.g. dns: [{gateway}], or remove address: to use DHCP")
    else:
        for key in ("gateway", "dns"):
            if key in r.data:
                r.fail("is only for a static address; the uplink takes it from DHCP", key=key,
                       hint="remove it, or give the uplink a static address: (e.g. 192.168.1.50/24)")
    r.done()
    return Uplink(interface=interface, mac=mac.lower() if mac else None, address=address, gateway=gateway,
                  dns=tuple(dns), wifi=wifi)


def _wifi(r: Reader, secrets_dir: Path) -> Wifi:
    if "psk" in r.data:
        # Refused before it is looked at: never repeat a secret in a message.
        r.fail("a Wi-Fi passphrase does not belong in the cluster file (it would end up in git and in "
               "release images)", key="psk", hint=f"put it in {secrets_dir / WIFI_PSK} (chmod 600) and remove psk:")
    country = r.text("country", check=_country_problem, hint="e.g. GB, DE or US: the country the radio is in")
    ssid = r.text("ssid", check=_ssid_problem)
    r.done()
    return Wifi(country=country, ssid=ssid)


def _country_problem(value: str) -> str | None:
    return None if COUNTRY_RE.fullmatch(value) else "is not a two-letter ISO 3166 country code in capitals"


def _ssid_problem(value: str) -> str | None:
    size = len(value.encode())
    if not 1 <= size <= SSID_MAX_BYTES:
        return f"is {size} bytes long; an SSID is 1 to {SSID_MAX_BYTES}"
    if value.strip() != value or ";" in value or "\\" in value:
        return "starts or ends with a space or holds ';' or '\\'"
    return None


def _wireguard(r: Reader, network: Network, uplink: Uplink) -> WireGuard:
    address = _interface(r, "address", r.text("address", expected="an address with its prefix like 10.99.0.1/24"))
    for other, what in ((network.subnet, "the cluster's network.subnet"),
                        (uplink.address.network if uplink.address else None, "the uplink's network")):
        if other is not None and address.network.overlaps(other):
            r.fail(f"{address.network} overlaps {what} {other}", key="address",
                   hint="give the tunnel a subnet of its own, e.g. 10.99.0.1/24")
    port = r.integer("port", WIREGUARD_PORT, minimum=1, maximum=65535)
    if port == 22:
        r.fail("22 is SSH's port", key="port", hint=f"use WireGuard's own, {WIREGUARD_PORT}")
    peers: list[Peer] = []
    for i, raw in enumerate(r.items("peers")):
        p = r.item("peers", i, raw)
        name = p.text("name", check=lambda v: grammar.label_problem(v, "peer name"))
        key = p.text("public_key", check=wireguard_key_problem,
                     hint="paste the peer's public key: the output of `wg pubkey < private.key` (44 characters)")
        peer_address = p.parse("address", IPv4Address, "an IPv4 address")
        if peer_address not in address.network or peer_address in (address.ip, address.network.network_address,
                                                                    address.network.broadcast_address):
            p.fail(f"{peer_address} is not a free host address of the tunnel {address.network}", key="address",
                   hint=f"choose an address in {address.network} other than the door's {address.ip}")
        for j, seen in enumerate(peers):
            if seen.name == name:
                p.fail(f"name {name!r} is already used by access.wireguard.peers[{j}]", key="name")
            if seen.public_key == key:
                p.fail(f"this key is already access.wireguard.peers[{j}]'s", key="public_key",
                       hint="each peer has its own key pair")
            if seen.address == peer_address:
                p.fail(f"{peer_address} is already access.wireguard.peers[{j}]'s", key="address")
        p.done()
        peers.append(Peer(name=name, public_key=key, address=peer_address))
    if not peers:
        r.fail("is empty", key="peers", hint="list each device that may connect, with its public key, "
                                             "or remove wireguard:")
    r.done()
    return WireGuard(address=address, port=port, peers=tuple(peers))


def wireguard_key_problem(value: str) -> str | None:
    """None for a WireGuard public key: 44 characters of base64 holding exactly 32 bytes."""
    if len(value) != 44 or not WIREGUARD_KEY_RE.fullmatch(value):
        return "is not a WireGuard key (44 characters of base64 ending in '=')"
    try:
        decoded = base64.b64decode(value, validate=True)
    except binascii.Error:
        return "is not a WireGuard key (not base64)"
    return None if len(decoded) == 32 else "is not a WireGuard key (not 32 bytes)"


def _interface(r: Reader, key: str, text: str) -> IPv4Interface:
    if "/" not in text:
        r.fail(f"{shown(text)} has no prefix length", key=key, hint=f"write it with its prefix, e.g. {text}/24")
    try:
        value = IPv4Interface(text)
    except ValueError:
        r.fail(f"{shown(text)} is not an IPv4 address with its prefix like 192.168.1.50/24", key=key)
    if value.ip in (value.network.network_address, value.network.broadcast_address) and value.network.prefixlen < 31:
        r.fail(f"{value.ip} is the network or broadcast address of {value.network}", key=key)
    return value


def check_access(cluster: Cluster, top: Reader) -> None:
    """`access:` against the rest of the file: the door is a node, and it is the cluster's gateway and DNS.
    Whether its platform can be the door is the platform record's to say (builder.render.platform)."""
    access = cluster.access
    if access is None:
        return
    names = [n.name for n in cluster.nodes]
    if access.node not in names:
        top.fail(f"{shown(access.node)} names no node", path="access.node", hint="use one of " + ", ".join(names))
    door = cluster.node(access.node)
    net = cluster.network
    fix = f"set network.gateway: {door.ip} and network.dns: [{door.ip}]"
    if net.gateway != door.ip:
        top.fail(f"{net.gateway} is not the door; with access: set, {door.name} ({door.ip}) is the cluster's "
                 f"gateway", path="network.gateway", hint=fix)
    if net.dns != (door.ip,):
        shown_dns = ", ".join(str(d) for d in net.dns) or "no resolver"
        top.fail(f"{shown_dns} is not the door; with access: set, {door.name} answers the cluster's DNS",
                 path="network.dns", hint=fix)


def is_door(cluster: Cluster, node: str) -> bool:
    return cluster.access is not None and cluster.access.node == node
