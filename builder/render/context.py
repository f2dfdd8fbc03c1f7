"""The ONE template context: everything an overlay template may use, as plain values.

Variables (documented in overlays/README.md):
  cluster      name, domain, partition, ssh_password_authentication, secrets
  network      subnet, prefix, netmask, gateway, dns (list), interface, domain
  nodes        every node (see below), in cluster-file order
  compute_nodes  the nodes whose role's profile enables slurmd.service
  compute_groups, compute_hostlist   the same as Slurm hostlists: groups of neighbours sharing
               CPUs and memory (names, addrs, cpus, memory_mb), and all names (node[01-06],gps)
  partitions   Slurm's partitions: name, nodes (a hostlist), max_time, default (`slurm.partitions`)
  controller, time_server   the node running slurmctld / serving time
  users        name, uid, gid, groups, ssh_keys, shell
  role         the role being rendered; settings: its merged profile settings
  node         the node being rendered, or none in a role image (found at first boot)
  inventory    what the first-boot identity service needs (role images), else none
  storage      the NFS file server: server (a node, or none), clients, exports, mounts (see storage_values)
  accounting   Slurm accounting (`slurm.accounting`): enabled, storage_pass (see accounting_values)
  access       the door (`access:`), or none: node, uplink, wireguard (see builder/render/access.py)
A node is: name, role, ip, model, board, cpus, memory_mb, mem_per_cpu, serial, mac, boot, fqdn, uuid.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from builder.config.model import Cluster, Node, Partition, User
from builder.errors import InputError
from builder.render.access import access_values
from builder.render.cluster_secrets import slurmdbd_password
from builder.render.hostlist import hostlist, node_groups
from builder.render.profiles import Profile


def node_values(cluster: Cluster, node: Node) -> dict[str, Any]:
    domain = cluster.network.domain
    return {
        "name": node.name,
        "role": node.role,
        "ip": str(node.ip),
        "model": node.model,
        "board": node.board,
        "cpus": node.cpus,
        "memory_mb": node.memory_mb,
        "mem_per_cpu": node.memory_mb // node.cpus,
        "serial": node.serial,
        "mac": node.mac,
        "boot": node.boot,      # "sd" or "network" (builder/config/netboot.py)
        "fqdn": f"{node.name}.{domain}" if domain else node.name,
        # NetworkManager wants a stable id per connection; derive it so rebuilds keep it.
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{node.name}.{cluster.name}.clusterbake")),
    }


def user_values(user: User) -> dict[str, Any]:
    return {"name": user.name, "uid": user.uid, "gid": user.gid, "groups": list(user.groups),
            "ssh_keys": list(user.ssh_keys), "shell": user.shell}


def build_context(cluster: Cluster, profiles: Mapping[str, Profile], *, role: str, node: Node | None,
                  secrets: bool) -> dict[str, Any]:
    """The values every template of one render sees; `profiles` holds every role of the cluster."""
    net = cluster.network
    nodes = [node_values(cluster, n) for n in cluster.nodes]
    by_name = {n["name"]: n for n in nodes}
    compute = [n for n in nodes if profiles[n["role"]].runs("slurmd.service")]
    return {
        "cluster": {
            "name": cluster.name,
            "domain": net.domain,
            "partition": cluster.slurm_partition,
            "ssh_password_authentication": cluster.ssh_password_authentication,
            "secrets": secrets,
        },
        "network": {
            "subnet": str(net.subnet),
            "prefix": net.subnet.prefixlen,
            "netmask": str(net.subnet.netmask),
            "gateway": str(net.gateway),
            "dns": [str(d) for d in net.dns],
            "interface": net.interface,
            "domain": net.domain,
        },
        "nodes": nodes,
        "compute_nodes": compute,
        "compute_groups": node_groups(compute),
        "compute_hostlist": hostlist(n["name"] for n in compute),
        "partitions": partition_values(cluster, compute),
        "controller": by_name[cluster.slurm_controller],
        "time_server": by_name[cluster.time_server],
        "users": [user_values(u) for u in cluster.users],
        "role": role,
        "settings": dict(profiles[role].settings),
        "node": by_name[node.name] if node is not None else None,
        "inventory": None,
        "storage": storage_values(cluster, profiles, role, by_name),
        "accounting": accounting_values(cluster, profiles, role, secrets),
        "access": access_values(cluster, role, by_name, secrets=secrets),
    }


def partition_values(cluster: Cluster, compute: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each Slurm partition: name, nodes (a hostlist: its own, else every node running slurmd), max_time,
    default. A partition's node must run slurmd: only the profiles say which do, so it is checked here."""
    runs_slurmd = {n["name"] for n in compute}
    values = []
    for i, partition in enumerate(cluster.slurm_partitions or (Partition(cluster.slurm_partition, default=True),)):
        for j, name in enumerate(partition.nodes):
            if name not in runs_slurmd:
                raise InputError(f"{cluster.source.name}: slurm.partitions[{i}].nodes[{j}]: {name!r} runs no "
                                 f"slurmd (role {cluster.node(name).role!r}): Slurm could not run jobs there",
                                 hint="list nodes whose role runs slurmd (e.g. compute)")
        names = partition.nodes or tuple(n["name"] for n in compute)
        values.append({"name": partition.name, "nodes": hostlist(names), "max_time": partition.max_time,
                       "default": partition.default})
    return values


NFS_SERVER_UNIT = "nfs-server.service"


def storage_values(cluster: Cluster, profiles: Mapping[str, Profile], role: str,
                   by_name: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """What `fileserver:` means for this image: what the server exports, what this image mounts.

    An export is `path` and `unit`, the systemd unit name of its mount point (/srv/data is
    srv-data). A role whose profile runs the NFS server mounts nothing: it has the files.
    """
    server = cluster.fileserver
    if server is None:
        return {"server": None, "clients": str(cluster.network.subnet), "exports": [], "mounts": []}
    exports = [{"path": path, "unit": path.strip("/").replace("/", "-")} for path in server.exports]
    serves = profiles[role].runs(NFS_SERVER_UNIT)
    return {"server": by_name[server.node], "clients": str(server.clients), "exports": exports,
            "mounts": [] if serves else exports}


SLURMDBD_UNIT = "slurmdbd.service"


def accounting_values(cluster: Cluster, profiles: Mapping[str, Profile], role: str, secrets: bool) -> dict[str, Any]:
    """`enabled` for every image (slurm.conf is the same everywhere); `storage_pass`, MariaDB's password
    for slurmdbd, only in the image running slurmdbd and only with secrets: a release image has none
    (its first boot makes one)."""
    runs_dbd = cluster.slurm_accounting and profiles[role].runs(SLURMDBD_UNIT)
    return {"enabled": cluster.slurm_accounting,
            "storage_pass": slurmdbd_password(cluster.secrets_dir) if runs_dbd and secrets else None}
