"""What a working cluster must show, each check failing with a message that says what is broken."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.cluster.harness import Cluster, Node

SLURM_WAIT = 120
CHRONY_WAIT = 90
PROMETHEUS_WAIT = 120
MPI_HELLO = ["python3", "-m", "mpi4py.bench", "helloworld"]


@dataclass(frozen=True)
class Inventory:
    """What the cluster file says, to compare the booted nodes with."""

    addresses: dict[str, str]        # node name -> ip
    roles: dict[str, str]
    controller: str
    time_server: str
    compute: tuple[str, ...]         # the nodes of role `compute`


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def check_identity(cluster: Cluster, inv: Inventory) -> list[str]:
    problems = []
    for node in cluster.nodes:
        hostname = node.run(["hostname"]).stdout.strip()
        if hostname != node.name:
            problems.append(f"{node.name}: hostname is {hostname!r}, the inventory says {node.name!r}")
        shown = node.run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
        if f"inet {inv.addresses[node.name]}/" not in shown:
            problems.append(f"{node.name}: eth0 has {shown.split()[3] if shown.split() else 'no address'}, "
                            f"the inventory says {inv.addresses[node.name]}")
    return problems


def check_hosts(cluster: Cluster, inv: Inventory) -> list[str]:
    """Every node resolves every node's name to its inventory address (through its /etc/hosts)."""
    problems = []
    for node in cluster.nodes:
        for name, ip in inv.addresses.items():
            got = node.run(["getent", "hosts", name], check=False).stdout.split()
            if not got:
                problems.append(f"{node.name}: /etc/hosts has no entry for {name} ({ip})")
            elif got[0] != ip:
                problems.append(f"{node.name}: /etc/hosts maps {name} to {got[0]}, the inventory says {ip}")
    return problems


def check_munge(cluster: Cluster, inv: Inventory) -> list[str]:
    """A credential made on the controller decodes on every other node, and the other way round."""
    problems = []
    head = cluster.node(inv.controller)
    for node in cluster.nodes:
        if node is head:
            continue
        for source, dest in ((head, node), (node, head)):
            cred = source.run(["munge", "-n"], check=False)
            if cred.returncode != 0:
                problems.append(f"munge: {source.name} cannot make a credential: {cred.stderr.strip()}")
                continue
            decoded = dest.run(["unmunge"], input=cred.stdout.encode(), check=False)
            if decoded.returncode != 0:
                reason = (decoded.stderr or decoded.stdout).strip().splitlines()[-1:]
                problems.append(f"munge: a credential made on {source.name} does not decode on {dest.name} "
                                f"({' '.join(reason)}): their munge keys differ")
    return problems


def node_states(head: Node) -> dict[str, str]:
    out = head.run(["sinfo", "-h", "-N", "-o", "%N %t"], check=False).stdout
    return dict(line.split() for line in out.splitlines() if len(line.split()) == 2)


def check_slurm(cluster: Cluster, inv: Inventory) -> tuple[list[str], str]:
    """Both compute nodes idle; `srun -N2` runs on both. Returns (problems, srun output)."""
    head = cluster.node(inv.controller)
    want = set(inv.compute)
    if not wait_for(lambda: all(node_states(head).get(n) == "idle" for n in want), SLURM_WAIT):
        states = node_states(head)
        problems = [f"slurm: {n} is {states.get(n, 'missing from sinfo')}, not idle" for n in sorted(want)
                    if states.get(n) != "idle"]
        return problems + _slurm_diagnosis(cluster, inv), ""
    srun = head.run(["srun", "-N2", "-w", ",".join(sorted(want)), "hostname"], check=False, timeout=180)
    names = set(srun.stdout.split())
    if srun.returncode != 0 or names != want:
        return [f"slurm: srun -N2 printed {sorted(names)} (exit {srun.returncode}, {srun.stderr.strip()[-300:]}), "
                f"expected {sorted(want)}", *_slurm_diagnosis(cluster, inv)], srun.stdout
    return [], srun.stdout


