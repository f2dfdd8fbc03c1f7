"""The file server's side of the network boot, rendered from the cluster file: dnsmasq and NFS exports.

Part of the file server's render plan when some node has `boot: network` (the add-on profile
`netboot-server`): baked into its image, and kept in step on a running server by `apply`, like any
other file of the plan. The served tree itself (boot folders, shared root) is `clusterbake netboot`'s.

dnsmasq answers DHCP for exactly the diskless nodes' MACs with their inventory addresses (or, with
`netboot.dhcp: proxy`, adds only the boot server to the answers of another DHCP server), serves TFTP
from /srv/netboot, ignores every other client and logs it. It runs as its own instance without DNS
(`port=0`), beside the door's dnsmasq when there is one. The exports give the shared root read-only to
the diskless nodes' addresses and each node's state folder read-write to that node alone.
"""

from __future__ import annotations

from builder.config.model import Cluster
from builder.config.netboot import PROXY, netboot_mode, network_booted
from builder.netboot.layout import DNSMASQ_CONF, EXPORTS_FILE, ROOT_EXPORT, STATE_EXPORT, TFTP_ROOT
from builder.render.image_file import ImageFile

# What the Raspberry Pi bootloader looks for in the DHCP answer's vendor options (option 43) before it
# trusts the server with TFTP; dnsmasq's pxe-service writes it.
PI_BOOT_SERVICE = "Raspberry Pi Boot"
LEASE = "12h"
# no_root_squash: the node's root must read its root-only files (shadow, munge key) and write its state as
# root; only the diskless nodes' own addresses may mount, never the subnet.
ROOT_OPTIONS = "ro,sync,no_subtree_check,no_root_squash"
STATE_OPTIONS = "rw,sync,no_subtree_check,no_root_squash"
NETBOOT_SERVER = "netboot-server"     # the add-on profile (and its overlay: the dnsmasq unit)


def dnsmasq_conf(cluster: Cluster) -> str:
    net = cluster.network
    nodes = network_booted(cluster)
    proxy = netboot_mode(cluster) == PROXY
    lines = [
        f"# Rendered by clusterbake netboot from {cluster.source.name}: DHCP and TFTP for the diskless nodes.",
        "# No DNS from this instance: the cluster's names are in /etc/hosts (and the door's dnsmasq, with access:).",
        "port=0",
        f"interface={net.interface}",
        "bind-interfaces",
        "log-dhcp",
        "log-facility=-",
        "enable-tftp",
        f"tftp-root={TFTP_ROOT}",
        f"pxe-service=0,\"{PI_BOOT_SERVICE}\"",
    ]
    if proxy:
        lines += ["# Another DHCP server gives the addresses (make it reserve each node's inventory address);",
                  "# this one only names the boot server.",
                  f"dhcp-range={net.subnet.network_address},proxy,{net.subnet.netmask}"]
    else:
        lines += [f"dhcp-range={net.subnet.network_address},static,{net.subnet.netmask},{LEASE}",
                  f"dhcp-option=option:router,{net.gateway}"]
        if net.dns:
            lines.append("dhcp-option=option:dns-server," + ",".join(str(d) for d in net.dns))
        if net.domain:
            lines.append(f"domain={net.domain}")
    with_mac = [n for n in nodes if n.mac is not None]
    for node in with_mac:
        # proxy: the address is the other server's to give; the entry only makes the board known here.
        lines.append(f"dhcp-host={node.mac},{node.name}" if proxy else f"dhcp-host={node.mac},{node.ip},{node.name}")
    if len(with_mac) == len(nodes):
        lines += ["# Any other client is not answered (log-dhcp logs it as ignored).", "dhcp-ignore=tag:!known"]
    else:
        lines += ["# Some diskless nodes are known by their serial only: every Raspberry Pi is named the boot",
                  "# server, and TFTP finds no folder for a board not in the cluster file (logged)."]
    return "\n".join(lines) + "\n"


def exports(cluster: Cluster) -> str:
    nodes = network_booted(cluster)
    lines = [f"# Rendered by clusterbake netboot from {cluster.source.name}: the diskless nodes' shared root",
             "# (read-only) and each node's state folder (read-write, that node only).",
             ROOT_EXPORT + " " + " ".join(f"{n.ip}({ROOT_OPTIONS})" for n in nodes)]
    lines += [f"{STATE_EXPORT}/{n.name} {n.ip}({STATE_OPTIONS})" for n in nodes]
    return "\n".join(lines) + "\n"


def netboot_addons(cluster: Cluster, role: str) -> tuple[str, ...]:
    """The add-on profile the file server's role gets when some node boots from the network."""
    server = cluster.fileserver
    if server is None or not network_booted(cluster) or cluster.node(server.node).role != role:
        return ()
    return (NETBOOT_SERVER,)


def netboot_server_files(cluster: Cluster, role: str) -> tuple[ImageFile, ...]:
    """What the file server's plan gets besides the add-on's unit: dnsmasq.conf, the exports, and the
    served folders (empty until `clusterbake netboot --push` fills them: exportfs and dnsmasq refuse a
    missing folder, and the NFS server, which also serves the homes, would not start)."""
    if not netboot_addons(cluster, role):
        return ()
    source = f"{cluster.source.name}: nodes[].boot: network"
    folders = [ImageFile(path, b"", 0o755, directory=True, source=source)
               for path in (TFTP_ROOT, ROOT_EXPORT, STATE_EXPORT)]
    folders += [ImageFile(f"{STATE_EXPORT}/{n.name}", b"", 0o700, directory=True, source=source)
                for n in network_booted(cluster)]
    return (ImageFile(DNSMASQ_CONF, dnsmasq_conf(cluster).encode(), source=source),
            ImageFile(EXPORTS_FILE, exports(cluster).encode(), source=source), *folders)
