"""A Proxmox LXC node's plan: the same cluster-wide files as the Pis, none of the board's parts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.config import Cluster, load_cluster
from builder.container import pct_create_command
from builder.errors import InputError
from builder.render import RenderPlan
from tests.render.render_support import PROFILES, SMALL, file, paths, plan, private, text

CONTAINER_BOSS = "  - {name: boss,  role: controller, ip: 192.168.7.2, platform: proxmox-lxc, cpus: 4}"


@pytest.fixture
def mixed(tmp_path: Path) -> Cluster:
    """The small lab with its controller `boss` as a container."""
    boards = [line for line in SMALL.splitlines() if "name: boss," in line]
    assert len(boards) == 1
    path = tmp_path / "mixed.yaml"
    path.write_text(SMALL.replace(boards[0], CONTAINER_BOSS))
    return private(load_cluster(path, profiles_dir=PROFILES), tmp_path)


def test_a_container_cannot_be_the_door(tmp_path: Path, mixed: Cluster) -> None:
    # The platform record says so, at planning: the cluster file itself is well formed.
    text = mixed.source.read_text().replace("gateway: 192.168.7.1\n  dns: [192.168.7.1, 9.9.9.9]",
                                            "gateway: 192.168.7.2\n  dns: [192.168.7.2]")
    path = tmp_path / "door.yaml"
    path.write_text(text + "access: {node: boss, uplink: {interface: eth1}}\n")
    cluster = private(load_cluster(path, profiles_dir=PROFILES), tmp_path)
    with pytest.raises(InputError) as err:
        plan(cluster, node="boss")
    assert str(err.value) == ("door.yaml: access.node: boss is a proxmox-lxc container; the door needs a board with a "
                              "second interface")
    assert err.value.hint == "choose a Raspberry Pi node (e.g. the auxiliary node)"


@pytest.fixture
def boss(mixed: Cluster) -> RenderPlan:
    return plan(mixed, node="boss")


def test_cluster_wide_files_are_the_pis_own(mixed: Cluster, boss: RenderPlan, small: Cluster) -> None:
    pi = plan(mixed, node="c1")
    for path in ("/etc/munge/munge.key", "/home/alice/.ssh/authorized_keys", "/home/bob/.ssh/authorized_keys"):
        assert file(boss, path).data == file(pi, path).data, path
    # Configless: the container's slurm.conf is the one a Pi controller of the same lab carries; c1 fetches it.
    pi_controller = plan(small, role="controller")
    for path in ("/etc/slurm/slurm.conf", "/etc/slurm/cgroup.conf"):
        assert file(boss, path).data == file(pi_controller, path).data, path
    assert "/etc/slurm/slurm.conf" not in paths(pi) and "/etc/default/slurmd" in paths(pi)
    # /etc/hosts: the same cluster lines; only Debian's own-name alias at the end names the node.
    hosts = [text(p, "/etc/hosts").split("# Debian's alias")[0] for p in (boss, pi)]
    assert hosts[0] == hosts[1] and "192.168.7.2\tboss.lab.example boss\n" in hosts[0]
    key = file(boss, "/etc/munge/munge.key")
    assert (key.mode, key.owner, key.group) == (0o400, "munge", "munge")
    assert "SlurmctldHost=boss(192.168.7.2)" in text(boss, "/etc/slurm/slurm.conf")
    assert text(boss, "/etc/hostname") == "boss\n"


def test_the_board_parts_are_left_out(boss: RenderPlan) -> None:
    assert not [p for p in paths(boss) if p.startswith(("/boot/", "/etc/cloud/", "/etc/NetworkManager/",
                                                        "/etc/clusterbake/inventory", "/etc/chrony/"))]
    assert "/usr/local/lib/clusterbake/identity.py" not in paths(boss)
    assert "/etc/systemd/system/clusterbake-munge-key.service" not in paths(boss)
    assert (boss.boot_files, boss.config_txt_lines, boss.config_txt_boards, boss.cmdline_args) == ((), (), (), ())
    assert not boss.remove_serial_console


def test_no_time_daemon_and_no_board_services(boss: RenderPlan) -> None:
    assert "chrony" not in boss.packages
    assert {"slurmctld", "munge", "slurm-client"} <= set(boss.packages)
    assert set(boss.enable) == {"ssh.service", "munge.service", "clusterbake-ssh-hostkeys.service",
                                "slurmctld.service", "prometheus-node-exporter.service"}   # issue 15: every node
    presets = text(boss, "/etc/systemd/system-preset/00-clusterbake.preset")
    assert "chrony" not in presets and "identity" not in presets and "userconfig" not in presets
    assert boss.mask == ()


def test_proxmox_leaves_the_rendered_hosts_file_alone(boss: RenderPlan) -> None:
    assert "/etc/.pve-ignore.hosts" in paths(boss)


def test_the_pis_keep_their_board_parts(mixed: Cluster) -> None:
    pi = plan(mixed, node="c1")
    assert "/etc/NetworkManager/system-connections/eth0.nmconnection" in paths(pi)
    assert "/etc/chrony/chrony.conf" in paths(pi) and "chrony" in pi.packages
    assert "/etc/.pve-ignore.hosts" not in paths(pi)
    assert pi.config_txt_lines and pi.boot_files


def test_a_role_of_containers_only_has_no_role_image(mixed: Cluster) -> None:
    with pytest.raises(InputError) as err:
        plan(mixed, role="controller")
    assert "mixed.yaml: nodes: every node of role 'controller' is a container (boss)" in str(err.value)
    assert "make image NODE=boss" in (err.value.hint or "")


def test_a_role_image_serves_only_the_boards_of_its_role(tmp_path: Path) -> None:
    path = tmp_path / "mixed.yaml"
    path.write_text(SMALL.rstrip().split("users:")[0]
                    + "  - {name: l1, role: login, ip: 192.168.7.41, model: pi4-4gb}\n"
                    + "  - {name: l2, role: login, ip: 192.168.7.42, platform: proxmox-lxc}\n")
    cluster = private(load_cluster(path, profiles_dir=PROFILES), tmp_path)
    inventory = json.loads(text(plan(cluster, role="login"), "/etc/clusterbake/inventory.json"))
    assert [n["name"] for n in inventory["nodes"]] == ["l1"]


def test_the_pct_create_line(mixed: Cluster) -> None:
    line = pct_create_command(mixed, mixed.node("boss"))
    assert line == ("pct create $(pvesh get /cluster/nextid) local:vztmpl/minilab-boss.tar.zst --hostname boss "
                    "--ostype debian --unprivileged 1 --features nesting=1 "
                    "--net0 name=eth0,bridge=vmbr0,ip=192.168.7.2/24,gw=192.168.7.1 --cores 4 --memory 2048 "
                    "--rootfs local-lvm:8 --onboot 1 --nameserver '192.168.7.1 9.9.9.9' --searchdomain lab.example")


def test_every_platform_names_its_artefact_and_one_builder_makes_each() -> None:
    from builder.build import BUILDERS
    from builder.render.platform import PLATFORMS, SD_CARD_IMAGE

    assert {platform.artefact for platform in PLATFORMS.values()} == set(BUILDERS)
    assert [name for name, p in PLATFORMS.items() if p.artefact == SD_CARD_IMAGE] == ["raspberry-pi"]
    assert BUILDERS[SD_CARD_IMAGE].on_verified_base
