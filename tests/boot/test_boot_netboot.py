"""Diskless compute nodes in the booted lab (issue 26): two VMs with no disk boot from the file server.

On the lab `test_boot.py` booted (after day two), a copy of the lab's cluster file gains node04 and
node05 with `boot: network`, each with a serial and a MAC. From inside the LAN, where a person at the
lab's switch works:
1. `clusterbake apply --yes`: the controller learns the two nodes; the file server (gps), whose image
   already carries dnsmasq-base, gets the diskless nodes' dnsmasq (DHCP for exactly those MACs, TFTP),
   the exports and the served folders, and starts the dnsmasq unit;
2. `clusterbake netboot --push`: the served tree from the compute role image, onto gps over SSH;
3. the test fetches each node's boot files from gps's TFTP (tftp-hpa) by the folder its serial names,
   as the bootloader does: config.txt, cmdline.txt, and the VM's kernel and initramfs, put beside the
   Pi's kernels (departures 7: a Pi's kernel does not boot on QEMU's `virt` machine);
4. node04 and node05 boot with no disk: their address by DHCP from gps's dnsmasq, their root over NFS,
   shared and read-only, under a RAM overlay; each reaches `running` with no failed unit, is idle in
   Slurm, and a job runs on both;
5. node04 reboots and keeps its SSH host keys, machine-id and slurmd spool (its state folder on gps).
node01 and node02 are stopped first (the lab's two cores do not boot two more VMs beside four).

This module's name sorts after `test_boot_day_two.py` and before `test_broken_boot.py`, which needs the
cores to itself (the lab is stopped before it, `booted_lab.py`).
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from builder.build import overlays_dir
from builder.config import Cluster
from builder.config.model import Node
from builder.config.netboot import network_booted, tftp_folder
from tests.boot import checks, departures
from tests.boot.booted_lab import BOOT_TIMEOUT, Booted
from tests.boot.conftest import SERVICES, SLURM_NODE, USER, VM_MEMORY_MIB, BootLab
from tests.boot.machines import SSH_OPTIONS, Lan, Machine, MachineSpec, machines_running
from tests.boot.test_boot_day_two import BOOT_ID, Clusterbake, expect
from tests.cluster.checks import wait_for
from tests.cluster.conftest import write_cluster
from tests.reports import report

pytestmark = [pytest.mark.slow, pytest.mark.root]

DISKLESS = (
    {"name": "node04", "role": "compute", "ip": "10.78.0.104", "mac": "52:54:00:78:01:04",
     "serial": "10000000c1b5a004", "boot": "network", **SLURM_NODE},
    {"name": "node05", "role": "compute", "ip": "10.78.0.105", "mac": "52:54:00:78:01:05",
     "serial": "10000000c1b5a005", "boot": "network", **SLURM_NODE},
)
STOPPED = ("node01", "node02")
FILE_SERVER_UNIT = "clusterbake-netboot-dnsmasq.service"
VM_KERNEL, VM_INITRD = "vmlinuz-virt", "initrd-virt.img"     # departures 7: beside kernel_2712.img
LOWER = "/var/lib/clusterbake/netboot/lower"                  # where netboot-init leaves the NFS root
STATE = "/var/lib/clusterbake/state"
WAITING = "waiting for this node's state folder"             # netboot-init, while the file server does not give it
KEPT = {
    "host key": ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"],
    "machine-id": ["cat", "/etc/machine-id"],
    "slurmd spool": ["sudo", "-n", "ls", "-1", "/var/lib/slurm/slurmd"],
}


def diskless_cluster(lab: BootLab, folder: Path) -> Cluster:
    """The lab's cluster file with node04 and node05 booting from the network; its secrets folder holds the
    lab's munge key, which the shared root carries (exported to those two addresses only)."""
    data = yaml.safe_load(lab.cluster.source.read_text())
    data["nodes"] += [dict(n) for n in DISKLESS]
    secrets = folder / "secrets"
    secrets.mkdir(mode=0o700, parents=True)
    (secrets / "munge.key").write_bytes(lab.munge_key)
    (secrets / "munge.key").chmod(0o600)
    data["secrets_dir"] = str(secrets)
    return write_cluster(folder, data)