def check_configless(cluster: Cluster, inv: Inventory) -> list[str]:
    """Configless Slurm: only the controller carries slurm.conf; every slurmd fetched the controller's
    files into /run/slurm/conf, and the client commands on its node read them from there."""
    head = cluster.node(inv.controller)
    problems = []
    for node in cluster.nodes:
        if node is head:
            continue
        for name in ("slurm.conf", "cgroup.conf"):
            if node.file(f"/etc/slurm/{name}").exists():
                problems.append(f"configless: {node.name} carries /etc/slurm/{name}; only the controller should")
        if "slurmd.service" not in node.started:
            continue
        for name in ("slurm.conf", "cgroup.conf"):
            fetched = node.run(["cat", f"/run/slurm/conf/{name}"], check=False)
            if fetched.returncode != 0:
                problems.append(f"configless: {node.name}'s slurmd did not fetch {name} into /run/slurm/conf "
                                f"({fetched.stderr.strip()})")
            elif fetched.stdout != head.file(f"/etc/slurm/{name}").read_text():
                problems.append(f"configless: {node.name}'s /run/slurm/conf/{name} is not the controller's {name}")
        # With no /etc/slurm/slurm.conf, the client commands read slurmd's /run/slurm/conf/slurm.conf
        # (`scontrol show config` still prints the compiled-in SLURM_CONF path, so that line proves nothing).
        shown = node.run(["scontrol", "show", "config"], check=False)
        cluster_name = re.search(r"(?m)^ClusterName\s*=\s*(\S+)", shown.stdout)
        want = re.search(r"(?m)^ClusterName=(\S+)", head.file("/etc/slurm/slurm.conf").read_text())
        if shown.returncode != 0 or not cluster_name or not want or cluster_name.group(1) != want.group(1):
            problems.append(f"configless: scontrol on {node.name} does not read the fetched slurm.conf: "
                            f"{(shown.stderr or shown.stdout).strip()[-300:]}")
    return problems


def _conf_server_problem(node: Node, inv: Inventory) -> str | None:
    """A configless node: whether the controller its slurmd asks for the configuration is the real one."""
    defaults = node.file("/etc/default/slurmd")
    match = re.search(r"--conf-server[= ]([^:\s\"]+)", defaults.read_text()) if defaults.exists() else None
    if match is None:
        return f"slurm: {node.name} has neither /etc/slurm/slurm.conf nor a --conf-server in /etc/default/slurmd"
    host, head = match.group(1), inv.controller
    if host not in (head, inv.addresses[head]):
        return (f"slurm: {node.name}'s slurmd fetches its configuration from {host}, but the controller is "
                f"{head}({inv.addresses[head]})")
    return None


def _slurm_diagnosis(cluster: Cluster, inv: Inventory) -> list[str]:
    """Why nodes did not come up: compare each node's slurm.conf (or, configless, the server its slurmd
    asks for one) with where the controller really is."""
    problems = []
    for node in cluster.nodes:
        conf = node.file("/etc/slurm/slurm.conf")
        if not conf.exists():
            if "slurmd.service" in node.started:
                problem = _conf_server_problem(node, inv)
                problems += [problem] if problem else []
                _slurmd_log(node, problems)
            continue
        match = re.search(r"(?m)^SlurmctldHost=([^(\s]+)(?:\(([^)]+)\))?", conf.read_text())
        if not match:
            problems.append(f"slurm: {node.name}'s slurm.conf names no SlurmctldHost")
            continue
        host, addr = match.group(1), match.group(2)
        if host != inv.controller or (addr and addr != inv.addresses[inv.controller]):
            problems.append(f"slurm: {node.name}'s slurm.conf names the controller {host}({addr}), but the "
                            f"controller is {inv.controller}({inv.addresses[inv.controller]})")
        _slurmd_log(node, problems)
    return problems


def _slurmd_log(node: Node, problems: list[str]) -> None:
    log = node.logs / "slurmd.service.log"
    if log.exists() and log.read_text().strip():
        problems.append(f"slurm: {node.name} slurmd says: {log.read_text().strip().splitlines()[-1]}")


