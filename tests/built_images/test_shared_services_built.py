"""Issue 15 in the built images: NFS homes and scratch, MPI through PMIx, cluster SSH, monitoring.

What runs (a mount, an MPI job, an SSH hop, a scrape) is proven by booting the images; here
debugfs shows that each image carries the packages, units and files for it.
"""

from __future__ import annotations

import pytest
import yaml

from tests.built_images.conftest import NODES, Lab
from tests.built_images.image_reader import ImageReader, ini

pytestmark = [pytest.mark.slow, pytest.mark.root]

PLUGINS = "/usr/lib/aarch64-linux-gnu/slurm-wlm"


def installed(image: ImageReader) -> set[str]:
    """Package names dpkg lists as installed, read from the image's own status file."""
    names, current = set(), None
    for line in image.text("/var/lib/dpkg/status").splitlines():
        if line.startswith("Package: "):
            current = line.split(": ", 1)[1]
        elif line.startswith("Status: ") and line.endswith(" installed") and current:
            names.add(current)
    return names


def test_every_image_runs_the_node_exporter_and_can_mount_nfs(lab: Lab) -> None:
    for image in lab.all:
        assert {"prometheus-node-exporter", "nfs-common"} <= installed(image), image.path.name
        assert image.enabled("prometheus-node-exporter.service"), image.path.name


def test_nodes_automount_home_and_scratch_from_the_file_server(lab: Lab) -> None:
    for image in (lab.roles["compute"], lab.roles["controller"], lab.node, lab.nosecrets):
        for path, name in (("/home", "home"), ("/scratch", "scratch")):
            mount = ini(image.text(f"/etc/systemd/system/{name}.mount"))
            assert mount["Mount"]["What"] == f"10.9.0.20:{path}", image.path.name
            assert mount["Mount"]["Where"] == path and mount["Mount"]["Type"] == "nfs4"
            assert {"_netdev", "nofail"} <= set(mount["Mount"]["Options"].split(","))
            assert ini(image.text(f"/etc/systemd/system/{name}.automount"))["Automount"]["Where"] == path
        wants = image.text("/etc/systemd/system/remote-fs.target.d/clusterbake-nfs.conf")
        assert "Wants=home.automount" in wants and "Wants=scratch.automount" in wants


def test_the_auxiliary_node_serves_nfs_and_prometheus(lab: Lab) -> None:
    aux = lab.roles["auxiliary"]
    assert {"nfs-kernel-server", "prometheus", "gpsd", "slurmd"} <= installed(aux)
    for unit in ("nfs-server.service", "prometheus.service", "clusterbake-cluster-keys.service", "gpsd.service"):
        assert aux.enabled(unit), unit
    exports = [line for line in aux.text("/etc/exports.d/clusterbake.exports").splitlines()
               if line and not line.startswith("#")]
    assert exports == ["/home 10.9.0.0/24(rw,sync,no_subtree_check,root_squash)",
                       "/scratch 10.9.0.0/24(rw,sync,no_subtree_check,root_squash)"]
    assert not aux.exists("/etc/systemd/system/home.mount")       # the server has the files
    config = yaml.safe_load(aux.text("/etc/prometheus/prometheus.yml"))
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "node"]
    assert sorted(t for c in job["static_configs"] for t in c["targets"]) == sorted(f"{n['ip']}:9100" for n in NODES)
    script = aux.stat("/usr/local/lib/clusterbake/cluster-keys")
    assert script is not None and script.mode == 0o755
    assert aux.exists("/usr/bin/prometheus") and aux.exists("/usr/sbin/exportfs")


def test_compute_nodes_run_mpi_jobs_through_slurms_pmix_plugin(lab: Lab) -> None:
    for image in (lab.roles["compute"], lab.roles["auxiliary"]):
        assert {"openmpi-bin", "python3-mpi4py", "libpmix2t64"} <= installed(image), image.path.name
        assert image.exists("/usr/lib/python3/dist-packages/mpi4py/__init__.py")
    for image in lab.with_key():
        # srun loads the MPI plugin too, so the controller (a login node) needs it as well.
        link = image.stat(f"{PLUGINS}/mpi_pmix.so")
        assert link is not None and link.link is not None, image.path.name
        assert image.exists(f"{PLUGINS}/{link.link.rsplit('/', 1)[-1]}"), image.path.name
    assert "openmpi-bin" not in installed(lab.roles["controller"])
    assert "\nMpiDefault=pmix\n" in lab.roles["controller"].text("/etc/slurm/slurm.conf")   # served to every slurmd


def test_ssh_between_nodes_without_prompts_and_no_keys_baked(lab: Lab) -> None:
    for image in lab.all:
        client = image.text("/etc/ssh/ssh_config.d/20-clusterbake-cluster.conf")
        assert "StrictHostKeyChecking accept-new" in client and "StrictHostKeyChecking no" not in client
        assert "AuthorizedKeysFile .ssh/authorized_keys .ssh/id_ed25519_cluster.pub" in image.text(
            "/etc/ssh/sshd_config.d/20-clusterbake-cluster.conf")
        for user in ("alice", "bob"):
            # the cluster key is made on the file server at its first boot, never in an image
            assert not image.exists(f"/home/{user}/.ssh/id_ed25519_cluster"), image.path.name
        assert not [n for n in image.listdir("/etc/ssh") if n.startswith("ssh_host_")], image.path.name
