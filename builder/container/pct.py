"""The `pct create` command line that turns a template into the node's container on the Proxmox host."""

from __future__ import annotations

import shlex

from builder.config.model import Cluster, Node

BRIDGE = "vmbr0"      # Proxmox's default bridge: the one on the cluster's LAN
STORAGE = "local"     # where `pveam`/the web UI keep templates: /var/lib/vz/template/cache
ROOTFS = "local-lvm:8"


def template_name(cluster: Cluster, node: Node) -> str:
    return f"{cluster.name}-{node.name}.tar.zst"


def pct_create_command(cluster: Cluster, node: Node) -> str:
    """Unprivileged, nesting on (systemd in a Debian trixie container needs it), the node's static
    address on the cluster bridge, its name, CPUs and memory, started with the host."""
    net = cluster.network
    nic = f"name={net.interface},bridge={BRIDGE},ip={node.ip}/{net.subnet.prefixlen},gw={net.gateway}"
    argv = [
        "pct", "create", "$(pvesh get /cluster/nextid)", f"{STORAGE}:vztmpl/{template_name(cluster, node)}",
        "--hostname", node.name, "--ostype", "debian", "--unprivileged", "1", "--features", "nesting=1",
        "--net0", nic, "--cores", str(node.cpus), "--memory", str(node.memory_mb), "--rootfs", ROOTFS,
        "--onboot", "1",
    ]
    if net.dns:
        argv += ["--nameserver", " ".join(str(d) for d in net.dns)]
    if net.domain:
        argv += ["--searchdomain", net.domain]
    # The next free VMID is asked of the host when the line is run; the rest is quoted as data.
    return " ".join(word if word.startswith("$(") else shlex.quote(word) for word in argv)


def pct_instructions(cluster: Cluster, node: Node) -> str:
    """What to do with the template on the Proxmox host: where it goes, then `pct create`."""
    return (f"# on the Proxmox host: copy {template_name(cluster, node)} to /var/lib/vz/template/cache/, then\n"
            f"{pct_create_command(cluster, node)}")
