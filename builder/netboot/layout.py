"""Where the network boot lives on the file server. The same paths in the served tree, the exports,
dnsmasq's configuration and each node's cmdline.txt.

The TFTP root holds boot files only: TFTP has no access control, so neither the shared root (with the
cluster's munge key) nor a node's state (its SSH host keys) may be below it.
"""

from __future__ import annotations

TFTP_ROOT = "/srv/netboot"              # /srv/netboot/<serial or dashed MAC>/: one node's boot partition
ROOT_EXPORT = "/srv/netroot/compute"    # <version>/: the compute role's root, shared read-only by every diskless node
STATE_EXPORT = "/srv/netstate"          # /srv/netstate/<node>/: what one node keeps across reboots

# On the node: the init that puts the RAM overlay on the shared root and mounts the state folder.
NETBOOT_INIT = "/usr/local/lib/clusterbake/netboot-init"
STATE_MOUNT = "/var/lib/clusterbake/state"
DNSMASQ_CONF = "/etc/clusterbake/netboot/dnsmasq.conf"
DNSMASQ_UNIT = "clusterbake-netboot-dnsmasq.service"
EXPORTS_FILE = "/etc/exports.d/clusterbake-netboot.exports"

# What a node keeps in its state folder (README "Diskless compute nodes"): everything else of the
# root is the served tree plus a RAM overlay, lost at every power-off.
PERSISTENT = {
    "machine-id": "/etc/machine-id",            # copied in: first boot happens once, journals stay the node's
    "ssh": "/etc/ssh",                          # ssh_host_* copied in: a node keeps its host keys
    "munge": "/var/lib/munge",                  # bind-mounted: munged's random seed
    "slurmd": "/var/lib/slurm/slurmd",          # bind-mounted: slurmd's spool (SlurmdSpoolDir)
    "journal": "/var/log/journal",              # bind-mounted: the persistent journal
}


def root_folder(version: str) -> str:
    """One version of the shared root: a new tree does not replace the root that running nodes use."""
    return f"{ROOT_EXPORT}/{version}"
