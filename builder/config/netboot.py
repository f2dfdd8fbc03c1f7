"""Diskless compute nodes (issue 26): `boot: network` on a node, `netboot:` for the cluster.

A network-booted board asks DHCP for an address and the TFTP server, then TFTP for its boot files
in a folder named by its serial number (the low 8 hex digits, as the bootloader writes it) or, with
the EEPROM's `TFTP_PREFIX=2`, by its MAC address. The file server (`fileserver.node`) serves all of
it: DHCP and TFTP by dnsmasq, the shared root and the per-node state over NFS (builder/netboot/).

The checks here are those of the cluster file alone; what the roles' profiles must hold (the file
server's NFS server) is checked where they are read (render).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from builder.config.grammar import LABEL_RE, shown
from builder.config.reader import Reader

if TYPE_CHECKING:
    from builder.config.model import Cluster, Node

SD, NETWORK = "sd", "network"
BOOT_MODES = (SD, NETWORK)
# The role `clusterbake netboot` serves: one shared root for all diskless nodes. A node of another
# role would boot a root made for compute nodes (no NFS server, no GPS, no slurmctld).
NETBOOT_ROLES = ("compute",)
STATIC, PROXY = "static", "proxy"
DHCP_MODES = (STATIC, PROXY)
TFTP_SERIAL_DIGITS = 8      # the bootloader's folder: the serial's low 32 bits, lower-case hex


@dataclass(frozen=True)
class Netboot:
    """`netboot:` in the cluster file (every key optional)."""

    dhcp: str = STATIC                  # static: addresses for the listed MACs only; proxy: the router gives them
    roles: tuple[str, ...] = ()         # every node of these roles boots from the network


def read_netboot(top: Reader) -> Netboot | None:
    """`netboot:` (optional): how the file server answers DHCP, and which roles boot from the network."""
    raw = top.take("netboot", None)
    if raw is None:
        return None
    r = Reader(raw, top.file, "netboot")
    dhcp = r.text("dhcp", STATIC, pattern=lambda v: v in DHCP_MODES, expected="'static' or 'proxy'",
                  hint="static: the file server gives the diskless nodes their inventory addresses; proxy: another "
                       "DHCP server (the home router) gives addresses and the file server only adds the boot server")
    roles: list[str] = []
    for i, role in enumerate(r.items("roles", [])):
        if not isinstance(role, str) or not LABEL_RE.fullmatch(role):
            r.fail(f"{shown(role)} is not a role name of [a-z0-9-]", key=f"roles[{i}]")
        if role not in NETBOOT_ROLES:
            r.fail(f"role {role!r} cannot boot from the network; only {', '.join(NETBOOT_ROLES)} nodes share a "
                   f"served root", key=f"roles[{i}]", hint="list only compute, or mark single nodes boot: network")
        roles.append(role)
    r.done()
    return Netboot(dhcp=dhcp, roles=tuple(dict.fromkeys(roles)))


def boot_problem(value: str) -> str | None:
    return None if value in BOOT_MODES else "is not 'sd' or 'network'"


def tftp_folder(node: Node) -> str:
    """The folder the bootloader asks TFTP for: the serial's low 8 hex digits, else the MAC with dashes."""
    if node.serial is not None:
        return node.serial[-TFTP_SERIAL_DIGITS:]
    assert node.mac is not None, "checked by check_netboot"
    return node.mac.replace(":", "-")


def network_booted(cluster: Cluster) -> tuple[Node, ...]:
    return tuple(n for n in cluster.nodes if n.boot == NETWORK)


def netboot_mode(cluster: Cluster) -> str:
    return cluster.netboot.dhcp if cluster.netboot is not None else STATIC


def check_netboot(cluster: Cluster, top: Reader) -> None:
    """The diskless nodes against the rest of the file: each one findable by the bootloader and served."""
    where = {n.name: i for i, n in enumerate(cluster.nodes)}
    by_role = cluster.netboot.roles if cluster.netboot is not None else ()
    folders: dict[str, int] = {}
    for node in network_booted(cluster):
        i = where[node.name]
        key = f"nodes[{i}].boot" if node.role not in by_role else f"netboot.roles[{by_role.index(node.role)}]"
        if node.role not in NETBOOT_ROLES:
            top.fail(f"{node.name} has role {node.role!r}; only {', '.join(NETBOOT_ROLES)} nodes boot from the "
                     f"network (they share one served root)", path=key,
                     hint="give the node role: compute, or remove boot: network (it boots from its SD card)")
        if node.serial is None and node.mac is None:
            top.fail(f"{node.name} boots from the network but has neither serial nor mac: the bootloader asks for its "
                     f"files by one of them", path=key,
                     hint="add serial: \"abcdef01\" (the last 8 hex digits of Serial in /proc/cpuinfo) or mac: "
                          "(its Ethernet address)")
        if node.mac is None and netboot_mode(cluster) == STATIC:
            top.fail(f"{node.name} boots from the network with netboot.dhcp: static, which gives addresses only to "
                     f"the MACs listed", path=f"nodes[{i}].mac",
                     hint="add the board's mac: (ip link show eth0), or set netboot: {dhcp: proxy} if another "
                          "DHCP server gives the addresses")
        folder = tftp_folder(node)
        if folder in folders:
            j = folders[folder]
            top.fail(f"{node.name}'s boot folder {folder} is already that of nodes[{j}] ({cluster.nodes[j].name}): "
                     f"the bootloader could not tell the two boards apart",
                     path=f"nodes[{i}].serial" if node.serial is not None else f"nodes[{i}].mac",
                     hint="give each board its own serial (the last 8 hex digits decide) and MAC")
        folders[folder] = i
    if not folders:
        return
    first = network_booted(cluster)[0]
    server = cluster.fileserver
    if server is None:
        top.fail(f"{first.name} boots from the network, but the cluster has no file server to serve it",
                 path=f"nodes[{where[first.name]}].boot",
                 hint="add fileserver: {node: gps} (the node that serves DHCP, TFTP and the root over NFS)")
    if server.node in where and cluster.node(server.node).boot == NETWORK:
        top.fail(f"{server.node} serves the network boot and cannot boot from it itself",
                 path=f"nodes[{where[server.node]}].boot", hint="remove boot: network from the file server")
