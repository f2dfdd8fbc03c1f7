"""Day two on booted nodes: `status` finds each freshly booted role image as its node plan says
(but for the test's own documented overrides), and `apply` of an edited cluster file lands.

The node agent reads and writes each node's root from this host (LocalTransport over the
node's overlay), not over SSH: the namespaced nodes run arm64 binaries through binfmt without
the `C` (credentials) flag, so a setuid `sudo` cannot gain root inside them, and changing the
host's binfmt flags is not a test's business. What runs over SSH is checked in tests/apply.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from builder.apply.converge import apply_reports, probe_nodes
from builder.apply.desired import node_plans
from builder.apply.restarts import RECONFIGURE
from builder.apply.transport import LocalTransport
from builder.paths import repo_root
from builder.render.node_card import node_card
from tests.cluster import overrides
from tests.cluster.checks import node_states, wait_for
from tests.cluster.conftest import Lab, write_cluster
from tests.cluster.harness import NodeSpec, boot_cluster, start_services

pytestmark = [pytest.mark.slow, pytest.mark.root]

PROFILES, OVERLAYS = repo_root() / "profiles", repo_root() / "overlays"
# overrides.py rewrites these in the nodes' overlays (Slurm without cgroups, chrony without GPS).
OVERRIDDEN = {"head": {"/etc/slurm/slurm.conf", "/etc/slurm/cgroup.conf"}, "gps": {"/etc/chrony/chrony.conf"}}
# A node booted from its role image differs from its node plan in these until the first apply: the
# identity service adds its own-name line to /etc/hosts without the plan's comment, and the
# first-boot preset of a role image also lists the identity service (README, "Day two").
ROLE_BOOTED = {"/etc/hosts", "/etc/systemd/system-preset/00-clusterbake.preset"}
CAROL_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDXW0RcQbTUaRfYr8eTHvIizrqZ8l3RC6KXIEpv/hyD5 carol@desk"


def test_booted_nodes_are_their_plans_and_apply_brings_them_to_an_edited_cluster_file(
        testlab: Lab, tmp_path: Path) -> None:
    plans = node_plans(testlab.cluster, profiles_dir=PROFILES, overlays_dir=OVERLAYS)
    # The cluster file edited: a user with a key, a third compute node, a time limit on the partition.
    data = yaml.safe_load(testlab.cluster.source.read_text())
    data["slurm"]["partitions"] = [{"name": "main", "max_time": "2-00:00:00"}]
    data["nodes"].append({"name": "node03", "role": "compute", "ip": "10.77.0.103", "cpus": 2, "memory_mb": 1000})
    data["users"].append({"name": "carol", "uid": 2001, "ssh_keys": [CAROL_KEY]})
    edited = write_cluster(tmp_path / "edited", data)
    # node03's card: the compute image built for the first cluster file, and the node card of the edited one.
    card = node_card(edited, "node03", profiles_dir=PROFILES, overlays_dir=OVERLAYS)
    new_card = NodeSpec("node03", "compute", testlab.images["compute"], node_txt=card)
    with boot_cluster([*testlab.specs(), new_card], tmp_path / "boot") as cluster:
        t0 = time.monotonic()
        for node in cluster.nodes:
            if node.name != "node03":       # its card is booted once apply has told the others
                start_services(node)
        transport = LocalTransport({node.name: node.root for node in cluster.nodes})
        reports = probe_nodes(plans, transport)
        for report in reports:
            drift = report.drift
            assert drift is not None, report.failure
            want = ROLE_BOOTED | OVERRIDDEN.get(report.name, set())
            assert {f.path for f in drift.files} == want, (report.name, drift)
            assert (drift.users, drift.packages, drift.units) == ((), (), ()), (report.name, drift)
            assert report.state is not None and "role " + report.plan.role in report.state.image

        edited_plans = [p for p in node_plans(edited, profiles_dir=PROFILES, overlays_dir=OVERLAYS)
                        if p.node.name != "node03"]         # its card is not in yet
        before = {r.name: r for r in probe_nodes(edited_plans, transport)}
        for name, report in before.items():
            assert report.drift is not None and report.drift.users == ("carol",), name
            planned = {f.path: f.want.data for f in report.drift.files}
            # carol's key goes into the shared home: on the file server (the others mount it).
            assert ("/home/carol/.ssh/authorized_keys" in planned) == (name == "gps"), (name, sorted(planned))
            # Configless: only the controller's Slurm files change; every slurmd fetches them.
            assert any(p.startswith("/etc/slurm/") for p in planned) == (name == "head"), (name, sorted(planned))
        head_plan = next(p for p in edited_plans if p.node.name == "head")
        assert b"NodeName=node[01-03] " in next(f.data for f in head_plan.files if f.path == "/etc/slurm/slurm.conf")
        assert apply_reports(list(before.values()), transport, say=lambda _: None) == {}
        assert next(line for line in cluster.node("node01").file("/etc/hosts").read_text().splitlines()
                    if line.startswith("10.77.0.103\t")).split() == ["10.77.0.103", "node03"]
        slurm_conf = cluster.node("head").file("/etc/slurm/slurm.conf").read_text()
        assert "NodeName=node[01-03] NodeAddr=10.77.0.[101-103]" in slurm_conf
        assert "PartitionName=main Nodes=gps,node[01-03] Default=YES MaxTime=2-00:00:00 State=UP" in slurm_conf
        after = probe_nodes(edited_plans, transport)
        # A second apply has nothing to do (the restarts are not run on a tree: they need the node's systemd).
        assert all(r.drift is not None and r.drift.empty for r in after), \
            {r.name: r.drift.summary() for r in after if r.drift}
        assert "carol:x:2001:" in cluster.node("node01").file("/etc/passwd").read_text()

        # node03's card boots (the compute image, built before node03 existed, and its node card). Slurm
        # learns of it as apply's last step would (`scontrol reconfigure`, not run on a tree), after the
        # test's own slurm.conf changes are made again over the plan's (overrides.py).
        head = cluster.node("head")
        overrides.apply_file_overrides(head.root)
        head.run(RECONFIGURE)
        node03 = cluster.node("node03")
        start_services(node03)
        assert "this board is node03 (node card /boot/firmware/node.txt)" in \
            (node03.logs / "clusterbake-identity.service.log").read_text()
        assert node03.file("/etc/hostname").read_text() == "node03\n"
        assert "10.77.0.103:9100" in cluster.node("gps").file("/etc/prometheus/prometheus.yml").read_text()
        assert wait_for(lambda: node_states(head).get("node03") == "idle", 180), node_states(head)
        assert "MaxTime=2-00:00:00" in head.run(["scontrol", "show", "partition", "main"]).stdout
        # node03 is a compute node that missed the apply (its image is older than the edit): it differs as
        # node01 did before it, and in what a role-booted node has until its first apply; then in nothing.
        new_plan = list(node_plans(edited, profiles_dir=PROFILES, overlays_dir=OVERLAYS, only=("node03",)))
        report = probe_nodes(new_plan, transport)[0]
        missed = {f.path for f in before["node01"].drift.files}  # type: ignore[union-attr]
        assert report.drift is not None and {f.path for f in report.drift.files} == ROLE_BOOTED | missed, report.drift
        assert report.drift.users == ("carol",), report.drift
        assert apply_reports([report], transport, say=lambda _: None) == {}
        assert all(r.drift is not None and r.drift.empty for r in probe_nodes(new_plan, transport))
        # The new user runs a job on all three compute nodes, the card's one among them.
        srun = head.run(["srun", "-N3", "-w", "node[01-03]", "hostname"], user="carol", check=False, timeout=180)
        assert sorted(srun.stdout.split()) == ["node01", "node02", "node03"], (srun.returncode, srun.stderr[-400:])
        print(f"day two: node03 from its card idle {time.monotonic() - t0:.0f} s after the lab's services started")
