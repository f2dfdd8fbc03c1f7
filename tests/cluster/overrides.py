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
