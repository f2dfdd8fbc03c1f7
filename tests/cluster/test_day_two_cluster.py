"""Day two on booted nodes: `status` finds each freshly booted role image as its node plan says
(but for the test's own documented overrides), and `apply` of an edited cluster file lands.

The node agent reads and writes each node's root from this host (LocalTransport over the
node's overlay), not over SSH: the namespaced nodes run arm64 binaries through binfmt without
the `C` (credentials) flag, so a setuid `sudo` cannot gain root inside them, and changing the
host's binfmt flags is not a test's business. What runs over SSH is checked in tests/apply.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from builder.apply.converge import apply_reports, probe_nodes
from builder.apply.desired import node_plans
from builder.apply.transport import LocalTransport
from builder.paths import repo_root
from tests.cluster.conftest import Lab, write_cluster
from tests.cluster.harness import boot_cluster, start_services

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
    with boot_cluster(testlab.specs(), tmp_path / "boot") as cluster:
        for node in cluster.nodes:
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

        # The cluster file edited: a user with a key, a third compute node.
        data = yaml.safe_load(testlab.cluster.source.read_text())
        data["nodes"].append({"name": "node03", "role": "compute", "ip": "10.77.0.103", "cpus": 2, "memory_mb": 1000})
        data["users"].append({"name": "carol", "uid": 2001, "ssh_keys": [CAROL_KEY]})
        edited = write_cluster(tmp_path / "edited", data)
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
        after = probe_nodes(edited_plans, transport)
        # A second apply has nothing to do (the restarts are not run on a tree: they need the node's systemd).
        assert all(r.drift is not None and r.drift.empty for r in after), \
            {r.name: r.drift.summary() for r in after if r.drift}
        assert "carol:x:2001:" in cluster.node("node01").file("/etc/passwd").read_text()
