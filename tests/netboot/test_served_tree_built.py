"""The served tree made by `clusterbake netboot` from a real compute role image (the stand-in base, cached layers).

Judged as files, importing nothing from the builder to read them: the TFTP folders hold the image's
boot partition (read with mtools) but for cmdline.txt, and the shared root is the image's root (read
with debugfs) but for the diskless changes, with nothing of any one node in it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from builder.build import build_job, overlays_dir, plan_job, profiles_dir
from builder.config import load_cluster
from builder.netboot.served_tree import served_tree
from builder.paths import cache_root, repo_root
from tests.built_images.image_reader import ImageReader

pytestmark = [pytest.mark.slow, pytest.mark.root]


def test_the_served_tree_is_the_compute_image_booted_over_nfs(tmp_path: Path, served_base: dict[str, str]) -> None:
    data = yaml.safe_load((repo_root() / "cluster.yaml").read_text())
    data["base_image"] = served_base
    data["secrets_dir"] = str(tmp_path / "secrets")
    for node, serial, mac in (("node01", "10000000abcdef01", "2c:cf:67:00:00:01"),
                              ("node02", None, "2c:cf:67:00:00:02")):
        entry = next(n for n in data["nodes"] if n["name"] == node)
        entry.update(boot="network", mac=mac, **({"serial": serial} if serial else {}))
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(data))
    cluster = load_cluster(tmp_path / "cluster.yaml", profiles_dir=profiles_dir())
    job = plan_job(cluster, [("compute", None)], out_dir=tmp_path / "out", cache=cache_root())
    [job_image] = build_job(job)
    image = job_image.path
    tree = served_tree(cluster, image, tmp_path / "netboot", overlays_dir=overlays_dir())
    assert sorted(os.listdir(tree / "srv/netboot")) == ["2c-cf-67-00-00-02", "abcdef01"]
    assert not list(tmp_path.glob(".netboot.*"))          # staging renamed into place, nothing left beside it

    built = ImageReader(image)
    boot = tree / "srv/netboot/abcdef01"
    assert set(os.listdir(boot)) == built.boot_names(), "the TFTP folder is the image's boot partition"
    for name in sorted(built.boot_names()):
        if (boot / name).is_file() and name != "cmdline.txt":
            assert (boot / name).read_bytes() == built.boot_read(name), name
    assert "dtoverlay=gpio-shutdown,debounce=3000" in (boot / "config.txt").read_text().splitlines()
    cmdline = (boot / "cmdline.txt").read_text().split()
    [root] = (tree / "srv/netroot/compute").iterdir()       # one version: the tree's own
    assert "root=/dev/nfs" in cmdline and f"nfsroot=10.0.0.20:/srv/netroot/compute/{root.name},v3,tcp" in cmdline
    assert "ro" in cmdline and "rw" not in cmdline
    assert "cgroup_enable=memory" in cmdline and not [a for a in cmdline if a.startswith("root=PARTUUID")]

    assert (root / "etc/machine-id").read_text().strip() == "uninitialized"    # every node's first boot is its own
    assert not list(root.glob("etc/ssh/ssh_host_*"))
    assert not (root / "var/lib/clusterbake/identity").exists()                # identity found at each boot
    inventory = yaml.safe_load((root / "etc/clusterbake/inventory.json").read_text())
    assert {"node01", "node02"} <= {n["name"] for n in inventory["nodes"]}
    assert (root / "etc/systemd/system/sysinit.target.wants/clusterbake-identity.service").is_symlink()
    assert (root / "etc/munge/munge.key").stat().st_mode & 0o777 == 0o400      # the cluster's key, not a node's
    assert (root / "usr/local/lib/clusterbake/netboot-init").stat().st_mode & 0o777 == 0o755
    assert (root / "usr/sbin/mount.nfs4").exists() or (root / "sbin/mount.nfs4").exists()
    # The copy keeps owners and modes as the image has them (debugfs reads the image's own inode).
    munge_key = built.stat("/etc/munge/munge.key")
    assert munge_key is not None and (root / "etc/munge/munge.key").stat().st_uid == munge_key.uid
    subprocess.run(["dash", "-n", str(root / "usr/local/lib/clusterbake/netboot-init")], check=True)
