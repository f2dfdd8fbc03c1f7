"""A 256-node inventory: every role renders, slurm.conf stays a few lines, one compute image serves all.

How long that takes is measured by `make bench` (a ratio to its 2 s budget), not asserted here.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from builder.config import Cluster, load_cluster
from tests.render import slurm_syntax
from tests.render.render_support import PROFILES, plan, text

COMPUTE = 256


def big_lab(folder: Path) -> Cluster:
    """A controller, a time server and 256 Pi 5 compute nodes node001 … node256 on a /22."""
    nodes = [{"name": "head", "role": "controller", "ip": "10.1.0.2", "model": "pi5-8gb"},
             {"name": "gps", "role": "timeserver", "ip": "10.1.0.3", "model": "pi4-4gb"}]
    nodes += [{"name": f"node{n:03d}", "role": "compute", "ip": f"10.1.{1 + (n - 1) // 200}.{1 + (n - 1) % 200}",
               "model": "pi5-8gb"} for n in range(1, COMPUTE + 1)]
    data = {
        "name": "biglab",
        "base_image": {"url": "https://example.org/raspios.img.xz", "sha256": "0" * 64,
                       "signature_url": "https://example.org/raspios.img.xz.sig",
                       "signing_key": "https://example.org/key.gpg",
                       "fingerprint": "54C3DD610D9D1B4AF82A37758738CD6B956F460C"},
        "network": {"subnet": "10.1.0.0/22", "gateway": "10.1.0.1", "dns": ["10.1.0.1"]},
        "time": {"server": "gps"},
        "slurm": {"controller": "head"},
        "nodes": nodes,
        "secrets_dir": str(folder / "secrets"),
    }
    path = folder / "biglab.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_cluster(path, profiles_dir=PROFILES)


def test_slurm_conf_of_256_nodes_is_short_and_names_every_node(tmp_path: Path) -> None:
    cluster = big_lab(tmp_path)
    conf_text = text(plan(cluster, role="controller"), "/etc/slurm/slurm.conf")
    node_lines = [ln for ln in conf_text.splitlines() if ln.startswith("NodeName=")]
    # gps, then node001-200 on 10.1.1.x and node201-256 on 10.1.2.x: the address range breaks there.
    assert node_lines == [
        "NodeName=gps NodeAddr=10.1.0.3 CPUs=4 RealMemory=3700 State=UNKNOWN",
        "NodeName=node[001-200] NodeAddr=10.1.1.[1-200] CPUs=4 RealMemory=7800 State=UNKNOWN",
        "NodeName=node[201-256] NodeAddr=10.1.2.[1-56] CPUs=4 RealMemory=7800 State=UNKNOWN",
    ]
    assert len(conf_text.splitlines()) < 60
    conf = slurm_syntax.parse(conf_text)
    assert list(conf.nodes) == ["gps"] + [f"node{n:03d}" for n in range(1, COMPUTE + 1)]
    assert conf.nodes["node256"]["NodeAddr"] == "10.1.2.56"
    assert conf.partitions["main"]["Nodes"] == "gps,node[001-256]"


def test_one_compute_image_of_256_nodes_knows_each_of_them(tmp_path: Path) -> None:
    cluster = big_lab(tmp_path)
    for role in cluster.roles:
        plan(cluster, role=role)  # every role renders
    inventory = json.loads(text(plan(cluster, role="compute"), "/etc/clusterbake/inventory.json"))
    assert [n["name"] for n in inventory["nodes"]] == [f"node{n:03d}" for n in range(1, COMPUTE + 1)]
    hosts = text(plan(cluster, role="compute"), "/etc/hosts")
    assert "10.1.2.56" in hosts and "node256" in hosts
