"""Slurm hostlist expressions, so that slurm.conf stays a few lines long at any cluster size.

Slurm reads `node[001-256]` as node001 … node256 (the width of the first number is kept) and
`10.0.0.[11-266]`-style ranges the same way. `NodeName=` lines may define many nodes at once
when they share every value but their name and address: `node_groups` merges runs of nodes
that are next to each other in the cluster file, number their names consecutively (same
prefix, same width) and their addresses consecutively (same first three octets), and agree on
CPUs and memory. Merging only neighbours keeps the order of the nodes, which Slurm uses when
it picks nodes for a job.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

NUMBERED = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)$")
SHARED = ("cpus", "memory_mb")


def _split(name: str) -> tuple[str, str] | None:
    """`node007` → ("node", "007"); None for a name that does not end in digits."""
    match = NUMBERED.match(name)
    return (match["prefix"], match["number"]) if match else None


def _follows(previous: str, name: str) -> bool:
    """Whether `name` is the next name after `previous` in one bracketed range."""
    a, b = _split(previous), _split(name)
    if a is None or b is None or a[0] != b[0] or int(b[1]) != int(a[1]) + 1:
        return False
    # Slurm pads every number of a range to the width of the first: node[08-10] is node08 … node10,
    # node[8-10] is node8 … node10. So widths must agree, or neither number may be padded.
    return len(a[1]) == len(b[1]) or (_unpadded(a[1]) and _unpadded(b[1]))


def _unpadded(number: str) -> bool:
    return number == str(int(number))


def _range(names: Sequence[str]) -> str:
    """A run of consecutive names (see `_follows`) as one expression: node[01-06], or the name itself."""
    if len(names) == 1:
        return names[0]
    first, last = _split(names[0]), _split(names[-1])
    assert first is not None and last is not None
    return f"{first[0]}[{first[1]}-{last[1]}]"


def _runs(names: Iterable[str]) -> list[list[str]]:
    runs: list[list[str]] = []
    for name in names:
        if runs and _follows(runs[-1][-1], name):
            runs[-1].append(name)
        else:
            runs.append([name])
    return runs


def hostlist(names: Iterable[str]) -> str:
    """Names as a comma-separated hostlist, runs of consecutive names bracketed, order kept."""
    return ",".join(_range(run) for run in _runs(names))


def node_groups(nodes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Neighbouring nodes that one `NodeName=` line can define: `names` and `addrs` as hostlists.

    Each group also carries the values its nodes share (cpus, memory_mb).
    """
    groups: list[list[Mapping[str, Any]]] = []
    for node in nodes:
        last = groups[-1][-1] if groups else None
        if (last is not None and all(last[k] == node[k] for k in SHARED)
                and _follows(last["name"], node["name"]) and _follows(last["ip"], node["ip"])):
            groups[-1].append(node)
        else:
            groups.append([node])
    return [{"names": _range([n["name"] for n in group]), "addrs": _range([n["ip"] for n in group]),
             **{k: group[0][k] for k in SHARED}} for group in groups]