def tftp_get(lan: Lan, server: str, remote: str, dest: Path) -> Path:
    """One file from the server's TFTP, as the bootloader asks for it (`<folder>/<name>`)."""
    proc = subprocess.run(lan.command(["tftp", "-m", "binary", server, "-c", "get", remote, str(dest)]),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0 and dest.is_file() and dest.stat().st_size > 0, \
        f"tftp get {remote} from {server}: exit {proc.returncode} {proc.stdout.strip()} {proc.stderr.strip()}"
    return dest


def put_vm_kernel(lab: BootLab, gps: Machine, folders: list[str]) -> None:
    """Departures 7: the VM's kernel and initramfs copied into each node's TFTP folder on the file server."""
    for path in (lab.kernel.vmlinuz, lab.kernel.initrd):
        subprocess.run(gps.lan.command(["scp", "-q", "-i", str(lab.key), *SSH_OPTIONS, str(path),
                                        f"{USER}@{gps.spec.ip}:/tmp/{path.name}"]),
                       check=True, capture_output=True, timeout=300)
    for folder in folders:
        for path, name in ((lab.kernel.vmlinuz, VM_KERNEL), (lab.kernel.initrd, VM_INITRD)):
            gps.ssh(["sudo", "-n", "install", "-m", "0644", f"/tmp/{path.name}", f"/srv/netboot/{folder}/{name}"],
                    check=True)


def diskless_machine(lab: BootLab, node: Node, gps: Machine, folder: Path) -> Machine:
    """A VM with no disk, booted from what the file server's TFTP serves the node's folder."""
    fetched = folder / node.name / "tftp"
    fetched.mkdir(parents=True)
    boot = tftp_folder(node)
    got = {name: tftp_get(gps.lan, gps.spec.ip, f"{boot}/{name}", fetched / name)
           for name in ("config.txt", "cmdline.txt", VM_KERNEL, VM_INITRD)}
    cmdline = got["cmdline.txt"].read_text()
    spec = MachineSpec(name=node.name, role=node.role, ip=str(node.ip), mac=str(node.mac), disk=None,
                       cmdline=departures.kernel_cmdline(cmdline), memory_mib=VM_MEMORY_MIB["compute"],
                       button_hold_ms=departures.button_hold_ms(got["config.txt"].read_text()))
    return Machine(spec=spec, lan=gps.lan, kernel=got[VM_KERNEL], initrd=got[VM_INITRD], folder=folder / node.name,
                   key=lab.key, user=USER)


def enabled(machine: Machine, root: str = "/") -> set[str]:
    """The unit files the node's own systemctl lists as enabled in `root` (its running root by default), read
    from the files (`--root`): asked over D-Bus, the busy emulated node's PID 1 timed out (2026-12-05)."""
    argv = ["sudo", "-n", "systemctl", f"--root={root}", "list-unit-files", "--state=enabled", "--no-legend", "--plain"]
    listed = machine.ssh(argv, timeout=300)
    assert listed.returncode == 0 and listed.stdout.strip(), f"{machine.name}: {' '.join(argv)}: {listed.stderr}"
    return {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}


def kept(machine: Machine) -> dict[str, str]:
    return {what: machine.ssh(argv).stdout.strip() for what, argv in KEPT.items()}


def test_diskless_nodes_boot_from_the_file_server(booted: Booted, bootlab: BootLab, tmp_path: Path) -> None:
    machines = booted.machines
    if any(state != "running" for state in booted.states.values()):
        pytest.skip("a node did not boot (see test_boot.py)")
    assert bootlab.cluster.fileserver is not None
    head, gps = machines[bootlab.cluster.slurm_controller], machines[bootlab.cluster.fileserver.node]
    lan = head.lan
    started = time.monotonic()
    problems: list[str] = []
    log: list[str] = []
    times: list[str] = []
    cluster = diskless_cluster(bootlab, tmp_path / "cluster")
    clusterbake = Clusterbake(lan, bootlab.key, departures.overlays_without_refclocks(
        overlays_dir(), tmp_path / "overlays"), log)

    applied = clusterbake("apply", cluster, "--yes")
    times.append(f"apply (node04 and node05 into the cluster file) {log[-1].splitlines()[0].rsplit('->', 1)[-1]}")
    # node04 and node05 are not up yet: named as unreachable, every other node changed.
    behind = [line for line in applied.stdout.splitlines() if line.startswith("not up to date: ")]
    assert applied.returncode == 1 and len(behind) == len(DISKLESS) and all(
        f"not up to date: {n['name']} ({n['ip']}): unreachable" in applied.stdout for n in DISKLESS), "\n".join(log)
    served = gps.ssh(["systemctl", "is-active", FILE_SERVER_UNIT]).stdout.strip()
    expect(problems, served == "active", f"{gps.name}: {FILE_SERVER_UNIT} is {served!r} after apply, not active")
    for name in STOPPED:
        machines[name].kill()      # their cores for the diskless nodes; slurmctld will see them down

    pushed = clusterbake("netboot", cluster, "--offline", "--push", "--out", str(tmp_path / "out"))
    times.append(f"netboot --push (compute image, served tree, push) {log[-1].splitlines()[0].rsplit('->', 1)[-1]}")
    assert pushed.returncode == 0, "\n".join(log)
    shutil.rmtree(tmp_path / "out")       # the tree is on gps now: the disk space back
    nodes = network_booted(cluster)
    put_vm_kernel(bootlab, gps, [tftp_folder(n) for n in nodes])
    diskless = [diskless_machine(bootlab, node, gps, tmp_path / "vms") for node in nodes]

    with machines_running(diskless):
        for m in diskless:
            m.boot()
        states = {m.name: checks.wait_booted(m, m.started + BOOT_TIMEOUT) for m in diskless}
        times += [f"{m.name} diskless: answered {m.boot_seconds[-1]:.0f}s after starting" if m.boot_seconds
                  else f"{m.name}: never answered" for m in diskless]
        inventory = dataclasses.replace(bootlab, cluster=cluster).inventory
        for m in diskless:
            problems += checks.check_system(m, states[m.name], SERVICES["compute"])
        if any(state != "running" for state in states.values()):
            pytest.fail("\n".join([*problems, *(m.console_tail(60) for m in diskless), *log]), pytrace=False)
        for m in diskless:
            problems += checks.check_identity(m, inventory, f"MAC {m.spec.mac}")
            disks = m.ssh(["ls", "/sys/block"]).stdout.split()
            expect(problems, not [d for d in disks if d.startswith(("vd", "sd", "mmcblk"))],
                   f"{m.name}: has block devices {disks}, not diskless")
            root = m.ssh(["findmnt", "-n", "-o", "FSTYPE", "/"]).stdout.strip()
            lower = m.ssh(["findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", LOWER]).stdout.split()
            options = lower[2].split(",") if len(lower) == 3 else []
            expect(problems, root == "overlay" and lower[1:2] == ["nfs"] and {"ro", "vers=3"} <= set(options)
                   and lower[0].startswith(f"{gps.spec.ip}:/srv/netroot/compute/"),
                   f"{m.name}: / is {root!r} over {lower}, not a RAM overlay on the read-only NFSv3 root")
            state = m.ssh(["findmnt", "-n", "-o", "SOURCE", STATE]).stdout.strip()
            expect(problems, state == f"{gps.spec.ip}:/srv/netstate/{m.name}",
                   f"{m.name}: its state folder is {state!r}")
        roots = {m.ssh(["findmnt", "-n", "-o", "SOURCE", LOWER]).stdout.strip() for m in diskless}
        expect(problems, len(roots) == 1, f"node04 and node05 do not share one root: {roots}")
        problems += checks.check_first_boot(diskless)
        for m in diskless:
            # Nothing enabled beyond what the served root enables: a first boot on the writable overlay
            # would apply every preset (the first VM boots got chronyd-restricted and ssh.socket that way).
            grown = enabled(m) - enabled(m, root=LOWER)
            expect(problems, not grown, f"{m.name}: enabled at boot beyond the served root: {sorted(grown)}")
        leases = gps.ssh(["sudo", "-n", "journalctl", "-u", FILE_SERVER_UNIT, "-o", "cat", "--no-pager"]).stdout
        for node in DISKLESS:
            expect(problems, f"DHCPACK(eth0) {node['ip']} {node['mac']} {node['name']}" in leases,
                   f"{gps.name}: dnsmasq's journal has no DHCPACK for {node['name']}: {leases.strip()[-600:]}")
        running = [head.name, gps.name, *(m.name for m in diskless)]      # node01 and node02 are off
        again_applied = clusterbake("apply", cluster, "--yes", *(arg for n in running for arg in ("--node", n)))
        times.append(f"apply with the diskless nodes up {log[-1].splitlines()[0].rsplit('->', 1)[-1]}")
        # It reaches the diskless nodes like any other (its changes there last until their next boot).
        expect(problems, again_applied.returncode == 0 and "not up to date" not in again_applied.stdout,
               lambda: f"apply with node04 and node05 up did not bring them up to date: {log[-1]}")
        names = [m.name for m in diskless]
        idle = wait_for(lambda: all(checks.slurm_nodes(head).get(n, ("",))[0] == "idle" for n in names), 300,
                        interval=5)
        expect(problems, idle, lambda: f"{head.name}: sinfo shows {checks.slurm_nodes(head)}, node04/node05 not idle")
        srun = head.ssh(["srun", "-N2", "-w", ",".join(names), "hostname"], timeout=300)
        expect(problems, srun.returncode == 0 and sorted(srun.stdout.split()) == names,
               f"{head.name}: srun -N2 -w {','.join(names)} hostname gave exit {srun.returncode}, "
               f"{srun.stdout.split()} {srun.stderr.strip()[-300:]}")

        # A reboot keeps what the node made: host keys, machine-id, slurmd's spool (its state folder).
        node04 = diskless[0]
        before, boot_before = kept(node04), node04.ssh(BOOT_ID).stdout.strip()
        in_state = gps.ssh(["sudo", "-n", "ls", "-1", f"/srv/netstate/{node04.name}/ssh"]).stdout.split()
        expect(problems, "ssh_host_ed25519_key" in in_state,
               f"{gps.name}: /srv/netstate/{node04.name}/ssh holds {in_state}, not node04's host keys")
        # ... and waits for its state folder when the file server does not give it: never half-configured.
        state_export = f"{node04.spec.ip}:/srv/netstate/{node04.name}"
        gps.ssh(["sudo", "-n", "exportfs", "-u", state_export], check=True)
        console_before = len(node04.console_text())
        rebooted = time.monotonic()
        node04.ssh(["sudo", "-n", "systemctl", "reboot"], tries=1)
        waiting = wait_for(lambda: WAITING in node04.console_text()[console_before:], 900, interval=5)
        expect(problems, waiting, f"node04: no '{WAITING}' on its console with its state folder not exported")
        if waiting:
            time.sleep(5)
            up = node04.ssh(BOOT_ID, tries=1, timeout=20)
            expect(problems, up.returncode == 255, f"node04: answered SSH without its state folder: {up.stdout!r}")
        gps.ssh(["sudo", "-n", "exportfs", "-r"], check=True)
        times.append(f"node04 waited for its state folder {time.monotonic() - rebooted:.0f}s after the reboot")
        wait_for(lambda: node04.ssh(BOOT_ID, tries=1, timeout=20).stdout.strip() not in ("", boot_before), 900,
                 interval=10)
        again = checks.wait_booted(node04, rebooted + BOOT_TIMEOUT)
        times.append(f"node04 rebooted: answered {time.monotonic() - rebooted:.0f}s after the reboot")
        problems += checks.check_system(node04, again, SERVICES["compute"])
        after = kept(node04)
        expect(problems, node04.ssh(BOOT_ID).stdout.strip() != boot_before, "node04: the reboot did not happen")
        expect(problems, after == before, f"node04: kept across the reboot {before}, after it {after}")
        idle = wait_for(lambda: checks.slurm_nodes(head).get(node04.name, ("",))[0] == "idle", 300, interval=5)
        expect(problems, idle, lambda: f"{head.name}: after its reboot node04 is {checks.slurm_nodes(head)}")
        job = head.ssh(["srun", "-w", node04.name, "cat", "/etc/hostname"], timeout=300)
        expect(problems, job.stdout.strip() == node04.name, f"node04: a job after the reboot said {job.stdout!r}")
        times.append(f"diskless nodes in all {time.monotonic() - started:.0f}s")

    report("boot test report", "\n".join([
        "diskless nodes (issue 26): node04 and node05 with no disk, from gps's DHCP, TFTP and NFS",
        *(f"  {line}" for line in times),
        *(f"  {line}" for entry in log for line in entry.splitlines()[:1]),
        f"  srun -N2: {' '.join(sorted(srun.stdout.split()))}; node04 kept {', '.join(KEPT)} across its reboot"]))
    assert not problems, "\n".join([*problems, *log])
