"""The served tree: one TFTP folder per diskless node, one shared read-only root, one state folder per node."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder.config import Cluster
from builder.errors import InputError
from builder.netboot.boot_files import netboot_cmdline
from builder.netboot.served_tree import require_diskless, write_served_tree
from builder.netboot.shared_root import diskless_fstab
from tests.netboot.tree_support import FIRMWARE, ROOT, fake_boot, fake_root, netboot_cluster

VERSION = "20261204T120000Z"
SHARED = f"srv/netroot/compute/{VERSION}"


@pytest.fixture
def cluster(tmp_path: Path, data: dict) -> Cluster:  # type: ignore[type-arg]
    del next(n for n in data["nodes"] if n["name"] == "node02")["serial"]    # node02: known by its MAC only
    return netboot_cluster(tmp_path, data)


@pytest.fixture
def tree(tmp_path: Path, cluster: Cluster) -> Path:
    dest = tmp_path / "served"
    boot = fake_boot(cluster, tmp_path / "boot")
    root = fake_root(dest / SHARED)
    write_served_tree(cluster, boot=boot, root=root, dest=dest, overlays_dir=ROOT / "overlays")
    return dest


def test_each_diskless_node_has_its_folder_where_the_bootloader_asks(tree: Path) -> None:
    assert sorted(os.listdir(tree / "srv/netboot")) == ["2c-cf-67-00-00-02", "abcdef01"]
    for folder in ("abcdef01", "2c-cf-67-00-00-02"):
        served = {p.relative_to(tree / "srv/netboot" / folder).as_posix()
                  for p in (tree / "srv/netboot" / folder).rglob("*") if p.is_file()}
        assert set(FIRMWARE) | {"config.txt", "cmdline.txt"} <= served, folder
        assert "node.txt" not in served        # a card's own choice is never served


def test_config_txt_is_the_roles_with_the_power_button(tree: Path) -> None:
    config = (tree / "srv/netboot/abcdef01/config.txt").read_text()
    assert "dtoverlay=gpio-shutdown,debounce=3000" in config.splitlines()
    assert "auto_initramfs=1" in config.splitlines()


def test_cmdline_mounts_the_shared_root_over_nfs_and_names_the_nodes_state(tree: Path) -> None:
    one = (tree / "srv/netboot/abcdef01/cmdline.txt").read_text()
    two = (tree / "srv/netboot/2c-cf-67-00-00-02/cmdline.txt").read_text()
    assert one == ("console=serial0,115200 console=tty1 cgroup_enable=memory root=/dev/nfs "
                   f"nfsroot=10.0.0.20:/srv/netroot/compute/{VERSION},v3,tcp ro ip=dhcp rootwait panic=10 "
                   "init=/usr/local/lib/clusterbake/netboot-init clusterbake.state=10.0.0.20:/srv/netstate/node01\n")
    assert two == one.replace("/srv/netstate/node01", "/srv/netstate/node02")


def test_the_firmware_is_stored_once(tree: Path) -> None:
    for name in FIRMWARE:
        one, two = (tree / "srv/netboot" / f / name for f in ("abcdef01", "2c-cf-67-00-00-02"))
        assert one.stat().st_ino == two.stat().st_ino, name
    assert (tree / "srv/netboot/abcdef01/cmdline.txt").stat().st_nlink == 1


def test_the_shared_root_has_no_card_to_wait_for_and_boots_through_the_netboot_init(tree: Path) -> None:
    root = tree / SHARED
    active = [line.split()[1] for line in (root / "etc/fstab").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert active == ["/proc"]
    init = root / "usr/local/lib/clusterbake/netboot-init"
    assert init.stat().st_mode & 0o777 == 0o755
    subprocess.run(["dash", "-n", str(init)], check=True)       # the node's /bin/sh is dash
    keep = root / "usr/local/lib/clusterbake/netboot-keep"
    subprocess.run(["dash", "-n", str(keep)], check=True)
    wants = root / "etc/systemd/system/multi-user.target.wants/clusterbake-netboot-state.service"
    assert os.readlink(wants) == "/etc/systemd/system/clusterbake-netboot-state.service"
    # The role's presets as the image has them: no first boot applies them on a diskless node (netboot-init
    # makes its machine-id), and `apply` compares the file with the role's.
    preset = root / "etc/systemd/system-preset/00-clusterbake.preset"
    assert preset.read_text() == "enable slurmd.service\ndisable *\n"
    for mountpoint in ("var/lib/clusterbake/netboot/rw", "var/lib/clusterbake/netboot/root",
                       "var/lib/clusterbake/state"):
        assert (root / mountpoint).is_dir(), mountpoint


def test_networkmanager_leaves_the_root_carrying_interface_to_the_kernel(tree: Path) -> None:
    root = tree / SHARED
    conf = (root / "etc/NetworkManager/conf.d/90-clusterbake-netboot.conf").read_text().splitlines()
    assert conf[-2:] == ["[keyfile]", "unmanaged-devices=interface-name:eth0"]
    assert [line for line in (root / "etc/resolv.conf").read_text().splitlines() if not line.startswith("#")] == [
        "nameserver 10.0.0.1"]
    # systemd-networkd, started on the first VM boot from the kernel's ip=dhcp, took the interface over and the
    # node lost its root (2026-12-04): masked, with every way to start it.
    for unit in ("systemd-networkd.service", "systemd-networkd.socket", "systemd-network-generator.service"):
        assert os.readlink(root / "etc/systemd/system" / unit) == "/dev/null", unit


def test_nothing_per_node_is_in_the_shared_root(tree: Path, cluster: Cluster) -> None:
    root = tree / SHARED
    assert (root / "etc/machine-id").read_text() == "uninitialized\n"
    assert not list((root / "etc").glob("ssh/ssh_host_*"))
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            text = path.read_bytes()
            for node in ("node01", "node02", "abcdef01", "2c:cf:67:00:00:02"):
                assert node.encode() not in text, (path, node)


def test_each_node_has_a_private_state_folder(tree: Path) -> None:
    for node in ("node01", "node02"):
        state = tree / "srv/netstate" / node
        assert state.is_dir() and state.stat().st_mode & 0o777 == 0o700 and not os.listdir(state)
    assert not (tree / "srv/netstate/node03").exists()


def test_the_netboot_init_persists_what_the_readme_says() -> None:
    init = (ROOT / "overlays/netboot-root/usr/local/lib/clusterbake/netboot-init").read_text()
    for kept, bound in (("munge", "/var/lib/munge"), ("slurmd", "/var/lib/slurm/slurmd"),
                        ("journal", "/var/log/journal")):
        assert f'mount -n --bind "$keep/{kept}" "$new{bound}"' in init, bound
    assert '"$new/etc/machine-id"' in init and '"$new/etc/ssh/"' in init
    # The machine-id made before systemd starts, so systemd's first boot (presets applied) never happens.
    made = init.index('>"$keep/machine-id.new"')
    assert made < init.index('cp "$keep/machine-id" "$new/etc/machine-id"') < init.index("exec chroot . /sbin/init")
    # The file server down: waited for, never a half-configured boot.
    assert 'until mount -n -t nfs4 -o rw,hard "$state"' in init


def test_a_cluster_without_diskless_nodes_has_no_served_tree(tmp_path: Path) -> None:
    from builder.config import load_cluster

    cluster = load_cluster(ROOT / "cluster.yaml", profiles_dir=ROOT / "profiles")
    with pytest.raises(InputError) as caught:
        require_diskless(cluster)
    assert caught.value.one_line().startswith("cluster.yaml: nodes: no node boots from the network")


def test_fstab_keeps_what_is_not_the_card() -> None:
    text = "UUID=x /data ext4 defaults 0 2\n# / on the card\nPARTUUID=a-02  /  ext4 defaults 0 1\n"
    assert diskless_fstab(text).splitlines() == [
        "UUID=x /data ext4 defaults 0 2", "# / on the card",
        "# diskless (clusterbake netboot): no card; was: PARTUUID=a-02  /  ext4 defaults 0 1"]


def test_cmdline_drops_every_argument_about_the_card() -> None:
    image = "console=tty1 root=PARTUUID=x-02 rootfstype=ext4 fsck.repair=yes rootwait resize init=/x rw quiet\n"
    assert netboot_cmdline(image, server="10.0.0.20", root="/srv/netroot/compute/v", node="n1").split()[:2] == [
        "console=tty1", "quiet"]


def test_make_netboot_without_diskless_nodes_stops_before_building(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "builder", "netboot", "--cluster", str(ROOT / "cluster.yaml"),
                             "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), "--offline"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "clusterbake: error: cluster.yaml: nodes: no node boots from the network (fix: mark compute nodes boot: "
        "network (with serial: or mac:), or netboot: {roles: [compute]})")
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()
