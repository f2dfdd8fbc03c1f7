"""Slurm hostlists as clusterbake writes them; slurm_syntax.expand (written apart) reads them back."""

from __future__ import annotations

from builder.render.hostlist import hostlist, node_groups
from tests.render import slurm_syntax


def _node(name: str, ip: str, cpus: int = 4, memory_mb: int = 7800) -> dict[str, object]:
    return {"name": name, "ip": ip, "cpus": cpus, "memory_mb": memory_mb}


def test_consecutive_names_become_one_range_and_order_is_kept() -> None:
    names = ["gps", "node01", "node02", "node03", "head", "c8", "c9", "c10", "x099", "x100"]
    expression = hostlist(names)
    assert expression == "gps,node[01-03],head,c[8-10],x[099-100]"
    assert slurm_syntax.expand(expression) == names


def test_padding_that_slurm_would_not_reproduce_breaks_the_range() -> None:
    # node[9-010] is no hostlist: "9" and "010" cannot share one width.
    assert hostlist(["node9", "node010"]) == "node9,node010"
    assert hostlist(["a1", "b2", "a3"]) == "a1,b2,a3"
    assert hostlist(["n1", "n3"]) == "n1,n3"


def test_node_groups_need_neighbouring_names_addresses_and_the_same_hardware() -> None:
    nodes = [_node("n1", "10.0.0.1"), _node("n2", "10.0.0.2"), _node("n3", "10.0.0.3", memory_mb=15800),
             _node("n4", "10.0.0.9"), _node("n5", "10.0.0.10"), _node("n6", "10.0.1.11")]
    groups = node_groups(nodes)
    assert [(g["names"], g["addrs"], g["memory_mb"]) for g in groups] == [
        ("n[1-2]", "10.0.0.[1-2]", 7800), ("n3", "10.0.0.3", 15800), ("n[4-5]", "10.0.0.[9-10]", 7800),
        ("n6", "10.0.1.11", 7800)]
    expanded = [(name, addr) for g in groups
                for name, addr in zip(slurm_syntax.expand(g["names"]), slurm_syntax.expand(g["addrs"]), strict=True)]
    assert expanded == [(n["name"], n["ip"]) for n in nodes]