def check_time(cluster: Cluster, inv: Inventory) -> list[str]:
    """chronyc on a compute node sees the time server, reachable."""
    server_ip = inv.addresses[inv.time_server]
    node = cluster.node(inv.compute[0])

    def reachable() -> bool:
        for line in node.run(["chronyc", "-n", "sources"], check=False).stdout.splitlines():
            fields = line.split()
            if len(fields) > 4 and fields[1] == server_ip and fields[4] != "0":
                return True
        return False

    if wait_for(reachable, CHRONY_WAIT):
        return []
    shown = node.run(["chronyc", "-n", "sources"], check=False)
    return [f"time: chronyc on {node.name} does not reach the time server {server_ip}: "
            f"{(shown.stdout + shown.stderr).strip()}"]


def check_mpi(cluster: Cluster, inv: Inventory, user: str) -> tuple[list[str], str]:
    """A cluster user's `srun -N2 --mpi=pmix` MPI hello world has one rank on each compute node."""
    want = sorted(inv.compute)
    srun = cluster.node(inv.controller).run(mpi_hello_srun(want), user=user, check=False, timeout=300)
    problem = mpi_hello_problem(srun.returncode, srun.stdout, srun.stderr, want)
    return ([f"mpi: {problem}"] if problem else []), srun.stdout


def mpi_hello_srun(nodes: list[str]) -> list[str]:
    """The MPI hello world through Slurm's PMIx plugin, one rank on each of `nodes`."""
    return ["srun", f"-N{len(nodes)}", "--ntasks-per-node=1", "--mpi=pmix", "-w", ",".join(nodes), *MPI_HELLO]


def mpi_hello_problem(returncode: int, stdout: str, stderr: str, want: list[str]) -> str | None:
    """What is wrong with the hello world's ranks (mpi4py: "Hello, World! I am process 0 of 2 on node01."),
    or None when there is one rank on each of `want` (the namespace test and the VM test share this)."""
    ranks = re.findall(r"I am process (\d+) of (\d+) on (\S+?)\.", stdout)
    good = (sorted(h for _, _, h in ranks) == want and sorted(int(r) for r, _, _ in ranks) == list(range(len(want)))
            and {size for _, size, _ in ranks} == {str(len(want))})
    if returncode == 0 and good:
        return None
    return (f"srun --mpi=pmix hello world gave ranks {ranks} (exit {returncode}, "
            f"{(stderr or stdout).strip()[-400:]}), expected one of {len(want)} on each of {want}")


def check_monitoring(cluster: Cluster, inv: Inventory, server: str) -> list[str]:
    """Prometheus on `server` scrapes every node's exporter and finds it up."""
    node = cluster.node(server)
    up, seen = prometheus_targets_up(lambda argv: node.run(argv, check=False, timeout=60).stdout, inv, PROMETHEUS_WAIT)
    if up:
        return []
    return [f"monitoring: Prometheus on {server} reports {seen or 'nothing'}, expected every node up: "
            f"{sorted(inv.addresses)}"]


# Run on Prometheus's node: each active target's node label (or job) and its health, as JSON.
PROMETHEUS_TARGETS = ("import json, urllib.request; r = json.load(urllib.request.urlopen("
                      "'http://127.0.0.1:9090/api/v1/targets?state=active', timeout=10)); "
                      "print(json.dumps({t['labels'].get('node', t['labels']['job']): t['health'] "
                      "for t in r['data']['activeTargets']}))")


def prometheus_targets_up(ask: Callable[[list[str]], str], inv: Inventory,
                          timeout: float) -> tuple[bool, dict[str, str]]:
    """Whether Prometheus (asked by running `ask(argv)` on its node) finds every node's exporter up
    within `timeout`, and what it reported last (the namespace test and the VM test share this)."""
    seen: dict[str, str] = {}

    def all_up() -> bool:
        nonlocal seen
        try:
            seen = json.loads(ask(["python3", "-c", PROMETHEUS_TARGETS]))
        except ValueError:
            return False
        return all(seen.get(name) == "up" for name in inv.addresses)

    up = wait_for(all_up, timeout, interval=5)
    return up, seen


def running(node: Node) -> list[str]:
    """Names of the daemons running in the node: processes rooted in it, read from the host's /proc."""
    names = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "root") == str(node.root):
                names.add((entry / "comm").read_text().strip())
        except OSError:
            continue
    return sorted(names & {"munged", "slurmd", "slurmctld", "chronyd", "prometheus", "prometheus-node",
                           "mariadbd", "slurmdbd"})
