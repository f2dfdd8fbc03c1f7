"""Issue item 5: Slurm's configuration, on the controller only (configless), and the right daemon per role."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from builder.config import load_cluster
from builder.image import open_image
from builder.paths import repo_root
from builder.render import render_plan
from tests.built_images.conftest import NODES, Lab, lab_data, write_cluster
from tests.render.slurm_syntax import expand

pytestmark = [pytest.mark.slow, pytest.mark.root]

# Slurm's own keys are case-insensitive; these tests compare them as written by the template.


def _settings(text: str) -> list[tuple[str, str]]:
    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            key, sep, value = line.partition("=")
            assert sep, f"not KEY=VALUE: {raw!r}"
            out.append((key, value))
    return out


def test_configless_slurm_conf_and_cgroup_conf_are_on_the_controller_only(lab: Lab) -> None:
    """Adding a node changes the controller's files only: every slurmd fetches them from slurmctld."""
    controller = lab.roles["controller"]
    assert ("SlurmctldParameters", "enable_configless") in _settings(controller.text("/etc/slurm/slurm.conf"))
    for name in ("/etc/slurm/slurm.conf", "/etc/slurm/cgroup.conf"):
        info = controller.stat(name)
        assert info is not None and info.mode == 0o644 and info.uid == 0
        for image in lab.all:
            assert image is controller or not image.exists(name), f"{image.path.name} carries {name}"


def test_every_slurmd_image_names_the_controller_as_its_configuration_server(lab: Lab) -> None:
    for image in (lab.roles["auxiliary"], lab.roles["compute"], lab.node, lab.nosecrets):
        defaults = _settings(image.text("/etc/default/slurmd"))
        assert dict(defaults)["SLURMD_OPTIONS"] == '"--conf-server head:6817"', image.path.name
        # Debian's unit reads that file and starts without a local slurm.conf.
        unit = image.unit_file("slurmd.service")
        assert "EnvironmentFile=-/etc/default/slurmd" in unit and "$SLURMD_OPTIONS" in unit, image.path.name
        assert not [line for line in unit.splitlines() if line.startswith("ConditionPathExists=/etc/slurm")]


def test_slurm_conf_names_the_controller_the_nodes_and_a_default_partition(lab: Lab) -> None:
    text = lab.roles["controller"].text("/etc/slurm/slurm.conf")
    settings = _settings(text)
    single = {k: v for k, v in settings if k not in ("NodeName", "PartitionName")}
    assert single["ClusterName"] == "rolelab"
    assert single["SlurmctldHost"] == "head(10.9.0.10)"
    assert single["SelectType"] == "select/cons_tres"
    assert single["AuthType"] == "auth/munge"
    nodes = {}
    for key, value in settings:
        if key == "NodeName":
            names, *rest = value.split()
            fields = dict(item.split("=", 1) for item in rest)
            for name, addr in zip(expand(names), expand(fields["NodeAddr"]), strict=True):
                nodes[name] = {**fields, "NodeAddr": addr}
    # slurmd runs on the compute nodes and on the time server, which also computes.
    assert sorted(nodes) == ["c1", "c2", "gps"]
    by_name = {n["name"]: n for n in NODES}
    for name, fields in nodes.items():
        assert fields["NodeAddr"] == by_name[name]["ip"]
        assert int(fields["CPUs"]) == 4 and int(fields["RealMemory"]) > 0
    assert nodes["c2"]["RealMemory"] == "15800" and nodes["gps"]["RealMemory"] == "3700"
    partitions = [v for k, v in settings if k == "PartitionName"]
    assert len(partitions) == 1
    name, *rest = partitions[0].split()
    fields = dict(item.split("=", 1) for item in rest)
    assert fields["Default"] == "YES" and sorted(expand(fields["Nodes"])) == ["c1", "c2", "gps"]
    cgroup = dict(_settings(lab.roles["controller"].text("/etc/slurm/cgroup.conf")))
    assert cgroup["CgroupPlugin"] == "cgroup/v2" and cgroup["ConstrainRAMSpace"] == "yes"


def test_slurmctld_on_the_controller_only_slurmd_on_every_compute_image(lab: Lab) -> None:
    controller, gps, compute = lab.roles["controller"], lab.roles["auxiliary"], lab.roles["compute"]
    assert controller.enabled("slurmctld.service") and not controller.enabled("slurmd.service")
    for image in (gps, compute, lab.node, lab.nosecrets):
        assert image.enabled("slurmd.service"), image.path.name
        assert not image.enabled("slurmctld.service")
        assert not image.exists("/usr/sbin/slurmctld")
    assert controller.exists("/usr/sbin/slurmctld") and controller.exists("/usr/bin/sinfo")
    state = controller.stat("/var/spool/slurmctld")
    slurm = controller.accounts()["slurm"]
    assert state is not None and (state.type, state.mode, state.uid) == ("directory", 0o700, slurm.uid)


