"""The platform record: what a platform leaves out of a node's plan, which roles it cannot run,
and which artefact its nodes get (and so which builder makes it: builder.build's BUILDERS).

Profiles and overlays say what a role is; the platform says what of it a node can carry. A
Raspberry Pi carries everything. A Proxmox LXC container (amd64, unprivileged) has no boot
partition, no GPIO, no board serial and no clock of its own:

- no config.txt, cmdline.txt or boot-partition files, no cloud-init seed (Proxmox sets the
  container's name, address and resolver from `pct create`), no NetworkManager keyfile;
- no first-boot identity service (the container is built for one node, `NODE=`), no munge-key
  install from the boot partition (the key is baked), no console user wizard;
- no time daemon: an unprivileged container cannot set the clock it shares with the Proxmox
  host (chrony.service has ConditionCapability=CAP_SYS_TIME and would not start); the host's
  own chrony keeps that clock, pointed at the GPS node (README, "Proxmox host + Pis");
- Proxmox leaves the rendered /etc/hosts alone (the `container` overlay's .pve-ignore.hosts).

A role whose profile enables a unit that needs a board's hardware (gpsd, the power button) or
the kernel's own services (the NFS server) cannot run in a container at all
(`check_platform_roles`): one line naming the node, the unit and what it needs. Nor can a
container be the cluster's door (`access:`), which needs a second interface of its own.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from builder.config.model import Cluster, Node
from builder.config.platforms import PROXMOX_LXC, RASPBERRY_PI
from builder.errors import InputError
from builder.render.image_file import ImageFile
from builder.render.profiles import Profile

SD_CARD_IMAGE = "sd-card image"    # one per role, shared by the role's boards (builder.build)
LXC_TEMPLATE = "lxc template"       # one per node (builder.container)


@dataclass(frozen=True)
class Platform:
    name: str
    arch: str                                       # Debian architecture of the node's root filesystem
    artefact: str = SD_CARD_IMAGE                   # what a build for its nodes produces
    boot_partition: bool = True                     # config.txt, cmdline.txt, /boot/firmware files
    overlays_left_out: tuple[str, ...] = ()
    overlays_added: tuple[str, ...] = ()
    units_left_out: tuple[str, ...] = ()            # neither enabled, disabled nor masked
    packages_left_out: tuple[str, ...] = ()
    paths_left_out: tuple[str, ...] = ()            # fnmatch globs over paths in the root
    hardware: Mapping[str, str] = field(default_factory=dict)   # unit -> what it needs that the platform lacks
    second_interface: bool = True                   # an interface of its own to the home network: can be the door

    def overlays(self, names: tuple[str, ...]) -> tuple[str, ...]:
        kept = tuple(n for n in names if n not in self.overlays_left_out)
        return tuple(dict.fromkeys((*kept, *self.overlays_added)))

    def units(self, units: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(u for u in units if u not in self.units_left_out)

    def packages(self, packages: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(p for p in packages if p not in self.packages_left_out)

    def keeps(self, file: ImageFile) -> bool:
        return not any(fnmatch.fnmatchcase(file.path, glob) for glob in self.paths_left_out)

    def needs(self, profile: Profile) -> list[tuple[str, str]]:
        """(unit, hardware) for each unit of the role that needs hardware this platform lacks."""
        return [(unit, what) for unit, what in self.hardware.items() if profile.runs(unit)]

    @property
    def role_images(self) -> bool:
        """Whether its nodes share their role's image (an SD card) rather than get one artefact each."""
        return self.artefact == SD_CARD_IMAGE


# A plan's boot-partition edits, for a platform that has no boot partition.
NO_BOOT_EDITS: dict[str, Any] = {
    "config_txt_lines": (), "config_txt_boards": (), "remove_serial_console": False, "cmdline_args": (),
    "boot_files": (),
}


PLATFORMS: dict[str, Platform] = {
    RASPBERRY_PI: Platform(RASPBERRY_PI, "arm64"),
    PROXMOX_LXC: Platform(
        PROXMOX_LXC,
        "amd64",
        artefact=LXC_TEMPLATE,
        boot_partition=False,
        overlays_left_out=("identity", "time-client", "power-button"),
        overlays_added=("container",),
        units_left_out=("clusterbake-identity.service", "clusterbake-munge-key.service", "chrony.service",
                        "chronyd-restricted.service",
                        "clusterbake-slurm-power.service", "userconfig.service", "getty@tty1.service"),
        packages_left_out=("chrony",),
        second_interface=False,
        paths_left_out=("/boot/firmware/*", "/etc/cloud/*", "/etc/NetworkManager/*",
                        "/etc/systemd/system/clusterbake-munge-key.service"),
        hardware={
            "gpsd.service": "the GPS receiver on the Pi's UART and its PPS pin",
            "clusterbake-slurm-power.service": "the power button on the Pi's GPIO3",
            # nfsd lives in the kernel the container shares with the Proxmox host, and an
            # unprivileged container may not start it (nor export the host's kernel to the subnet).
            "nfs-server.service": "the kernel NFS server (nfsd), which an unprivileged container cannot run",
        },
    ),
}


def platform_of(node: Node | None) -> Platform:
    """A node's platform; a role image (no node) is always a Raspberry Pi's."""
    return PLATFORMS[node.platform if node is not None else RASPBERRY_PI]


def on_boards(nodes: tuple[Node, ...]) -> tuple[Node, ...]:
    """The nodes a role image (an SD card) is for: the others get an artefact each, built per node."""
    return tuple(n for n in nodes if platform_of(n).role_images)


def check_platform_roles(cluster: Cluster, profiles: Mapping[str, Profile]) -> None:
    """No node may have a role that needs hardware its platform does not have, nor be the door
    (`access.node`) without a second interface."""
    if cluster.access is not None:
        door = cluster.node(cluster.access.node)
        if not platform_of(door).second_interface:
            raise InputError(f"{cluster.source.name}: access.node: {door.name} is a {door.platform} container; "
                             "the door needs a board with a second interface",
                             hint="choose a Raspberry Pi node (e.g. the auxiliary node)")
    for i, node in enumerate(cluster.nodes):
        platform = PLATFORMS[node.platform]
        for unit, what in platform.needs(profiles[node.role]):
            raise InputError(
                f"{cluster.source.name}: nodes[{i}].role: {node.name!r} is a {platform.name} node, but role "
                f"{node.role!r} enables {unit}, which needs {what}",
                hint="run this role on a Raspberry Pi (remove 'platform:'), or give the container a role "
                     "that needs none of it (e.g. controller or login)")


def role_targets(cluster: Cluster) -> list[tuple[str | None, str | None]]:
    """(role, None) of every role image of a cluster: one per role that has boards."""
    return [(role, None) for role in cluster.roles if on_boards(cluster.nodes_with_role(role))]


def image_targets(cluster: Cluster) -> list[tuple[str | None, str | None]]:
    """(role, node) of every artefact of a cluster: its role images, then one artefact per node
    whose platform has no role images (a container template)."""
    return [*role_targets(cluster), *((None, n.name) for n in cluster.nodes if not platform_of(n).role_images)]
