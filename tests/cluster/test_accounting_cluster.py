"""`slurm.accounting: true` on a booted cluster: MariaDB, the database service, slurmdbd and
slurmctld start in that order on the controller, the cluster is registered, and a job run
through Slurm is listed by `sacct` on a compute node.

The lab of test_cluster.py with accounting switched on (the controller's slurm.conf, which every
slurmd fetches, differs, so its own images), booting only what accounting needs: the controller
and one compute node. MariaDB runs under qemu-user here with the image's own configuration;
departures from a real boot are those of overrides.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import checks
from tests.cluster.conftest import Lab, build_role_images, cluster_yaml, write_cluster
from tests.cluster.harness import NodeSpec, boot_cluster, start_services
from tests.reports import report

pytestmark = [pytest.mark.slow, pytest.mark.root]

BOOTED = ("head", "node01")
ACCOUNTING_UNITS = ("mariadb.service", "clusterbake-slurmdbd-db.service", "slurmdbd.service", "slurmctld.service")
SACCT_WAIT = 60


@pytest.fixture(scope="module")
def acctlab(served_base: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    folder = tmp_path_factory.mktemp("acctlab")
    data = cluster_yaml(served_base, folder / "secrets")
    data["slurm"] = {"controller": "head", "accounting": True}
    cluster = write_cluster(folder, data)
    images = build_role_images(cluster, folder / "out", ("controller", "compute"))
    yield Lab(base_image=served_base, cluster=cluster, images=images, out=folder / "out")


def test_a_job_is_recorded_and_sacct_lists_it(acctlab: Lab, tmp_path: Path) -> None:
    inv = acctlab.inventory
    started = time.monotonic()
    specs = [NodeSpec(n.name, n.role, acctlab.images[n.role]) for n in acctlab.cluster.nodes if n.name in BOOTED]
    with boot_cluster(specs, tmp_path) as cluster:
        for node in cluster.nodes:
            start_services(node)
        head, compute = cluster.node(inv.controller), cluster.node("node01")
        assert [u for u in head.started if u in ACCOUNTING_UNITS] == list(ACCOUNTING_UNITS), head.started
        assert {"mariadbd", "slurmdbd", "slurmctld"} <= set(checks.running(head)), checks.running(head)
        # Configless: node01's client commands read the slurm.conf its slurmd fetched, so only once
        # slurmd has registered (node01 idle) does sacctmgr there know where slurmdbd is.
        assert checks.wait_for(lambda: checks.node_states(head).get("node01") == "idle", checks.SLURM_WAIT), \
            f"node01 is {checks.node_states(head).get('node01', 'missing from sinfo')}, not idle"
        clusters = compute.run(["sacctmgr", "--noheader", "--parsable2", "show", "cluster", "format=cluster"])
        assert clusters.stdout.split() == [acctlab.cluster.name], clusters.stdout
        job = head.run(["sbatch", "--parsable", "-w", "node01", "-J", "acct-probe", "--wrap", "hostname"])
        job_id = job.stdout.strip().split(";")[0]
        listed = ""

        def recorded() -> bool:
            nonlocal listed
            out = compute.run(["sacct", "--noheader", "--parsable2", "--allusers", "-X", "-j", job_id,
                               "--format=JobID,JobName,State,NodeList"], check=False)
            listed = out.stdout.strip()
            return listed == f"{job_id}|acct-probe|COMPLETED|node01"

        assert checks.wait_for(recorded, SACCT_WAIT), f"sacct -j {job_id} on node01: {listed!r}"
        report("cluster test report",
               f"accounting: sacct on node01 lists {listed}; head runs {' '.join(checks.running(head))}; "
               f"up and checked in {time.monotonic() - started:.0f}s")
