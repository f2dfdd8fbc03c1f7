"""Fake nodes for the day-two tests: a directory per node with the files, accounts, packages and
enabled units a booted image would have, read and written by the real node agent (LocalTransport)."""

from __future__ import annotations

from pathlib import Path

from builder.apply.converge import probe_nodes, write_request
from builder.apply.desired import NodePlan, node_plans
from builder.apply.transport import LocalTransport
from builder.config import Cluster, load_cluster
from tests.render.render_support import OVERLAYS, PROFILES, SMALL, private


def small_lab(folder: Path) -> Cluster:
    path = folder / "minilab.yaml"
    path.write_text(SMALL)
    return private(load_cluster(path, profiles_dir=PROFILES), folder)


def plans(cluster: Cluster) -> tuple[NodePlan, ...]:
    return plans_of(cluster)


def plans_of(cluster: Cluster, only: tuple[str, ...] = ()) -> tuple[NodePlan, ...]:
    return node_plans(cluster, profiles_dir=PROFILES, overlays_dir=OVERLAYS, only=only)


def _accounts(plan: NodePlan) -> tuple[str, str]:
    names = {"root": 0}
    for f in plan.files:
        for name in (f.owner, f.group):
            names.setdefault(name, 100 + len(names))
    for user in plan.users:
        names[user.name] = user.uid
    passwd = "".join(f"{n}:x:{i}:{i}::/home/{n}:/bin/sh\n" for n, i in names.items())
    group = "".join(f"{n}:x:{i}:\n" for n, i in names.items())
    return passwd, group


def booted_node(root: Path, plan: NodePlan) -> None:
    """A node as its image boots: accounts, packages and units of the plan; then its files written
    by the node agent itself (`write`), as `apply` writes them."""
    (root / "etc/systemd/system/multi-user.target.wants").mkdir(parents=True)
    passwd, group = _accounts(plan)
    (root / "etc/passwd").write_text(passwd)
    (root / "etc/group").write_text(group)
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(
        "".join(f"Package: {p}\nStatus: install ok installed\n\n" for p in plan.packages))
    for unit in plan.enabled:
        (root / "etc/systemd/system/multi-user.target.wants" / unit).symlink_to(f"/usr/lib/systemd/system/{unit}")
    (root / "boot/firmware").mkdir(parents=True)
    (root / "boot/firmware/clusterbake.txt").write_text(f"This card was baked by clusterbake, role {plan.role}.\n")
    transport = LocalTransport({plan.node.name: root})
    report = probe_nodes([plan], transport)[0]
    assert report.drift is not None
    transport.agent(plan.node.name, str(plan.node.ip), "write", write_request(report))


def booted_lab(cluster: Cluster, folder: Path) -> tuple[tuple[NodePlan, ...], dict[str, Path]]:
    return booted_lab_of(cluster, folder)


def booted_lab_of(cluster: Cluster, folder: Path,
                  only: tuple[str, ...] = ()) -> tuple[tuple[NodePlan, ...], dict[str, Path]]:
    """Those nodes of `cluster` (all by default) as fake booted nodes."""
    node_plans_ = plans_of(cluster, only)
    roots = {}
    for plan in node_plans_:
        roots[plan.node.name] = folder / plan.node.name
        booted_node(roots[plan.node.name], plan)
    return node_plans_, roots


def edited_lab(folder: Path, old: str, new: str) -> Cluster:
    """The small lab's cluster file with one edit, as a person makes it (same secrets folder)."""
    assert old in SMALL
    path = folder / "minilab.yaml"
    path.write_text(SMALL.replace(old, new))
    return private(load_cluster(path, profiles_dir=PROFILES), folder)
