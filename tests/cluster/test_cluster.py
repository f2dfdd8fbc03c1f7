"""The proof: the role images boot into a working Slurm cluster (issue "Proof").

Builds the controller, time server and compute images of a 4-node lab with the real pipeline
from the served stand-in, boots them as namespaced nodes (the one compute image serves both
compute nodes, each naming itself through node.txt), starts what their units would start, and
checks munge, Slurm (configless: only the controller has slurm.conf), time, names and addresses.
Breaking one baked item must fail with a message naming it. The only departures from a real boot
are listed in overrides.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from builder.build import copy_sparse
from builder.image import open_image
from tests.cluster import checks
from tests.cluster.conftest import Lab, build_role_images, cluster_yaml, write_cluster
from tests.cluster.harness import Cluster, boot_cluster, start_services
from tests.reports import report

pytestmark = [pytest.mark.slow, pytest.mark.root]


def boot_and_check(lab: Lab, scratch: Path, replace: dict[str, Path] | None = None) -> tuple[list[str], str]:
    """Boot the lab, start its services, run every check; return (problems, summary)."""
    started = time.monotonic()
    with boot_cluster(lab.specs(replace), scratch) as cluster:
        for node in cluster.nodes:
            start_services(node)
        inv = lab.inventory
        problems = checks.check_identity(cluster, inv) + checks.check_hosts(cluster, inv)
        problems += checks.check_munge(cluster, inv)
        slurm_problems, srun = checks.check_slurm(cluster, inv)
        problems += slurm_problems + checks.check_time(cluster, inv)
        if not slurm_problems:
            problems += checks.check_configless(cluster, inv)
        mpi = ""
        if not slurm_problems:
            mpi_problems, mpi = checks.check_mpi(cluster, inv, user="hpc")
            problems += mpi_problems
        problems += checks.check_monitoring(cluster, inv, server=inv.time_server)
        summary = _summary(cluster, lab, srun, time.monotonic() - started, mpi)
    return problems, summary


def _summary(cluster: Cluster, lab: Lab, srun: str, seconds: float, mpi: str = "") -> str:
    inv = lab.inventory
    lines = [f"{'node':8} {'role':11} {'address':13} running"]
    for node in cluster.nodes:
        lines.append(f"{node.name:8} {node.spec.role:11} {inv.addresses[node.name]:13} "
                     f"{' '.join(checks.running(node))}")
    lines.append("srun -N2 hostname: " + " ".join(sorted(srun.split())))
    lines += [f"srun -N2 --mpi=pmix: {line}" for line in sorted(mpi.splitlines())]
    lines.append(f"cluster up and checked in {seconds:.0f}s")
    return "\n".join(lines)


def test_images_boot_into_a_working_cluster(testlab: Lab, tmp_path: Path) -> None:
    problems, summary = boot_and_check(testlab, tmp_path)
    report("cluster test report", summary)
    assert not problems, "\n".join(problems)


def _copy(image: Path, dest: Path) -> Path:
    copy_sparse(image, dest)
    return dest


def _edit(image: Path, path: str, change) -> None:  # type: ignore[no-untyped-def]
    with open_image(image) as img:
        img.write_file(path, change(img.read_file(path).decode()).encode(), mode=0o644)


def broken_munge_key(lab: Lab, folder: Path) -> dict[str, Path]:
    """node02 boots a compute image built with another cluster's secrets (so another munge key)."""
    other = write_cluster(folder / "other", cluster_yaml(lab.base_image, folder / "other-secrets"))
    return {"node02": build_role_images(other, folder / "other-out", ("compute",))["compute"]}


def broken_controller_address(lab: Lab, folder: Path) -> dict[str, Path]:
    """node02's slurmd asks an address where no controller runs for its configuration (configless)."""
    image = _copy(lab.images["compute"], folder / "compute-wrong-controller.img")
    _edit(image, "/etc/default/slurmd", lambda t: t.replace("--conf-server head:6817", "--conf-server 10.77.0.99:6817"))
    return {"node02": image}


def broken_hosts_entry(lab: Lab, folder: Path) -> dict[str, Path]:
    """node02's image has no /etc/hosts line for gps."""
    image = _copy(lab.images["compute"], folder / "compute-no-gps-host.img")
    _edit(image, "/etc/hosts", lambda t: "".join(line for line in t.splitlines(keepends=True)
                                                 if not line.startswith("10.77.0.20")))
    return {"node02": image}


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (broken_munge_key, "does not decode on node02"),
        (broken_controller_address, "node02's slurmd fetches its configuration from 10.77.0.99, but the controller"),
        (broken_hosts_entry, "node02: /etc/hosts has no entry for gps"),
    ],
    ids=["munge-key", "controller-address", "hosts-entry"],
)
def test_a_broken_baked_item_fails_with_its_name(testlab: Lab, tmp_path: Path, breakage, expected: str) -> None:  # type: ignore[no-untyped-def]
    replace = breakage(testlab, tmp_path)
    problems, _ = boot_and_check(testlab, tmp_path / "boot", replace)
    assert any(expected in p for p in problems), "\n".join(problems) or "no problem found"
