"""Issue 15 in booted VMs: shared $HOME across nodes, MPI through Slurm's PMIx, SSH between
nodes as the cluster user, and Prometheus seeing every node's exporter."""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from tests.boot.machines import Machine
from tests.cluster.checks import Inventory, mpi_hello_problem, mpi_hello_srun, prometheus_targets_up


def check_shared_home(machines: Mapping[str, Machine], inv: Inventory) -> list[str]:
    """A job on one compute node writes into $HOME; a job on the other reads it back."""
    head = machines[inv.controller]
    first, second = sorted(inv.compute)
    name, token = f"shared-{secrets.token_hex(4)}", secrets.token_hex(8)
    wrote = head.ssh(["srun", "-w", first, "sh", "-c", f'echo {token} > "$HOME/{name}" && hostname'], timeout=180)
    read = head.ssh(["srun", "-w", second, "sh", "-c", f'cat "$HOME/{name}" && hostname'], timeout=180)
    if wrote.returncode != 0 or read.returncode != 0 or read.stdout.split() != [token, second]:
        return [f"{second}: the file a job wrote in $HOME on {first} did not reach it over NFS: "
                f"write exit {wrote.returncode} ({wrote.stderr.strip()[-200:]}), read exit {read.returncode}, "
                f"printed {read.stdout.split()} ({read.stderr.strip()[-200:]})"]
    return []


def check_mpi(machines: Mapping[str, Machine], inv: Inventory) -> tuple[list[str], str]:
    """`srun -N2 --mpi=pmix` runs the MPI hello world with one rank on each compute node."""
    want = sorted(inv.compute)
    srun = machines[inv.controller].ssh(mpi_hello_srun(want), timeout=300)
    problem = mpi_hello_problem(srun.returncode, srun.stdout, srun.stderr, want)
    return ([f"{inv.controller}: {problem}"] if problem else []), srun.stdout


def check_ssh_between_nodes(machines: Mapping[str, Machine], inv: Inventory) -> list[str]:
    """The cluster user on one compute node runs a command on the other: no prompt, no flags."""
    first, second = sorted(inv.compute)
    hop = machines[first].ssh(["ssh", "-o", "BatchMode=yes", second, "hostname"], timeout=120)
    if hop.returncode != 0 or hop.stdout.strip() != second:
        return [f"{first}: ssh {second} hostname as the cluster user gave exit {hop.returncode}, "
                f"{hop.stdout.strip()!r} ({hop.stderr.strip()[-300:]})"]
    return []


def check_monitoring(machines: Mapping[str, Machine], inv: Inventory, server: str, timeout: float = 180) -> list[str]:
    """Prometheus on `server` reports every node's exporter up."""
    up, seen = prometheus_targets_up(lambda argv: machines[server].ssh(argv, timeout=60).stdout, inv, timeout)
    if up:
        return []
    return [f"{server}: prometheus.service reports {seen or 'nothing'}, expected every node up: "
            f"{sorted(inv.addresses)}"]
