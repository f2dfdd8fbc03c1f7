"""Proof by a real boot (issue 10): the role images start under their own systemd as PID 1.

The controller, time server and one compute image booted twice (node01 named by node.txt,
node02 found by its MAC address) run as QEMU VMs on a private LAN, from copies of release-like
images (`--no-secrets`, munge.key on the boot partition). Everything is read from inside the
guests over SSH as the cluster user. The machine around the images differs from a Pi only as
`departures.py` lists: no Slurm cgroup override, no chronyd -x, no daemon started by hand.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.boot import checks, usable
from tests.boot.booted_lab import BOOT_TIMEOUT, Booted
from tests.boot.conftest import BY_MAC_ONLY, SERVICES, BootLab
from tests.boot.machines import Machine
from tests.reports import report

pytestmark = [pytest.mark.slow, pytest.mark.root]

POWER_OFF_TIMEOUT = 180
SHORT_PRESS_GRACE = 12     # seconds after the hold time in which a short press must not have powered the VM off


def with_consoles(problems: list[str], machines: dict[str, Machine]) -> str:
    """The problems, then the console tail of every node they name."""
    named = [m for name, m in machines.items() if any(p.startswith(name) or f" {name}" in p for p in problems)]
    return "\n".join([*problems, *(m.console_tail() for m in named)])


def node_report(m: Machine, state: str) -> str:
    if state in ("unreachable", "powered off"):
        return f"{m.name:7} {m.spec.role:10} {m.spec.ip:12} {state}"
    timing = m.ssh(["systemd-analyze", "time"]).stdout
    total = re.search(r"=\s*(.+?)\s*$", timing.splitlines()[0]) if timing else None
    failed = len(m.ssh(["systemctl", "--failed", "--plain", "--no-legend"]).stdout.splitlines())
    wanted = SERVICES[m.spec.role]
    active = m.ssh(["systemctl", "is-active", *wanted]).stdout.split()
    running = [s.removesuffix(".service") for s, a in zip(wanted, active, strict=False) if a == "active"]
    return (f"{m.name:7} {m.spec.role:10} {m.spec.ip:12} {state:8} systemd {total.group(1) if total else '?':>8} "
            f"answered after {m.boot_seconds[0]:.0f}s  failed units {failed}  active: {' '.join(running)}")


def test_the_images_boot_into_a_working_cluster(booted: Booted, bootlab: BootLab) -> None:
    machines, inv = booted.machines, bootlab.inventory
    started = time.monotonic()
    problems = [p for name, m in machines.items()
                for p in checks.check_system(m, booted.states[name], SERVICES[m.spec.role])]
    lines = [f"{'node':7} {'role':10} {'address':12} state", *(node_report(m, booted.states[n])
                                                               for n, m in machines.items())]
    lost = [m for name, m in machines.items() if booted.states[name] in ("unreachable", "powered off")]
    if lost:
        checks.power_off(lost)
        problems += [p for m in lost for p in checks.journal_problems(m, booted.folder)]
        report("boot test report", "\n".join(lines))
        pytest.fail(with_consoles(problems, machines), pytrace=False)
    problems += checks.check_first_boot(list(machines.values()))
    for m in machines.values():
        found_by = f"MAC {m.spec.mac}" if m.name == BY_MAC_ONLY else "named in /boot/firmware/node.txt"
        problems += checks.check_cloud_init(m) + checks.check_identity(m, inv, found_by)
        problems += checks.check_network_manager(m)
    problems += checks.check_munge(machines, inv)
    problems += checks.check_time(machines, inv)
    slurm_problems, srun = checks.check_slurm(machines, inv, bootlab.slurmd_nodes)
    problems += slurm_problems
    if not slurm_problems:
        problems += checks.check_memory_limit(machines, inv)
    lines.append("srun -N2 hostname: " + " ".join(sorted(srun.split())))
    lines.append(f"4 VMs booted in {booted.seconds:.0f}s; checks took {time.monotonic() - started:.0f}s")
    report("boot test report", "\n".join(lines))
    assert not problems, with_consoles(problems, machines)


def test_people_can_compute_on_it(booted: Booted, bootlab: BootLab) -> None:
    """Issue 15: $HOME shared over NFS, MPI across nodes, SSH between nodes, every exporter up."""
    machines, inv = booted.machines, bootlab.inventory
    if any(state in ("unreachable", "powered off") for state in booted.states.values()):
        pytest.skip("a node did not boot (see the test before)")
    started = time.monotonic()
    problems = usable.check_shared_home(machines, inv)
    mpi_problems, mpi = usable.check_mpi(machines, inv)
    problems += mpi_problems + usable.check_ssh_between_nodes(machines, inv)
    problems += usable.check_monitoring(machines, inv, server=inv.time_server)
    report("boot test report", "\n".join([*(f"srun -N2 --mpi=pmix: {line}" for line in sorted(mpi.splitlines())),
                              f"shared home, MPI, SSH and monitoring checked in {time.monotonic() - started:.0f}s"]))
    assert not problems, with_consoles(problems, machines)


def test_the_power_button_held_takes_a_node_out_of_slurm_and_back(booted: Booted, bootlab: BootLab) -> None:
    """The power key on node02 (KEY_POWER through a GPIO key, as gpio-shutdown raises it): a press shorter
    than the cluster file's hold time does nothing; held, it tells slurmctld, its job is requeued, it halts
    cleanly; booted again from its disk it returns to service by itself."""
    inv = bootlab.inventory
    head, node = booted.machines[inv.controller], booted.machines[inv.compute[-1]]
    if booted.states[node.name] != "running" or booted.states[head.name] != "running":
        pytest.skip(f"{node.name} or {head.name} did not boot (see the test before)")
    assert checks.wait_for(lambda: checks.slurm_nodes(head).get(node.name, ("",))[0] == "idle", 240), \
        f"{node.name} is not idle before the button: {checks.slurm_nodes(head).get(node.name)}"
    job = head.ssh(["sbatch", "--parsable", "-w", node.name, "--requeue", "--output=/dev/null",
                    "--wrap", "sleep 1800"], check=True).stdout.strip()
    fields = checks.wait_job(head, job, ("RUNNING",), timeout=120)
    assert fields.get("JobState") == "RUNNING", f"job {job} on {node.name} did not start: {fields}"

    hold = bootlab.cluster.power_button_hold_ms / 1000
    assert node.spec.button_hold_ms == bootlab.cluster.power_button_hold_ms, "the VM's key is not debounced"
    node.press_power_key()          # 100 ms: a brush against the button
    brushed = node.wait_exit(hold + SHORT_PRESS_GRACE)
    assert brushed is None, \
        f"{node.name}: powered off by a 0.1 s press; it must be held {hold:g} s\n{node.console_tail()}"
    logind = node.ssh(["journalctl", "-b", "--no-pager", "-o", "cat", "-u", "systemd-logind"]).stdout
    assert "Power key pressed" not in logind, f"{node.name}: a 0.1 s press reached logind: {logind[-500:]}"
    assert checks.job_state(head, job).get("JobState") == "RUNNING", f"job {job} did not survive a short press"

    pressed = time.monotonic()
    held = node.hold_power_key()
    status = node.wait_exit(POWER_OFF_TIMEOUT)
    off_seconds = time.monotonic() - pressed
    console = node.console_text()
    assert status is not None, (f"{node.name}: still running {POWER_OFF_TIMEOUT}s after the power key\n"
                                + node.console_tail())
    assert status == 0 and "reboot: Power down" in console, \
        f"{node.name}: QEMU ended with {status}, no clean power-down\n{node.console_tail()}"
    assert "emergency" not in console.lower(), f"{node.name}: emergency mode on the way down\n{node.console_tail()}"
    state, reason = checks.slurm_nodes(head).get(node.name, ("missing", ""))
    assert re.match(r"(down|drained)", state) and reason.startswith("power button"), \
        f"{node.name}: after the power button slurmctld shows it {state} ({reason!r}), not down for the button"
    fields = checks.job_state(head, job)
    assert fields.get("JobState") == "PENDING" and fields.get("Restarts") == "1", \
        f"job {job} was not requeued by {node.name}'s clusterbake-slurm-power.service: {fields}"

    rebooted = time.monotonic()
    node.boot()
    state_after = checks.wait_booted(node, rebooted + BOOT_TIMEOUT)
    assert state_after == "running", "\n".join([*checks.check_system(node, state_after), node.console_tail()])
    back = checks.wait_for(lambda: checks.slurm_nodes(head).get(node.name, ("",))[0] in ("idle", "mixed",
                                                                                         "allocated"), 240)
    state, reason = checks.slurm_nodes(head).get(node.name, ("missing", ""))
    back_seconds = time.monotonic() - rebooted
    last_boot = node.ssh(["journalctl", "-b", "-1", "--no-pager", "-o", "cat", "-u", "systemd-logind",
                          "-u", "clusterbake-slurm-power"]).stdout
    head.ssh(["scancel", job])
    report("boot test report", f"power button on {node.name}: a 0.1 s press left it running; held {held:g} s: "
                   f"off after {off_seconds:.0f}s (QEMU exit {status}), "
                   f"back in Slurm ({state}) {back_seconds:.0f}s after booting again\n"
                   + "\n".join(f"  {node.name} previous boot: {line}" for line in last_boot.splitlines()
                               if re.search(r"[Pp]ower key|slurmctld|requeued", line)))
    assert back, f"{node.name}: booted again but slurmctld still shows it {state} ({reason!r})"
    if len(node.ssh(["journalctl", "--list-boots", "--no-legend"]).stdout.splitlines()) >= 2:
        assert "Power key pressed" in last_boot, \
            f"{node.name}: logind's journal of the previous boot does not show the power key: {last_boot[-500:]}"
