"""The mixed-architecture proof: a Proxmox LXC controller (amd64, native) beside the arm64 Pis.

The test lab of test_cluster.py, but `head` is `platform: proxmox-lxc`: its template is built
with `build --node head`, unpacked as `pct create` would unpack it, and booted as a namespaced
node beside the time server and compute images (arm64 under qemu-user) on the same bridge.
Only head's image changes: the cluster name, nodes and secrets are the lab's, so the Pi images
are the lab's own. Departures from a real boot are those of overrides.py, plus Proxmox's part:
the container's address (`pct create --net0 ip=`) is set by the test.
"""

from __future__ import annotations

import dataclasses
import subprocess
import time
from pathlib import Path

import pytest

from builder.build import build_job, plan_job
from builder.paths import cache_root
from tests.cluster.conftest import Lab, cluster_yaml, write_cluster
from tests.cluster.test_cluster import boot_and_check
from tests.reports import report

pytestmark = [pytest.mark.slow, pytest.mark.root]

AMD64 = 0x3E   # ELF e_machine of x86-64


def container_lab(lab: Lab, folder: Path) -> tuple[Lab, Path]:
    """The lab with head as a container: (that lab, head's template)."""
    data = cluster_yaml(lab.base_image, lab.cluster.secrets_dir)
    head = next(n for n in data["nodes"] if n["name"] == "head")  # type: ignore[attr-defined]
    head.pop("model", None)
    head["platform"] = "proxmox-lxc"
    cluster = write_cluster(folder, data)
    started = time.monotonic()
    [built] = build_job(plan_job(cluster, [(None, "head")], out_dir=folder / "out", cache=cache_root()))
    template = built.path
    report("cluster test report", f"container template {template.name}: {template.stat().st_size >> 20} MiB, "
                   f"built in {time.monotonic() - started:.0f}s")
    return dataclasses.replace(lab, cluster=cluster), template


def test_an_amd64_container_controls_the_arm64_pis(testlab: Lab, tmp_path: Path) -> None:
    lab, template = container_lab(testlab, tmp_path / "lxc")
    root = tmp_path / "head-root"
    root.mkdir()
    subprocess.run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", root, "-xpf", template],
                   check=True)
    header = (root / "bin/sh").resolve().read_bytes()[:20] if (root / "bin/sh").exists() else b""
    assert int.from_bytes(header[18:20], "little") == AMD64, "head's /bin/sh is not an amd64 binary"
    problems, summary = boot_and_check(lab, tmp_path / "boot", {"head": root})
    report("cluster test report", "mixed architectures (head: proxmox-lxc, amd64):\n" + summary)
    assert not problems, "\n".join(problems)