def test_slurmctld_can_write_its_pid_log_and_state_as_the_user_its_unit_runs_as(lab: Lab) -> None:
    controller = lab.roles["controller"]
    unit = dict(line.split("=", 1) for line in controller.unit_file("slurmctld.service").splitlines()
                if "=" in line and not line.startswith("#"))
    settings = dict(_settings(controller.text("/etc/slurm/slurm.conf")))
    user = controller.accounts()[unit.get("User", "root")]
    assert user.name == settings["SlurmUser"] == "slurm"
    assert settings["SlurmctldPidFile"].startswith(f"/run/{unit['RuntimeDirectory']}/"), \
        "systemd makes /run/<RuntimeDirectory> for the unit's user; /run itself is root's"
    for key in ("SlurmctldLogFile", "StateSaveLocation"):
        folder = settings[key] if key == "StateSaveLocation" else settings[key].rsplit("/", 1)[0]
        info = controller.stat(folder)
        assert info is not None and info.type == "directory" and info.uid == user.uid, f"{key}: {folder} {info}"


def test_slurms_own_parser_expands_the_hostlists_of_a_256_node_slurm_conf(lab: Lab, tmp_path: Path) -> None:
    """scontrol of the compute image (Slurm's own parser, arm64 under qemu) reads the slurm.conf the
    builder renders for 256 compute nodes and expands each hostlist to the cluster file's nodes."""
    names = [f"n{n:03d}" for n in range(1, 257)]
    addrs = [f"10.8.{n // 200}.{10 + n % 200}" for n in range(1, 257)]
    base = {"url": "https://example.org/x.img.xz", "sha256": "0" * 64, "signature_url": "https://example.org/x.sig",
            "signing_key": "https://example.org/k.gpg", "fingerprint": "54C3DD610D9D1B4AF82A37758738CD6B956F460C"}
    data = lab_data(base, tmp_path / "secrets")
    data["network"] = {"subnet": "10.8.0.0/22", "gateway": "10.8.0.1", "dns": ["10.8.0.1"]}
    data["nodes"] = [{"name": "head", "role": "controller", "ip": "10.8.3.10", "model": "pi5-8gb"},
                     {"name": "gps", "role": "auxiliary", "ip": "10.8.3.20", "model": "pi4-4gb"},
                     *({"name": n, "role": "compute", "ip": a, "model": "pi5-8gb"}
                       for n, a in zip(names, addrs, strict=True))]
    cluster = load_cluster(write_cluster(tmp_path / "big.yaml", data), profiles_dir=repo_root() / "profiles")
    # Configless: the controller's slurm.conf, which every slurmd fetches (and parses with this scontrol).
    plan = render_plan(cluster, role="controller", secrets=False, profiles_dir=repo_root() / "profiles",
                       overlays_dir=repo_root() / "overlays")
    conf = next(f.data for f in plan.files if f.path == "/etc/slurm/slurm.conf")
    lines = [line.split() for line in conf.decode().splitlines() if line.startswith(("NodeName=", "PartitionName="))]
    assert len(lines) == 4   # gps, n[001-199], n[200-256] (the addresses jump to 10.8.1.10), the partition
    image = tmp_path / "compute.img"
    subprocess.run(["cp", "--sparse=always", "--reflink=auto", lab.roles["compute"].path, image], check=True)
    env = {"SLURM_CONF": "/tmp/slurm-256.conf"}   # scontrol parses the whole file before anything else
    expanded: dict[str, list[str]] = {"NodeName": [], "NodeAddr": [], "Nodes": []}
    with open_image(image) as img:
        img.write_file("/tmp/slurm-256.conf", conf, mode=0o644)
        with img.chroot() as chroot:
            for fields in lines:
                for key, value in (field.split("=", 1) for field in fields):
                    if key in expanded:
                        expanded[key] += chroot.output(["scontrol", "show", "hostnames", value], env=env).split()
    assert expanded["NodeName"] == ["gps", *names] and expanded["Nodes"] == ["gps", *names]
    assert expanded["NodeAddr"] == ["10.8.3.20", *addrs]
