"""Slurm partitions in the cluster file: `slurm.partition` (one partition of every node running slurmd,
no time limit) or `slurm.partitions` (a list, each with its nodes and time limit).

Rendered into the controller's slurm.conf only (configless): changing one is `apply`'s business,
which writes that file and runs `scontrol reconfigure` once. Whether a partition's nodes run slurmd
depends on the profiles, so that is checked where they are known (builder/render/context.py).
"""

from __future__ import annotations

import re
from typing import Any

from builder.config import grammar
from builder.config.grammar import shown
from builder.config.model import Node, Partition
from builder.config.reader import Reader

UNLIMITED = "INFINITE"
# Slurm's time formats (sbatch(1) --time): minutes, minutes:seconds, hours:minutes:seconds, days-hours,
# days-hours:minutes, days-hours:minutes:seconds; or INFINITE/UNLIMITED.
_MS = r"[0-5]?[0-9]"
_H = r"(?:[01]?[0-9]|2[0-3])"
TIME_RE = re.compile(rf"[0-9]{{1,7}}(?::{_MS}){{0,1}}|[0-9]{{1,5}}:{_MS}:{_MS}|[0-9]{{1,5}}-{_H}(?::{_MS}(?::{_MS})?)?")
TIME_HINT = ('a Slurm time limit: minutes ("90"), "HH:MM:SS", "days-HH[:MM[:SS]]" (e.g. "2-00:00:00") '
             "or INFINITE")


def max_time_problem(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return "is not a time limit"
    text = str(value)
    if text.upper() in (UNLIMITED, "UNLIMITED"):
        return None
    if not TIME_RE.fullmatch(text):
        return "is not a time limit Slurm reads"
    if not any(c not in "0:-" for c in text):
        return "lets no job run (a time limit of zero)"
    return None


def read_partitions(slurm: Reader, nodes: tuple[Node, ...]) -> tuple[Partition, ...]:
    """Either key of `slurm:`; the first partition is the default unless one says `default: true`."""
    single = slurm.text("partition", None, check=grammar.partition_problem)
    raw = slurm.take("partitions", None)
    if raw is None:
        return (Partition(name=single or "main", default=True),)
    hint = 'e.g. partitions: [{name: main, max_time: "2-00:00:00"}]'
    if single is not None:
        slurm.fail("give either partition (one partition of every node) or partitions, not both",
                   key="partitions", hint="move the name into partitions: and remove partition:")
    if not isinstance(raw, list) or not raw:
        slurm.fail("is not a list of partitions" if not isinstance(raw, list) else "is empty", key="partitions",
                   hint=hint)
    names = {n.name for n in nodes}
    result: list[Partition] = []
    for i, item in enumerate(raw):
        result.append(_partition(slurm.item("partitions", i, item), names, result, hint))
    if not any(p.default for p in result):
        result[0] = Partition(result[0].name, result[0].nodes, result[0].max_time, default=True)
    return tuple(result)


def _partition(r: Reader, names: set[str], before: list[Partition], hint: str) -> Partition:
    name = r.text("name", check=grammar.partition_problem, hint=hint)
    if any(p.name.lower() == name.lower() for p in before):
        r.fail(f"{shown(name)} is already a partition", key="name", hint="give every partition its own name")
    members = r.take("nodes", None)
    chosen: list[str] = []
    if members is not None:
        if not isinstance(members, list) or not members:
            r.fail("is not a list of node names" if not isinstance(members, list) else "is empty", key="nodes",
                   hint="list nodes of nodes:, or remove the key for every node running slurmd")
        for j, member in enumerate(members):
            if not isinstance(member, str) or member not in names:
                r.fail(f"{shown(member)} names no node", key=f"nodes[{j}]",
                       hint="use names of nodes: (" + ", ".join(sorted(names)[:8]) + ")")
            if member in chosen:
                r.fail(f"{member!r} is listed twice", key=f"nodes[{j}]")
            chosen.append(member)
    limit: Any = r.take("max_time", UNLIMITED)
    problem = max_time_problem(limit)
    if problem is not None:
        r.fail(f"{shown(limit)} {problem}", key="max_time", hint=TIME_HINT)
    default = r.flag("default", False, hint="write default: true for the partition jobs go to without -p")
    if default and any(p.default for p in before):
        r.fail("a second default partition", key="default", hint="only one partition may say default: true")
    r.done()
    max_time = UNLIMITED if str(limit).upper() in (UNLIMITED, "UNLIMITED") else str(limit)
    return Partition(name=name, nodes=tuple(chosen), max_time=max_time, default=default)
