"""Every way the cluster test departs from what a real Pi would run — all of them, in one place.

The images are booted as they are; only these changes are made, in each node's writable
overlay (never in the image), because the test runs arm64 binaries under qemu-user inside
network namespaces on an x86 host:

1. Slurm without cgroups: `cgroup.conf` gets `CgroupPlugin=disabled`. Slurm then refuses any
   plugin that uses cgroups, so `slurm.conf` also gets `ProctrackType=proctrack/linuxproc`,
   `TaskPlugin=task/none` and `JobAcctGatherType=jobacct_gather/linux`. A namespace under
   qemu-user has no delegated cgroup v2 tree for slurmd; real Pis keep cgroup/v2.
2. chronyd with `-x`, so the host clock is never touched, and `-F 0`: qemu-user cannot load the
   arm64 seccomp filter that Debian's default `-F 1` asks for.
3. No GPS hardware: the time server's `refclock` lines are dropped and gpsd is not started, so it
   serves from its `local stratum` fallback.
4. No systemd to notify: slurmd and slurmctld run with `-D` (foreground) instead of `--systemd`,
   and NetworkManager's part — applying the node's keyfile — is done by the test with `ip`.
5. The door (`access:`): nftables.service's `nft -f /etc/nftables.conf` is run by this host's nft
   inside the door's network namespace, on the image's own ruleset file: qemu-user lets arm64
   programs open only NETLINK_ROUTE, NETLINK_KOBJECT_UEVENT and NETLINK_AUDIT sockets, so the
   image's nft cannot reach nf_tables (NETLINK_NETFILTER). The kernel's nftables are per namespace.
6. systemd-sysctl's part is done only for the `net.*` keys of clusterbake's own
   /etc/sysctl.d/60-clusterbake-*.conf files, which the kernel keeps per network namespace: any
   other key (kernel.*, vm.*) would change the host.
"""

from __future__ import annotations

import re
from pathlib import Path

CGROUP_CONF = "CgroupPlugin=disabled\n"
SLURM_CONF_CHANGES = {
    "ProctrackType": "proctrack/linuxproc",
    "TaskPlugin": "task/none",
    "JobAcctGatherType": "jobacct_gather/linux",
}
CHRONYD_EXTRA_ARGS = ["-x", "-F", "0"]
NOT_STARTED = {"gpsd.service", "gpsd.socket"}
HOST_NFT = "/usr/sbin/nft"
NAMESPACED_SYSCTL = "net."


def apply_file_overrides(root: Path) -> None:
    """Rewrite the node's slurm and chrony configuration in its overlay (root is the merged tree)."""
    slurm = root / "etc/slurm"
    if (slurm / "slurm.conf").exists():
        text = (slurm / "slurm.conf").read_text()
        for key, value in SLURM_CONF_CHANGES.items():
            text, count = re.subn(rf"(?im)^{key}=.*$", f"{key}={value}", text)
            if count == 0:
                text += f"{key}={value}\n"
        (slurm / "slurm.conf").write_text(text)
        (slurm / "cgroup.conf").write_text(CGROUP_CONF)
    chrony = root / "etc/chrony/chrony.conf"
    if chrony.exists():
        lines = chrony.read_text().splitlines(keepends=True)
        chrony.write_text("".join(line for line in lines if not line.lstrip().startswith("refclock")))


def daemon_argv(unit: str, argv: list[str]) -> list[str]:
    """The command line of a daemon as the test starts it (see items 2 and 4 above)."""
    if unit == "chrony.service":
        cleaned: list[str] = []
        skip = False
        for word in argv:
            if skip:
                skip = False
                continue
            if word == "-F":
                skip = True
                continue
            if re.fullmatch(r"-F\d+", word):
                continue
            cleaned.append(word)
        return [*cleaned, *CHRONYD_EXTRA_ARGS]
    if unit in ("slurmd.service", "slurmctld.service"):
        return ["-D" if word == "--systemd" else word for word in argv]
    return argv


def nft_argv(argv: list[str], root: Path) -> list[str]:
    """nftables.service's command line for this host's nft (item 5): the image's nft, files under root."""
    if not argv or Path(argv[0]).name != "nft":
        raise AssertionError(f"nftables.service runs {argv}, not nft")
    return [HOST_NFT, *(str(root / word.lstrip("/")) if word.startswith("/etc/") else word for word in argv[1:])]


def namespaced_sysctls(text: str) -> list[str]:
    """`key=value` lines of a sysctl.d file (item 6), refusing any key the network namespace does not hold."""
    settings = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, _, value = (part.strip() for part in line.partition("="))
        if not key.startswith(NAMESPACED_SYSCTL):
            raise AssertionError(f"sysctl {key} is not per network namespace: setting it would change the host")
        settings.append(f"{key}={value}")
    return settings
