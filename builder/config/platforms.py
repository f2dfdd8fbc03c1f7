"""Where a node runs: on a Raspberry Pi (the default) or as a Proxmox LXC container (amd64).

The cluster file says it per node (`platform: proxmox-lxc`). A container has no board: the keys
that describe one (model, serial, mac) are refused on it, and its CPUs and memory are what the
container is given (`cpus`, `memory_mb`, also used for `pct create --cores/--memory`).
"""

from __future__ import annotations

from ipaddress import IPv4Address

from builder.config.model import Node
from builder.config.reader import Reader

RASPBERRY_PI = "raspberry-pi"
PROXMOX_LXC = "proxmox-lxc"
PLATFORMS = (RASPBERRY_PI, PROXMOX_LXC)

# What a node key means only on a board: the model sets config.txt sections and Slurm's
# CPUs/RealMemory, serial and MAC are how a role image recognises its board at first boot.
BOARD_KEYS = ("model", "serial", "mac")
CONTAINER_CPUS = 2
CONTAINER_MEMORY_MB = 2048
MAX_CONTAINER_CPUS = 512
MAX_CONTAINER_MEMORY_MB = 4 << 20


def platform_problem(value: str) -> str | None:
    return None if value in PLATFORMS else "is not a platform (" + ", ".join(PLATFORMS) + ")"


def container_node(r: Reader, *, name: str, role: str, ip: IPv4Address, platform: str) -> Node:
    """The rest of a container node's keys; a board's key on it is one clear error."""
    for key in BOARD_KEYS:
        if key in r.data:
            r.fail(f"is a Raspberry Pi key; a {platform} node has no board", key=key,
                   hint=f"remove '{key}:' (set cpus and memory_mb for the container), or remove 'platform:' "
                        "to make the node a Pi")
    return Node(
        name=name,
        role=role,
        ip=ip,
        model="",
        cpus=r.integer("cpus", CONTAINER_CPUS, minimum=1, maximum=MAX_CONTAINER_CPUS),
        memory_mb=r.integer("memory_mb", CONTAINER_MEMORY_MB, minimum=256, maximum=MAX_CONTAINER_MEMORY_MB),
        platform=platform,
    )
