"""`status` and `apply`: every node of the cluster file probed in parallel, compared with its plan,
and (apply) brought to it. A node that cannot be reached is reported; the others proceed.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from builder.apply.desired import NodePlan
from builder.apply.drift import NodeDrift, file_diff, node_drift
from builder.apply.node_state import NodeState, state_from_probe
from builder.apply.restarts import RECONFIGURE, controller_needs_reconfigure, node_commands
from builder.apply.transport import NodeUnavailable, Transport
from builder.render.sudoers import sudoers_path

log = logging.getLogger("clusterbake")
PARALLEL = 8


@dataclass(frozen=True)
class NodeReport:
    plan: NodePlan
    state: NodeState | None        # None: not reachable
    drift: NodeDrift | None
    failure: str = ""

    @property
    def name(self) -> str:
        return self.plan.node.name


def _address(plan: NodePlan) -> str:
    return str(plan.node.ip)


def probe_nodes(plans: Sequence[NodePlan], transport: Transport) -> list[NodeReport]:
    def one(plan: NodePlan) -> NodeReport:
        try:
            answer = transport.agent(plan.node.name, _address(plan), "probe", {"paths": [f.path for f in plan.files]})
            state = state_from_probe(answer)
        except NodeUnavailable as exc:
            return NodeReport(plan, None, None, str(exc))
        return NodeReport(plan, state, node_drift(plan, state))

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        return list(pool.map(one, plans))


def status_rows(reports: Sequence[NodeReport]) -> list[dict[str, Any]]:
    rows = []
    for r in reports:
        drift = r.drift
        rows.append({
            "node": r.name, "role": r.plan.role, "address": _address(r.plan), "reachable": r.state is not None,
            "image": r.state.image if r.state else None, "failure": r.failure or None,
            "drift": None if drift is None else {
                "files": [f.path for f in drift.files], "users": list(drift.users),
                "packages": list(drift.packages), "units": list(drift.units), "problems": list(drift.problems),
                "remove_users": list(drift.remove_users)},
        })
    return rows


def status_table(reports: Sequence[NodeReport]) -> str:
    lines = [f"{'node':10} {'role':12} {'address':15} {'reachable':9}  drift"]
    for r in reports:
        drift = r.failure if r.drift is None else r.drift.summary()
        lines.append(f"{r.name:10} {r.plan.role:12} {_address(r.plan):15} {'yes' if r.state else 'no':9}  {drift}")
        if r.state is not None and r.state.image:
            lines.append(f"{'':10} image: {r.state.image}")
    return "\n".join(lines)


def status_json(reports: Sequence[NodeReport]) -> str:
    return json.dumps({"nodes": status_rows(reports)}, indent=2)


def describe(report: NodeReport) -> list[str]:
    """Every difference of one node, for people (secrets never shown)."""
    drift = report.drift
    if drift is None:
        return [f"{report.failure}: skipped"]
    lines = [file_diff(report.name, f) for f in drift.files]
    lines += [f"{report.name}: user {u}: missing" for u in drift.users]
    lines += [f"{report.name}: user {u}: remove (its home is kept)" for u in drift.remove_users]
    lines += [f"{report.name}: package {p}: not installed" for p in drift.packages]
    lines += [f"{report.name}: unit {u}: not enabled" for u in drift.units]
    lines += [f"{report.name}: needs a new image: {p} (make image NODE={report.name})" for p in drift.problems]
    return lines


def write_request(report: NodeReport) -> dict[str, Any]:
    drift = report.drift
    assert drift is not None
    users = {u.name: u for u in report.plan.users}
    changed = [f.path for f in drift.files]
    return {
        "remove_users": list(drift.remove_users),
        # A removed user's sudoers rule goes with the account: a later account of that name must not inherit it.
        "remove_files": [sudoers_path(n) for n in drift.remove_users
                         if sudoers_path(n) not in {f.path for f in report.plan.files}],
        "users": [{"name": n, "uid": users[n].uid, "shell": users[n].shell,
                   "home": not any(m == "/home" for m in report.plan.mounts)} for n in drift.users],
        "packages": list(drift.packages),
        "files": [{"path": f.want.path, "data": base64.b64encode(f.want.data).decode(), "mode": f.want.mode,
                   "owner": f.want.owner, "group": f.want.group, "directory": f.want.directory}
                  for f in drift.files],
        "enable": list(drift.units),
        "commands": node_commands(changed, report.plan.enabled),
    }


def apply_reports(reports: Sequence[NodeReport], transport: Transport,
                  say: Callable[[str], None]) -> dict[str, str]:
    """Bring every reachable node with drift to its plan; the controller's slurmctld is reconfigured once,
    last. Returns the nodes that failed, with why."""
    todo = [r for r in reports if r.drift is not None and not r.drift.empty]
    failed: dict[str, str] = {}

    def one(report: NodeReport) -> None:
        try:
            done = transport.agent(report.name, _address(report.plan), "write", write_request(report))["done"]
            say(f"{report.name}: {len(done)} changes made")
        except NodeUnavailable as exc:
            failed[report.name] = str(exc)

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        list(pool.map(one, todo))
    controller = next((r for r in reports if r.plan.runs_slurmctld), None)
    slurm_changed = any(controller_needs_reconfigure(f.path for f in r.drift.files) for r in todo
                        if r.drift is not None and r.plan.runs_slurmctld)
    if controller is not None and controller.state is not None and slurm_changed and controller.name not in failed:
        try:
            transport.agent(controller.name, _address(controller.plan), "write", {"commands": [RECONFIGURE]})
            say(f"{controller.name}: scontrol reconfigure (every slurmd fetches the new slurm.conf)")
        except NodeUnavailable as exc:
            failed[controller.name] = str(exc)
    return failed


def unreachable(reports: Sequence[NodeReport]) -> Mapping[str, str]:
    return {r.name: r.failure for r in reports if r.state is None}
