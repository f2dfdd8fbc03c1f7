"""Frozen dataclasses describing a cluster. Built by `load.py`, then read-only."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING

from builder.config.sources import Source

if TYPE_CHECKING:
    from builder.config.access import Access
    from builder.config.netboot import Netboot

# What Slurm is told about each board model: CPUs and RealMemory in MB. RealMemory is
# a little below the installed RAM because the firmware and kernel keep some for
# themselves, and slurmd drains a node that reports less than it is configured with.
BOARD_MODELS: dict[str, tuple[int, int]] = {
    "pi5-16gb": (4, 15800),
    "pi5-8gb": (4, 7800),
    "pi5-4gb": (4, 3800),
    "pi5-2gb": (4, 1800),
    "pi4-8gb": (4, 7600),
    "pi4-4gb": (4, 3700),
    "pi4-2gb": (4, 1800),
    "pi4-1gb": (4, 850),
}


@dataclass(frozen=True)
class BaseImage:
    """The Raspberry Pi OS image every build starts from, and how to trust it.

    As the loader (builder.config.load) checked it: every file reference resolved once
    (relative paths against the cluster file's folder), sha256 lower-case, fingerprints
    compact and upper-case. Acquisition only uses these sources; it resolves nothing.
    """

    image: Source                           # base_image.url
    fingerprint: str | tuple[str, ...]      # the trust anchor: one key, or several while the publisher rotates
    signature: Source                       # base_image.signature_url
    keys: tuple[Source, ...]                # base_image.signing_key: where the key may be found, tried in order
    sha256: str | None = None
    sha256_list: Source | None = None       # base_image.sha256_url

    @property
    def fingerprints(self) -> tuple[str, ...]:
        """The pinned fingerprints (compact and upper-case: the loader normalised them)."""
        return (self.fingerprint,) if isinstance(self.fingerprint, str) else self.fingerprint

    # The references as written in the cluster file (what a manifest records).
    @property
    def url(self) -> str:
        return self.image.ref

    @property
    def signature_url(self) -> str:
        return self.signature.ref

    @property
    def sha256_url(self) -> str | None:
        return self.sha256_list.ref if self.sha256_list is not None else None

    @property
    def signing_keys(self) -> tuple[str, ...]:
        return tuple(key.ref for key in self.keys)


@dataclass(frozen=True)
class Network:
    subnet: IPv4Network
    gateway: IPv4Address
    dns: tuple[IPv4Address, ...]
    interface: str = "eth0"
    domain: str | None = None


@dataclass(frozen=True)
class Node:
    name: str
    role: str
    ip: IPv4Address
    model: str = "pi5-8gb"
    cpus: int = 4
    memory_mb: int = 7800
    serial: str | None = None
    mac: str | None = None
    platform: str = "raspberry-pi"    # or "proxmox-lxc" (builder/config/platforms.py): no board, no model
    boot: str = "sd"                  # or "network": diskless, served by the file server (builder/config/netboot.py)

    @property
    def board(self) -> str:
        """`pi4` or `pi5`: the board family, from the model name ("" for a container)."""
        return self.model.split("-", 1)[0]


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    groups: tuple[str, ...] = ()
    ssh_keys: tuple[str, ...] = ()
    password_hash: str | None = None
    shell: str = "/bin/bash"
    sudo: str | None = None     # "nopasswd", "password", or None: decided per image (render/sudoers.py)


@dataclass(frozen=True)
class Partition:
    """A Slurm partition (`slurm.partitions`): its nodes (none listed: every node running slurmd)."""

    name: str
    nodes: tuple[str, ...] = ()
    max_time: str = "INFINITE"      # Slurm's MaxTime, as the cluster file gives it
    default: bool = False


@dataclass(frozen=True)
class FileServer:
    """The node exporting shared directories over NFS, and to whom (`fileserver:` in the cluster file)."""

    node: str
    exports: tuple[str, ...]        # absolute paths, e.g. /home and /scratch
    clients: IPv4Network            # who may mount them: network.subnet or a part of it


@dataclass(frozen=True)
class Cluster:
    source: Path
    name: str
    base_image: BaseImage
    network: Network
    time_server: str
    slurm_controller: str
    nodes: tuple[Node, ...]
    users: tuple[User, ...] = ()
    first_user: str | None = None
    ssh_password_authentication: bool = False
    secrets_dir: Path = field(default=Path())
    slurm_partition: str = "main"      # the default partition's name
    slurm_partitions: tuple[Partition, ...] = ()   # every partition; () as `slurm.partition` alone makes it
    slurm_accounting: bool = False      # slurmdbd + MariaDB on the controller (`slurm.accounting`)
    fileserver: FileServer | None = None
    power_button_hold_ms: int = 3000    # `power_button.hold_ms`: how long GPIO3's button is held to shut down
    access: Access | None = None        # the door to the outside (`access:`, builder/config/access.py)
    netboot: Netboot | None = None      # `netboot:`, the diskless nodes' DHCP mode and roles (config/netboot.py)

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def nodes_with_role(self, role: str) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role == role)

    @property
    def roles(self) -> tuple[str, ...]:
        """Roles in the order they first appear in the cluster file."""
        return tuple(dict.fromkeys(n.role for n in self.nodes))
