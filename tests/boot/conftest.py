"""The boot test's lab: a 4-node cluster file sized for VMs, its role images, the kernel, the VMs.

The images are built `--no-secrets`, as a release user gets them, through the real pipeline from
the served stand-in; the user's part is done on each VM's disk copy: `munge.key` (and, except
on node02, which is recognised by its MAC address, `node.txt`) on the boot partition.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.build import build_job, plan_job
from builder.config import Cluster
from builder.image.resize import grow_image
from builder.paths import cache_root
from tests.boot import departures, disks
from tests.boot.booted_lab import booted, pytest_runtest_teardown  # noqa: F401 - the lab's VMs, session-wide
from tests.boot.kernel import BootKernel, boot_kernel
from tests.boot.machines import Machine, MachineSpec, machines_running, private_lan, sweep_leftovers
from tests.built_images.image_reader import ImageReader
from tests.cluster.checks import Inventory
from tests.cluster.conftest import write_cluster
from tests.reports import report

USER = "hpc"
SUBNET, GATEWAY, PREFIX = "10.78.0.0/24", "10.78.0.1", 24
# Each VM has one vCPU; slurm.conf must not promise more than the guest has, or slurmd drains it.
SLURM_NODE = {"cpus": 1, "memory_mb": 640}
VM_MEMORY_MIB = {"controller": 768, "auxiliary": 1280, "compute": 1024}
# What must be active on each role after its first boot (checked besides "no failed unit": a unit
# whose start job was dropped, by a broken dependency or an ordering cycle, is not "failed").
SERVICES = {
    "controller": ("NetworkManager.service", "ssh.service", "munge.service", "chrony.service",
                   "slurmctld.service", "cloud-final.service", "prometheus-node-exporter.service"),
    "compute": ("NetworkManager.service", "ssh.service", "munge.service", "chrony.service", "slurmd.service",
                "clusterbake-slurm-power.service", "cloud-final.service", "prometheus-node-exporter.service"),
}
SERVICES["timeserver"] = (*SERVICES["compute"], "gpsd.service")
SERVICES["auxiliary"] = (*SERVICES["timeserver"], "nfs-server.service", "prometheus.service")
# node02 has no node.txt: the identity service must find it by this MAC address.
BY_MAC_ONLY = "node02"


def lab_yaml(base_image: dict[str, str], secrets_dir: Path, public_key: str) -> dict[str, object]:
    return {
        "name": "bootlab",
        "base_image": base_image,
        "network": {"subnet": SUBNET, "gateway": GATEWAY, "dns": [GATEWAY]},
        "time": {"server": "gps"},
        "slurm": {"controller": "head"},
        # gps is the reference lab's auxiliary node: time, NFS homes and scratch, Prometheus.
        "fileserver": {"node": "gps"},
        "nodes": [
            {"name": "head", "role": "controller", "ip": "10.78.0.10", "mac": "52:54:00:78:00:10"},
            {"name": "gps", "role": "auxiliary", "ip": "10.78.0.20", "mac": "52:54:00:78:00:20", **SLURM_NODE},
            {"name": "node01", "role": "compute", "ip": "10.78.0.101", "mac": "52:54:00:78:01:01", **SLURM_NODE},
            {"name": "node02", "role": "compute", "ip": "10.78.0.102", "mac": "2c:cf:67:78:01:02", **SLURM_NODE},
        ],
        # In group sudo without a password: `apply` logs in as this user and runs `sudo -n` (issue 24).
        "users": [{"name": USER, "uid": 2000, "groups": ["adm", "systemd-journal", "sudo"], "ssh_keys": [public_key]}],
        # A headless lab names its user, so Raspberry Pi OS's console wizard stays off.
        "first_user": USER,
        "secrets_dir": str(secrets_dir),
    }


@dataclass(frozen=True)
class BootLab:
    cluster: Cluster
    images: dict[str, Path]          # role -> release-like image (no munge key inside)
    kernel: BootKernel
    key: Path                        # the cluster user's SSH private key
    munge_key: bytes

    @property
    def inventory(self) -> Inventory:
        c = self.cluster
        return Inventory(addresses={n.name: str(n.ip) for n in c.nodes}, roles={n.name: n.role for n in c.nodes},
                         controller=c.slurm_controller, time_server=c.time_server,
                         compute=tuple(n.name for n in c.nodes_with_role("compute")))

    @property
    def slurmd_nodes(self) -> list[str]:
        return [n.name for n in self.cluster.nodes if n.role in ("compute", "auxiliary")]

    def disk(self, name: str, folder: Path, image: Path | None = None) -> MachineSpec:
        """Node `name`'s VM: a copy of its role's image with what the user adds to the card."""
        node = next(n for n in self.cluster.nodes if n.name == name)
        disk = disks.sparse_copy(image or self.images[node.role], folder / f"{name}.img")
        if self.cluster.fileserver is not None and name == self.cluster.fileserver.node:
            grow_image(disk, departures.FILE_SERVER_GROWTH)
        disks.put_boot_file(disk, "munge.key", self.munge_key)
        if name != BY_MAC_ONLY:
            disks.put_boot_file(disk, "node.txt", f"{name}\n".encode())
        reader = ImageReader(disk)
        if node.role in departures.DROP_REFCLOCKS:
            conf = "/etc/chrony/chrony.conf"
            disks.replace_root_file(disk, conf, departures.without_refclocks(reader.text(conf)).encode())
        return MachineSpec(name=name, role=node.role, ip=str(node.ip), mac=str(node.mac), disk=disk,
                           cmdline=departures.kernel_cmdline(reader.boot_text("cmdline.txt")),
                           memory_mib=VM_MEMORY_MIB[node.role],
                           button_hold_ms=departures.button_hold_ms(reader.boot_text("config.txt")))


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the session as Ctrl-C does (KeyboardInterrupt), so every VM is torn down."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def vms(lab: BootLab, specs: Sequence[MachineSpec], folder: Path) -> Iterator[dict[str, Machine]]:
    """The machines of `specs` booted on a private LAN; all killed and the LAN deleted on any exit,
    SIGINT and SIGTERM included."""
    sweep_leftovers()
    with sigterm_as_interrupt(), private_lan(GATEWAY, PREFIX) as lan:
        machines = []
        for spec in specs:
            (folder / spec.name).mkdir(parents=True, exist_ok=True)
            machines.append(Machine(spec=spec, lan=lan, kernel=lab.kernel.vmlinuz, initrd=lab.kernel.initrd,
                                    folder=folder / spec.name, key=lab.key, user=USER))
        with machines_running(machines):
            for machine in machines:
                machine.boot()
            yield {m.name: m for m in machines}


@pytest.fixture(scope="session")
def bootlab(served_base: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> BootLab:
    folder = tmp_path_factory.mktemp("bootlab")
    key = folder / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bootlab", "-f", key], check=True)
    cluster = write_cluster(folder, lab_yaml(served_base, folder / "secrets",
                                             key.with_suffix(".pub").read_text().strip()))
    started = time.monotonic()
    roles = ("controller", "auxiliary", "compute")
    job = plan_job(cluster, [(role, None) for role in roles], secrets=False, out_dir=folder / "out", cache=cache_root())
    images = {built.plan.role: built.path for built in build_job(job)}
    kernel = boot_kernel(cache_root())
    report("boot test report", f"fixtures (role images --no-secrets, kernel {kernel.release}): "
                   f"{time.monotonic() - started:.0f}s")
    return BootLab(cluster=cluster, images=images, kernel=kernel, key=key,
                   munge_key=_munge_key(folder))


@pytest.fixture(scope="session")
def lone_compute(bootlab: BootLab, served_base: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lab's compute image with no file server in its cluster file, for a node booted alone.

    With one, /home is the file server's: alone on its LAN, the node's sshd cannot read the
    cluster user's authorized_keys and refuses the harness's key ("Permission denied").
    """
    folder = tmp_path_factory.mktemp("lone")
    data = lab_yaml(served_base, folder / "secrets", bootlab.key.with_suffix(".pub").read_text().strip())
    del data["fileserver"]
    cluster = write_cluster(folder, data)
    [built] = build_job(plan_job(cluster, [("compute", None)], secrets=False, out_dir=folder / "out",
                                 cache=cache_root()))
    return built.path


def _munge_key(folder: Path) -> bytes:
    """A fresh cluster key, as `mungekey` makes one (1024 random bytes)."""
    path = folder / "munge.key"
    if not path.exists():
        with open("/dev/urandom", "rb") as random:
            path.write_bytes(random.read(1024))
    return path.read_bytes()
