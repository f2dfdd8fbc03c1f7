"""What a running node should have: the same render plan the image build uses, for that node.

Never a second way of computing it: the planning stage (`plan_targets`) for NODE= targets, with
the cluster's secrets, as `make image NODE=…` would bake it. Only what can change in place is kept
here; what needs a new image (base image, partitions, the platform, the boot partition) is `needs_new_image`'s business.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from builder.config import Cluster
from builder.config.model import Node, User
from builder.render import ImageFile, RenderPlan
from builder.render.plan import plan_targets


@dataclass(frozen=True)
class NodePlan:
    """One node's part of the cluster file, as `apply` brings it about."""

    node: Node
    role: str
    files: tuple[ImageFile, ...]           # sorted by path: a directory before its contents
    users: tuple[User, ...]
    packages: tuple[str, ...]
    enabled: tuple[str, ...]
    mounts: tuple[str, ...] = ()           # the file server's exports this node mounts (/home, /scratch)

    @property
    def runs_slurmctld(self) -> bool:
        return "slurmctld.service" in self.enabled


MOUNT_UNITS = "/etc/systemd/system/"


def _mount_points(files: tuple[ImageFile, ...]) -> tuple[str, ...]:
    """The NFS mount points of a node: its `<unit>.mount` files (systemd's name of the path: `srv-data`)."""
    names = [f.path[len(MOUNT_UNITS):] for f in files if f.path.startswith(MOUNT_UNITS)]
    return tuple("/" + name.removesuffix(".mount").replace("-", "/") for name in names
                 if name.endswith(".mount") and "/" not in name)


def _under(path: str, folders: tuple[str, ...]) -> bool:
    return any(path == m or path.startswith(m + "/") for m in folders)


def node_plan(plan: RenderPlan) -> NodePlan:
    """The render plan of one node, less what a running node does not keep locally: files under the file
    server's exports it mounts (its `/home/<user>/.ssh` is the file server's, where `apply` writes it)."""
    if plan.node is None:
        raise ValueError("a node plan needs a NODE= render plan")
    mounts = _mount_points(plan.files)
    files = tuple(f for f in plan.files if not _under(f.path, mounts))
    return NodePlan(node=plan.node, role=plan.role, files=files, users=plan.users,
                    packages=plan.packages, enabled=plan.enable, mounts=mounts)


def node_plans(cluster: Cluster, *, profiles_dir: Path, overlays_dir: Path,
               only: tuple[str, ...] = ()) -> tuple[NodePlan, ...]:
    """Every node's plan (or those named in `only`), rendered before any node is contacted."""
    names = only or tuple(n.name for n in cluster.nodes)
    # One planning stage for every node: profiles loaded and cluster-wide checks run once.
    _, plans = plan_targets(cluster, [(None, name) for name in names], secrets=True, profiles_dir=profiles_dir,
                            overlays_dir=overlays_dir)
    return tuple(node_plan(plan) for plan in plans)
