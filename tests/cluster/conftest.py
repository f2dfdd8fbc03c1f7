"""The 4-node test cluster's images, built once per session through the real pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from builder.build import build_job, plan_job
from builder.config import Cluster, load_cluster
from builder.paths import cache_root, repo_root
from tests.cluster.checks import Inventory
from tests.cluster.harness import NodeSpec


def cluster_yaml(base_image: dict[str, str], secrets_dir: Path) -> dict[str, object]:
    # Test nodes declare what this host gives them (2 CPUs); slurmd drains a node that has
    # fewer CPUs than slurm.conf says. The Pi models stay the inventory's own business.
    small = {"cpus": 2, "memory_mb": 1000}
    return {
        "name": "testlab",
        "base_image": base_image,
        "network": {"subnet": "10.77.0.0/24", "gateway": "10.77.0.1", "dns": ["10.77.0.1"]},
        "time": {"server": "gps"},
        "slurm": {"controller": "head"},
        # Rendered and baked, but nothing mounts: the kernel's NFS server is host-wide (see overrides.py).
        "fileserver": {"node": "gps"},
        "nodes": [
            {"name": "head", "role": "controller", "ip": "10.77.0.10", **small},
            {"name": "gps", "role": "auxiliary", "ip": "10.77.0.20", "model": "pi4-8gb", **small},
            {"name": "node01", "role": "compute", "ip": "10.77.0.101", **small},
            {"name": "node02", "role": "compute", "ip": "10.77.0.102", **small},
        ],
        "users": [{"name": "hpc", "uid": 2000, "groups": ["sudo"]}],
        "secrets_dir": str(secrets_dir),
    }


@dataclass(frozen=True)
class Lab:
    base_image: dict[str, str]       # the served stand-in, as a cluster file's base_image
    cluster: Cluster
    images: dict[str, Path]          # role -> image
    out: Path

    def specs(self, replace: dict[str, Path] | None = None) -> list[NodeSpec]:
        """One NodeSpec per node, booting its role's image (or the replacement given for that node)."""
        replace = replace or {}
        prefix = self.cluster.network.subnet.prefixlen
        return [NodeSpec(n.name, n.role, replace.get(n.name) or self.images[n.role],
                         address=f"{n.ip}/{prefix}" if n.platform != "raspberry-pi" else None)
                for n in self.cluster.nodes]

    @property
    def inventory(self) -> Inventory:
        c = self.cluster
        return Inventory(addresses={n.name: str(n.ip) for n in c.nodes}, roles={n.name: n.role for n in c.nodes},
                         controller=c.slurm_controller, time_server=c.time_server,
                         compute=tuple(n.name for n in c.nodes_with_role("compute")))


def write_cluster(folder: Path, data: dict[str, object]) -> Cluster:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cluster.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_cluster(path, profiles_dir=repo_root() / "profiles")


def build_role_images(cluster: Cluster, out: Path, roles: tuple[str, ...]) -> dict[str, Path]:
    # One job: the layers the roles share are built once, independent ones side by side.
    built = build_job(plan_job(cluster, [(role, None) for role in roles], out_dir=out, cache=cache_root()))
    return {each.plan.role: each.path for each in built}


@pytest.fixture(scope="session")
def testlab(served_base: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    folder = tmp_path_factory.mktemp("testlab")
    cluster = write_cluster(folder, cluster_yaml(served_base, folder / "secrets"))
    images = build_role_images(cluster, folder / "out", ("controller", "auxiliary", "compute"))
    yield Lab(base_image=served_base, cluster=cluster, images=images, out=folder / "out")
