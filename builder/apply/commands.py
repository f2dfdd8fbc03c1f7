"""The `status` and `apply` commands: plans first (bad input fails before any node is contacted), then
the nodes probed in parallel, then (apply) the differences shown, confirmed and made."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from builder.apply.converge import (
    NodeReport,
    apply_reports,
    describe,
    probe_nodes,
    status_json,
    status_table,
    unreachable,
)
from builder.apply.desired import NodePlan, node_plans
from builder.apply.transport import SshTransport, Transport
from builder.config import Cluster
from builder.errors import InputError
from builder.render.sudoers import passwordless_sudo

KNOWN_HOSTS = "known_hosts"   # in the cluster's secrets folder, beside the munge key


def apply_user(cluster: Cluster) -> str:
    """The first user of the cluster file with passwordless sudo (sudoers.py's rule): who `apply` logs in as."""
    for user in cluster.users:
        if passwordless_sudo(cluster, user, passwords=True):
            return user.name
    raise InputError(f"{cluster.source.name}: users: no user with passwordless sudo for `apply` to log in as",
                     hint="set first_user to a user in group sudo without a password_hash, or give a user "
                          "sudo: nopasswd")


def plans_for(cluster: Cluster, profiles: Path, overlays: Path, only: tuple[str, ...]) -> tuple[NodePlan, ...]:
    names = {n.name for n in cluster.nodes}
    for name in only:
        if name not in names:
            raise InputError(f"--node {name}: {cluster.source.name} has no such node",
                             hint=f"one of {', '.join(sorted(names))}")
    return node_plans(cluster, profiles_dir=profiles, overlays_dir=overlays, only=only)


def ssh_transport(cluster: Cluster, control_dir: Path, identity: Path | None) -> SshTransport:
    cluster.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return SshTransport(user=apply_user(cluster), known_hosts=cluster.secrets_dir / KNOWN_HOSTS,
                        control_dir=control_dir, identity=identity)


def run_status(plans: tuple[NodePlan, ...], transport: Transport, *, as_json: bool) -> int:
    reports = probe_nodes(plans, transport)
    print(status_json(reports) if as_json else status_table(reports))
    return 0 if all(r.drift is not None and r.drift.empty and not r.drift.problems for r in reports) else 3


def run_apply(plans: tuple[NodePlan, ...], transport: Transport, *, yes: bool,
              ask: Callable[[str], str] = input) -> int:
    reports = probe_nodes(plans, transport)
    for report in reports:
        for line in describe(report):
            print(line)
    down = dict(unreachable(reports))
    down.update({r.name: f"{r.name}: needs a new image (make image NODE={r.name})" for r in reports
                 if r.drift is not None and r.drift.problems})
    todo = [r for r in reports if r.drift is not None and not r.drift.empty]
    if not todo:
        print("no change: every reachable node is as the cluster file says"
              + (f"; not up to date: {', '.join(sorted(down))}" if down else ""))
        return 1 if down else 0
    if not yes:
        if not sys.stdin.isatty() and ask is input:
            raise InputError("apply: changes to make and no terminal to confirm them", hint="run with --yes")
        names = ", ".join(r.name for r in todo)
        if ask(f"apply these changes to {names}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing changed")
            return 1
    failed = apply_reports(reports, transport, say=print)
    for why in (text for _, text in sorted({**down, **failed}.items())):
        print(f"not up to date: {why}")
    return 1 if down or failed else 0


def with_ssh(cluster: Cluster, identity: Path | None, work: Callable[[SshTransport], int]) -> int:
    # The master connections' sockets live in a private folder removed when the command ends.
    with tempfile.TemporaryDirectory(prefix="clusterbake-ssh-") as folder:
        return work(ssh_transport(cluster, Path(folder), identity))


__all__ = ["NodeReport", "plans_for", "run_apply", "run_status", "with_ssh"]
