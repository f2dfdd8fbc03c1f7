"""What makes the cluster usable: NFS homes and scratch, MPI, SSH between nodes, monitoring."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from builder.config import Cluster
from builder.config.model import FileServer
from builder.errors import InputError
from tests.render.render_support import file, paths, plan, text, unit

UNITS = "/etc/systemd/system/"
EXPORTS = "/etc/exports.d/clusterbake.exports"
WANTS = "/etc/systemd/system/remote-fs.target.d/clusterbake-nfs.conf"
PROMETHEUS = "/etc/prometheus/prometheus.yml"


def test_reference_compute_nodes_automount_home_and_scratch_from_gps(reference: Cluster) -> None:
    p = plan(reference, role="compute")
    for path, name in (("/home", "home"), ("/scratch", "scratch")):
        mount = unit(text(p, f"{UNITS}{name}.mount"))
        assert mount["Mount"]["What"] == f"10.0.0.20:{path}" and mount["Mount"]["Where"] == path
        assert mount["Mount"]["Type"] == "nfs4"
        options = mount["Mount"]["Options"].split(",")
        assert {"_netdev", "nofail"} <= set(options)
        assert int(mount["Mount"]["TimeoutSec"]) <= 60           # a dead server cannot hang a login forever
        assert "network-online.target" in mount["Unit"]["After"]
        automount = unit(text(p, f"{UNITS}{name}.automount"))
        assert automount["Automount"]["Where"] == path
        # Not set up before the network is: a ProtectHome= service starting earlier (NetworkManager,
        # logind) would trigger it and wait for a mount that waits for NetworkManager (seen in a VM).
        assert automount["Unit"]["DefaultDependencies"] == "no"
        assert "network-online.target" in automount["Unit"]["After"].split()
        assert "local-fs.target" not in automount["Unit"].get("Before", "")
        assert "umount.target" in automount["Unit"]["Conflicts"].split()
    wants = text(p, WANTS)
    # Wants=, never Requires=: the boot goes on without the server (fstab's nofail).
    assert "Wants=home.automount" in wants and "Wants=scratch.automount" in wants
    assert "Requires" not in "".join(line for line in wants.splitlines() if not line.startswith("#"))


def test_the_file_server_exports_to_the_subnet_and_mounts_nothing(reference: Cluster) -> None:
    p = plan(reference, role="auxiliary")
    lines = [line for line in text(p, EXPORTS).splitlines() if line and not line.startswith("#")]
    assert lines == ["/home 10.0.0.0/24(rw,sync,no_subtree_check,root_squash)",
                     "/scratch 10.0.0.0/24(rw,sync,no_subtree_check,root_squash)"]
    assert not any(f.path.endswith((".mount", ".automount")) for f in p.files)
    assert "Wants=" not in "".join(line for line in text(p, WANTS).splitlines() if not line.startswith("#"))
    assert {"nfs-kernel-server", "prometheus", "gpsd"} <= set(p.packages)
    assert {"nfs-server.service", "clusterbake-cluster-keys.service", "prometheus.service",
            "gpsd.service", "slurmd.service"} <= set(p.enable)
    tmpfiles = text(p, "/etc/tmpfiles.d/clusterbake-exports.conf")
    assert "d /home 0755 root root -" in tmpfiles and "d /scratch 1777 root root -" in tmpfiles
    keys = file(p, "/usr/local/lib/clusterbake/cluster-keys")
    assert keys.mode == 0o755 and "make_key hpc /home/hpc" in keys.data.decode()


def test_clients_narrower_than_the_subnet_are_what_is_exported(reference: Cluster) -> None:
    server = FileServer(node="gps", exports=("/srv/data",), clients=reference.network.subnet.subnets(new_prefix=25)
                        .__next__())
    cluster = dataclasses.replace(reference, fileserver=server)
    assert "/srv/data 10.0.0.0/25(" in text(plan(cluster, role="auxiliary"), EXPORTS)
    compute = plan(cluster, role="compute")
    assert unit(text(compute, f"{UNITS}srv-data.mount"))["Mount"]["Where"] == "/srv/data"
    assert f"{UNITS}home.mount" not in paths(compute)


def test_without_a_fileserver_homes_stay_local(reference: Cluster) -> None:
    cluster = dataclasses.replace(reference, fileserver=None)
    for role in ("compute", "controller", "auxiliary"):
        p = plan(cluster, role=role)
        assert not any(f.path.endswith((".mount", ".automount")) for f in p.files), role
    exports = text(plan(cluster, role="auxiliary"), EXPORTS)
    assert [line for line in exports.splitlines() if line and not line.startswith("#")] == []


def test_a_fileserver_whose_role_serves_no_nfs_is_refused(reference: Cluster) -> None:
    cluster = dataclasses.replace(reference, fileserver=FileServer("node01", ("/home",), reference.network.subnet))
    with pytest.raises(InputError) as caught:
        plan(cluster, role="compute")
    assert caught.value.one_line() == (
        "cluster.yaml: fileserver.node: 'node01' has role 'compute', whose profile does not enable "
        "nfs-server.service (fix: give that node a role that includes fileserver (e.g. auxiliary))")


@pytest.mark.parametrize("role", ["controller", "compute", "auxiliary", "login", "timeserver"])
def test_every_node_runs_the_exporter_and_only_the_auxiliary_node_prometheus(reference: Cluster, role: str) -> None:
    p = plan(reference, role=role)
    assert "prometheus-node-exporter" in p.packages and "prometheus-node-exporter.service" in p.enable
    assert ("prometheus.service" in p.enable) == (role == "auxiliary")
    assert ("prometheus" in p.packages) == (role == "auxiliary")


def test_prometheus_scrapes_every_node_of_the_inventory(reference: Cluster) -> None:
    config = yaml.safe_load(text(plan(reference, role="auxiliary"), PROMETHEUS))
    [node_job] = [job for job in config["scrape_configs"] if job["job_name"] == "node"]
    scraped = {c["labels"]["node"]: c["targets"] for c in node_job["static_configs"]}
    assert scraped == {n.name: [f"{n.ip}:9100"] for n in reference.nodes}


def test_compute_nodes_get_open_mpi_and_slurm_starts_ranks_through_pmix(reference: Cluster) -> None:
    for role in ("compute", "auxiliary", "timeserver"):
        assert {"openmpi-bin", "python3-mpi4py", "slurmd"} <= set(plan(reference, role=role).packages), role
    assert "openmpi-bin" not in plan(reference, role="controller").packages
    assert "\nMpiDefault=pmix\n" in text(plan(reference, role="controller"), "/etc/slurm/slurm.conf")


@pytest.mark.parametrize("role", ["controller", "compute", "auxiliary"])
def test_ssh_between_nodes_trusts_first_contact_only_for_cluster_hosts(reference: Cluster, role: str) -> None:
    p = plan(reference, role=role)
    client = text(p, "/etc/ssh/ssh_config.d/20-clusterbake-cluster.conf")
    host_lines = [line for line in client.splitlines() if line.startswith("Host ")]
    assert host_lines == ["Host " + " ".join([n.name for n in reference.nodes] + [str(n.ip) for n in reference.nodes])]
    assert "StrictHostKeyChecking accept-new" in client
    assert "StrictHostKeyChecking no" not in client
    assert "IdentityFile ~/.ssh/id_ed25519_cluster" in client
    server = text(p, "/etc/ssh/sshd_config.d/20-clusterbake-cluster.conf")
    assert "AuthorizedKeysFile .ssh/authorized_keys .ssh/id_ed25519_cluster.pub" in server
    assert not any("ssh_host_" in f.path for f in p.files)
