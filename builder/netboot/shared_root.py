"""The compute role's root made fit to be shared, read-only, by every diskless node.

A copy of the role image's root, so identity still comes from the board at boot (the identity
service matches its serial or MAC, as on an SD card) and nothing names a node. The changes: the
card's own mounts leave /etc/fstab (a diskless node has no card: waiting for its partitions would end
the boot in emergency mode), the netboot init and its state unit come in (overlay `netboot-root`),
the mount points that init needs exist in the read-only tree, and NetworkManager leaves the cluster
interface to the kernel, which brought it up with DHCP to mount the root: taking it down or
re-addressing it would cut the node off its own root; systemd-networkd is masked for the same reason.
Resolvers are then the cluster file's.
"""

from __future__ import annotations

import stat
from pathlib import Path

from builder.config.model import Cluster
from builder.image.image_root import DirectoryRoot
from builder.netboot.layout import NETBOOT_INIT, STATE_MOUNT

OVERLAY = "netboot-root"
STATE_UNIT = "clusterbake-netboot-state.service"
CARD_MOUNTS = ("/", "/boot/firmware", "/boot")
# netboot-init's mount points: a read-only root cannot make them at boot.
NM_CONF = "/etc/NetworkManager/conf.d/90-clusterbake-netboot.conf"
# systemd-networkd is not what these images use (NetworkManager is), but on the first VM boot something started
# it on a diskless node (the kernel's ip=dhcp is also read by systemd-network-generator): it took the interface
# over and the node lost its root. Masked, with every way it starts.
MASKED = ("systemd-networkd.service", "systemd-networkd.socket", "systemd-network-generator.service")
INIT_DIRS = ("/var/lib/clusterbake/netboot/rw", "/var/lib/clusterbake/netboot/root",
             "/var/lib/clusterbake/netboot/lower", STATE_MOUNT)


def diskless_fstab(text: str) -> str:
    """The image's fstab without the card's partitions, each dropped line kept as a comment saying why."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#") and len(fields) > 1 and fields[1] in CARD_MOUNTS:
            out.append(f"# diskless (clusterbake netboot): no card; was: {line}")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def network_files(cluster: Cluster) -> dict[str, str]:
    """The cluster interface left to the kernel's DHCP (it carries the root), the resolvers from the cluster file."""
    interface = cluster.network.interface
    return {
        NM_CONF: "# Rendered by clusterbake netboot: on a diskless node the kernel brought " + interface + " up\n"
                 "# (ip=dhcp) to mount the root over NFS; NetworkManager must not take it down or re-address it.\n"
                 f"[keyfile]\nunmanaged-devices=interface-name:{interface}\n",
        "/etc/resolv.conf": "# Rendered by clusterbake netboot from network.dns (NetworkManager does not manage "
                            f"{interface} here).\n" + "".join(f"nameserver {d}\n" for d in cluster.network.dns),
    }


def prepare_shared_root(root: DirectoryRoot, overlays_dir: Path, cluster: Cluster) -> None:
    """The copied root, made the diskless nodes' shared root (see the module's docstring)."""
    if root.exists("/etc/fstab"):
        root.rewrite("/etc/fstab", diskless_fstab(root.read_file("/etc/fstab").decode()).encode())
    for name, text in network_files(cluster).items():
        root.remove(name)       # resolv.conf may be a link (to NetworkManager's or resolved's file)
        root.write_file(name, text.encode(), mode=0o644)
    source = overlays_dir / OVERLAY
    for path in sorted(p for p in source.rglob("*") if p.is_file() and not p.is_symlink()):
        target = "/" + path.relative_to(source).as_posix()
        executable = path.stat().st_mode & stat.S_IXUSR
        root.write_file(target, path.read_bytes(), mode=0o755 if executable else 0o644)
    for directory in INIT_DIRS:
        root.make_dir(directory, mode=0o755)
    for unit in MASKED:
        root.remove(f"/etc/systemd/system/{unit}")
        root.symlink(f"/etc/systemd/system/{unit}", "/dev/null")
    root.symlink(f"/etc/systemd/system/multi-user.target.wants/{STATE_UNIT}", f"/etc/systemd/system/{STATE_UNIT}")
    assert root.exists(NETBOOT_INIT), f"overlay {OVERLAY} holds the netboot init"
