"""What the netboot tests share: the shipped cluster file with two diskless compute nodes."""

from __future__ import annotations

import pytest
import yaml

from builder.paths import repo_root


@pytest.fixture
def data() -> dict:
    """The shipped cluster.yaml, node01 and node02 marked `boot: network` with serial and MAC."""
    data = yaml.safe_load((repo_root() / "cluster.yaml").read_text())
    for node, serial, mac in (("node01", "10000000abcdef01", "2c:cf:67:00:00:01"),
                              ("node02", "10000000abcdef02", "2c:cf:67:00:00:02")):
        [entry] = [n for n in data["nodes"] if n["name"] == node]
        entry.update(boot="network", serial=serial, mac=mac)
    return data
