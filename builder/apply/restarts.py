"""Which units a node must reload or restart after `apply` changed its files, in dependency order.

munge before anything that authenticates with it, slurmd last on a node; the controller's
slurmctld is told once, at the very end, with `scontrol reconfigure` (which also hands the new
slurm.conf to every slurmd, configless). Pure: from the changed paths and the node's units.
"""

from __future__ import annotations

from collections.abc import Iterable

# The order a node restarts what changed (a dependency comes before what uses it).
ORDER = ("munge.service", "chrony.service", "ssh.service", "nfs-server.service", "prometheus.service",
         "prometheus-node-exporter.service", "slurmdbd.service", "slurmd.service")
# Files read by a unit that is not named by their path.
READ_BY = {
    "/etc/munge/": "munge.service",
    "/etc/chrony/": "chrony.service",
    "/etc/ssh/sshd_config.d/": "ssh.service",
    "/etc/default/slurmd": "slurmd.service",
    "/etc/prometheus/": "prometheus.service",
    "/etc/slurm/slurmdbd.conf": "slurmdbd.service",
    "/etc/clusterbake/netboot/": "clusterbake-netboot-dnsmasq.service",
}
# Oneshot units that do their work at boot and exit: `try-restart` finds them inactive and does nothing,
# so a change to what they run is carried out by starting them again (the cluster keys script lists the
# users: a user added by apply gets the key to SSH between nodes now, not at the file server's next boot).
RUN_AGAIN = {"/usr/local/lib/clusterbake/cluster-keys": "clusterbake-cluster-keys.service"}
UNIT_DIR = "/etc/systemd/system/"
RECONFIGURE = ["scontrol", "reconfigure"]


def _unit_of(path: str) -> str | None:
    for prefix, unit in READ_BY.items():
        if path == prefix or (prefix.endswith("/") and path.startswith(prefix)):
            return unit
    if path.startswith(UNIT_DIR):
        name = path[len(UNIT_DIR):].split("/", 1)[0]
        return name.removesuffix(".d") if name.endswith((".service.d", ".service")) else None
    return None


def node_commands(changed: Iterable[str], enabled: Iterable[str]) -> list[list[str]]:
    """The commands a node runs after its files changed: daemon-reload, exportfs, oneshots run again, then
    restarts in ORDER."""
    paths = list(changed)
    running = set(enabled)
    commands: list[list[str]] = []
    if any(p.startswith(UNIT_DIR) for p in paths):
        commands.append(["systemctl", "daemon-reload"])
    if any(p.startswith("/etc/exports.d/") for p in paths) and "nfs-server.service" in running:
        commands.append(["exportfs", "-ra"])
    commands += [["systemctl", "start", unit] for path, unit in RUN_AGAIN.items() if path in paths and unit in running]
    units = {u for p in paths if (u := _unit_of(p)) is not None and u in running}
    ordered = [u for u in ORDER if u in units] + sorted(units - set(ORDER) - {"slurmctld.service"})
    commands += [["systemctl", "try-restart", unit] for unit in ordered]
    return commands


def controller_needs_reconfigure(changed: Iterable[str]) -> bool:
    """Whether slurmctld must re-read its files (and push them to every slurmd)."""
    return any(p.startswith("/etc/slurm/") and p != "/etc/slurm/slurmdbd.conf" for p in changed)
