"""Render plans for every role and node of the reference lab and a small one: contents, owners, modes."""

from __future__ import annotations

import configparser
import dataclasses
import json
import logging
import posixpath
import shutil
from pathlib import Path

import pytest
import yaml

from builder.config import Cluster, load_cluster
from builder.errors import InputError
from builder.render import render_plan
from builder.render.gpio import with_button_hold
from tests.render import slurm_syntax
from tests.render.render_support import BOB_KEYS, OVERLAYS, PROFILES, SMALL, file, paths, plan, private, text

ROLES = ["controller", "compute", "login", "timeserver", "auxiliary"]
KEYFILE = "/etc/NetworkManager/system-connections/eth0.nmconnection"
IDENTITY = {"/etc/clusterbake/inventory.json", "/usr/local/lib/clusterbake/identity.py",
            "/etc/systemd/system/clusterbake-identity.service"}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("which", ["reference", "small"])
def test_every_role_renders_a_sound_plan(request: pytest.FixtureRequest, which: str, role: str) -> None:
    cluster: Cluster = request.getfixturevalue(which)
    p = plan(cluster, role=role)
    assert p.role == role and p.node is None
    listed = [f.path for f in p.files]
    assert listed == sorted(set(listed))                     # unique, parents before children
    for f in p.files:
        assert f.path.startswith("/") and posixpath.normpath(f.path) == f.path, f.path
        assert not f.path.startswith("/boot/firmware/")     # those are boot_files
    assert paths(p) >= IDENTITY
    assert "clusterbake-identity.service" in p.enable
    assert {"/etc/hostname", KEYFILE}.isdisjoint(paths(p))   # found at first boot, in the inventory
    assert "127.0.1.1" not in text(p, "/etc/hosts")
    assert "/etc/ssh/ssh_host_*" in p.remove
    assert p.grow_mib > 0
    assert "clusterbake.txt" in dict(p.boot_files)


SLURM_FILES = {"/etc/slurm/slurm.conf", "/etc/slurm/cgroup.conf"}
CARRY_SLURM_CONF = {"controller", "login"}   # slurmctld's node, and client commands without a slurmd


def test_configless_only_the_controller_and_login_nodes_carry_slurm_conf(small: Cluster, reference: Cluster) -> None:
    """Adding a node changes the controller's files only: every slurmd fetches them (configless)."""
    for cluster in (small, reference):
        plans = [plan(cluster, role=r) for r in ROLES] + [plan(cluster, node=n.name) for n in cluster.nodes]
        plans.append(plan(cluster, role="compute", secrets=False))
        confs = set()
        for p in plans:
            carries = paths(p) >= SLURM_FILES
            assert carries == (p.role in CARRY_SLURM_CONF), (p.role, p.node)
            assert not carries or "SlurmctldParameters=enable_configless\n" in text(p, "/etc/slurm/slurm.conf")
            confs |= {text(p, "/etc/slurm/slurm.conf")} if carries else set()
            assert carries or not SLURM_FILES & paths(p), (p.role, p.node)
        assert len(confs) == 1


@pytest.mark.parametrize("role", ROLES)
def test_every_slurmd_asks_the_controller_for_its_configuration(small: Cluster, role: str) -> None:
    p = plan(small, role=role)
    if "slurmd.service" not in p.enable:
        assert "/etc/default/slurmd" not in paths(p)
        return
    defaults = file(p, "/etc/default/slurmd")
    assert (defaults.mode, defaults.owner) == (0o644, "root")
    options = [line for line in defaults.data.decode().splitlines() if line.startswith("SLURMD_OPTIONS=")]
    assert options == ['SLURMD_OPTIONS="--conf-server boss:6817"']


def test_slurm_conf_of_the_small_lab(small: Cluster) -> None:
    conf = slurm_syntax.parse(text(plan(small, role="login"), "/etc/slurm/slurm.conf"))
    s = conf.settings
    assert s["ClusterName"] == "minilab"
    assert s["SlurmctldHost"] == "boss(192.168.7.2)"
    assert s["SelectType"] == "select/cons_tres"
    assert (s["AuthType"], s["SlurmUser"], s["ProctrackType"]) == ("auth/munge", "slurm", "proctrack/cgroup")
    assert s["TaskPlugin"] == "task/cgroup,task/affinity"
    assert s["ReturnToService"] == "2"
    assert (s["StateSaveLocation"], s["SlurmdSpoolDir"]) == ("/var/spool/slurmctld", "/var/lib/slurm/slurmd")
    assert s["SlurmctldLogFile"].startswith("/var/log/slurm/")
    # The controller runs no slurmd; the time server includes compute, so it is a node.
    assert conf.nodes == {
        "clock": {"NodeName": "clock", "NodeAddr": "192.168.7.3", "CPUs": "4", "RealMemory": "3700",
                  "State": "UNKNOWN"},
        "c1": {"NodeName": "c1", "NodeAddr": "192.168.7.11", "CPUs": "4", "RealMemory": "7800", "State": "UNKNOWN"},
        "c2": {"NodeName": "c2", "NodeAddr": "192.168.7.12", "CPUs": "4", "RealMemory": "15000",
               "State": "UNKNOWN"},   # memory_mb overridden in the cluster file
    }
    assert conf.partitions == {"batch": {"PartitionName": "batch", "Nodes": "clock,c[1-2]", "Default": "YES",
                                         "MaxTime": "INFINITE", "State": "UP"}}
    assert s["DefMemPerCPU"] == str(3700 // 4)


def test_partitions_and_their_time_limits_come_from_the_cluster_file(tmp_path: Path) -> None:
    path = tmp_path / "minilab.yaml"
    path.write_text(SMALL.replace("slurm: {controller: boss, partition: batch}",
                                  'slurm:\n  controller: boss\n  partitions:\n'
                                  '    - {name: batch, max_time: "2-00:00:00"}\n'
                                  '    - {name: short, nodes: [c1, c2], max_time: 30, default: true}\n'))
    cluster = private(load_cluster(path, profiles_dir=PROFILES), tmp_path)
    assert cluster.slurm_partition == "short"
    conf = slurm_syntax.parse(text(plan(cluster, role="controller"), "/etc/slurm/slurm.conf"))
    assert conf.partitions == {
        "batch": {"PartitionName": "batch", "Nodes": "clock,c[1-2]", "Default": "NO", "MaxTime": "2-00:00:00",
                  "State": "UP"},
        "short": {"PartitionName": "short", "Nodes": "c[1-2]", "Default": "YES", "MaxTime": "30", "State": "UP"},
    }


def test_slurm_conf_of_the_reference_lab(reference: Cluster) -> None:
    conf = slurm_syntax.parse(text(plan(reference, role="controller"), "/etc/slurm/slurm.conf"))
    assert conf.settings["SlurmctldHost"] == "head(10.0.0.10)"
    assert conf.settings["SlurmctldParameters"] == "enable_configless"
    assert list(conf.nodes) == ["gps"] + [f"node0{i}" for i in range(1, 7)]
    assert conf.nodes["node06"]["NodeAddr"] == "10.0.0.106"
    assert conf.partitions["main"]["Nodes"] == "gps,node[01-06]"
    # The six Pi 5 compute nodes share one definition; the Pi 4 time server has its own.
    node_lines = [ln for ln in text(plan(reference, role="controller"), "/etc/slurm/slurm.conf").splitlines()
                  if ln.startswith("NodeName=")]
    assert node_lines[1:] == ["NodeName=node[01-06] NodeAddr=10.0.0.[101-106] CPUs=4 RealMemory=7800 State=UNKNOWN"]


def test_cgroup_conf_for_cgroup_v2(small: Cluster) -> None:
    cgroup = text(plan(small, role="controller"), "/etc/slurm/cgroup.conf")
    assert "CgroupPlugin=cgroup/v2\n" in cgroup
    assert "ConstrainCores=yes\n" in cgroup and "ConstrainRAMSpace=yes\n" in cgroup
    assert plan(small, role="compute").cmdline_args == ("cgroup_enable=memory",)


@pytest.mark.parametrize("role", ["controller", "compute", "login"])
def test_chrony_clients_use_only_the_time_server(small: Cluster, role: str) -> None:
    p = plan(small, role=role)
    chrony = text(p, "/etc/chrony/chrony.conf")
    directives = [line.split()[0] for line in chrony.splitlines() if line and not line.startswith("#")]
    assert "server 192.168.7.3 iburst prefer\n" in chrony
    assert "makestep 1 3\n" in chrony
    assert not {"pool", "sourcedir", "refclock", "allow"} & set(directives)
    assert "chrony.service" in p.enable and "systemd-timesyncd.service" in p.disable
    assert "/etc/default/gpsd" not in paths(p)


def test_time_server_runs_gpsd_and_chrony_with_pps(small: Cluster) -> None:
    p = plan(small, node="clock")
    chrony = text(p, "/etc/chrony/chrony.conf").splitlines()
    nmea = [line for line in chrony if line.startswith("refclock SHM 0")]
    assert nmea and "refid NMEA" in nmea[0] and nmea[0].endswith("noselect")
    pps = [line for line in chrony if line.startswith("refclock PPS /dev/pps0")]
    assert pps and "lock NMEA" in pps[0] and "refid PPS" in pps[0]
    assert "allow 192.168.7.0/24" in chrony
    assert "local stratum 10" in chrony
    assert not [line for line in chrony if line.startswith(("server", "pool"))]
    gpsd = dict(line.split("=", 1) for line in text(p, "/etc/default/gpsd").splitlines()
                if line and not line.startswith("#"))
    assert gpsd["DEVICES"] == '"/dev/serial0 /dev/pps0"' and gpsd["GPSD_OPTIONS"] == '"-n"'
    assert {"gpsd", "chrony", "slurmd"} <= set(p.packages)
    assert {"gpsd.service", "chrony.service", "slurmd.service"} <= set(p.enable)
    assert "systemd-timesyncd.service" in p.disable
    assert p.config_txt_lines == ("dtoverlay=gpio-shutdown,debounce=3000", "dtoverlay=pps-gpio,gpiopin=18")
    assert p.config_txt_boards == (("pi4", ("enable_uart=1",)),)    # clock is a Pi 4
    assert p.remove_serial_console


@pytest.mark.parametrize("role", ["controller", "compute", "login"])
def test_other_roles_get_the_power_button_and_keep_their_console(small: Cluster, role: str) -> None:
    p = plan(small, role=role)
    assert p.config_txt_lines == ("dtoverlay=gpio-shutdown,debounce=3000",)
    assert not p.remove_serial_console


@pytest.mark.parametrize("hold_ms", [20, 500, 10_000])
def test_the_button_reports_only_after_the_cluster_files_hold_time(small: Cluster, hold_ms: int) -> None:
    # The lab's button is held three seconds (the default); a brush against it must do nothing.
    held = dataclasses.replace(small, power_button_hold_ms=hold_ms)
    for role in ("controller", "compute", "timeserver"):
        lines = plan(held, role=role).config_txt_lines
        assert [line for line in lines if "gpio-shutdown" in line] == [f"dtoverlay=gpio-shutdown,debounce={hold_ms}"]


@pytest.mark.parametrize(("line", "rendered"), [
    ("dtoverlay=gpio-shutdown", "dtoverlay=gpio-shutdown,debounce=1500"),
    ("dtoverlay=gpio-shutdown,gpio_pull=up,debounce=100", "dtoverlay=gpio-shutdown,gpio_pull=up,debounce=1500"),
    ("dtoverlay=gpio-poweroff,gpiopin=26", "dtoverlay=gpio-poweroff,gpiopin=26"),
    ("dtoverlay=gpio-shutdownx", "dtoverlay=gpio-shutdownx"),
])
def test_the_hold_time_is_the_overlays_debounce(line: str, rendered: str) -> None:
    assert with_button_hold([line], 1500) == (rendered,)


def test_daemons_per_role(small: Cluster) -> None:
    assert "slurmctld.service" in plan(small, role="controller").enable
    assert "slurmd.service" not in plan(small, role="controller").enable
    assert "slurmd.service" in plan(small, role="compute").enable
    assert "slurmctld.service" not in plan(small, role="compute").enable
    assert not {"slurmd.service", "slurmctld.service"} & set(plan(small, role="login").enable)
    spool = file(plan(small, role="controller"), "/var/spool/slurmctld")
    assert spool.directory and (spool.owner, spool.group, spool.mode) == ("slurm", "slurm", 0o700)


def test_node_image_has_its_identity_baked_in(small: Cluster) -> None:
    p = plan(small, node="c1")
    assert p.role == "compute" and p.node is not None and p.node.name == "c1"
    assert IDENTITY.isdisjoint(paths(p)) and "clusterbake-identity.service" not in p.enable
    assert text(p, "/etc/hostname") == "c1\n"
    hosts = text(p, "/etc/hosts").splitlines()
    entries = [line.split() for line in hosts if line and not line.startswith("#")]
    assert ["127.0.0.1", "localhost"] in entries
    for node in small.nodes:
        assert [str(node.ip), f"{node.name}.lab.example", node.name] in entries
    # The own-name alias comes after the real address, so lookups of c1 give 192.168.7.11 first.
    assert entries[-1] == ["127.0.1.1", "c1"]
    keyfile = file(p, KEYFILE)
    assert (keyfile.owner, keyfile.group, keyfile.mode) == ("root", "root", 0o600)
    nm = configparser.ConfigParser(interpolation=None)
    nm.read_string(keyfile.data.decode())
    assert dict(nm["connection"]) | {"uuid": ""} == {
        "id": "clusterbake-eth0", "uuid": "", "type": "ethernet", "interface-name": "eth0",
        "autoconnect": "true", "autoconnect-priority": "100"}
    assert len(nm["connection"]["uuid"]) == 36
    assert nm["ipv4"]["method"] == "manual"
    assert nm["ipv4"]["address1"] == "192.168.7.11/24,192.168.7.1"
    assert nm["ipv4"]["dns"] == "192.168.7.1;9.9.9.9;"
    assert nm["ipv4"]["dns-search"] == "lab.example;"
    assert nm["ipv6"]["method"] == "disabled"
    assert file(plan(small, node="c1"), KEYFILE).data == keyfile.data       # stable uuid across builds


def test_role_image_inventory_holds_each_node_of_the_role(small: Cluster) -> None:
    p = plan(small, role="compute")
    inventory = json.loads(text(p, "/etc/clusterbake/inventory.json"))
    assert (inventory["cluster"], inventory["role"]) == ("minilab", "compute")
    assert [(n["name"], n["serial"], n["mac"]) for n in inventory["nodes"]] == [
        ("c1", "d83add36", "2c:cf:67:00:00:11"), ("c2", None, "2c:cf:67:00:00:12")]
    files = {f["path"]: f for f in inventory["nodes"][1]["files"]}
    assert files["/etc/hostname"]["text"] == "c2\n"
    assert files[KEYFILE]["mode"] == 0o600 and files[KEYFILE]["owner"] == "root"
    assert files[KEYFILE]["text"] == text(plan(small, node="c2"), KEYFILE)    # the same render as NODE=c2
    assert file(p, "/usr/local/lib/clusterbake/identity.py").mode == 0o755
    unit = text(p, "/etc/systemd/system/clusterbake-identity.service")
    assert "Before=network-pre.target NetworkManager.service" in unit
    assert "ExecStart=/usr/bin/python3 /usr/local/lib/clusterbake/identity.py" in unit


def test_users_get_their_keys_with_private_modes(small: Cluster) -> None:
    p = plan(small, role="compute")
    for name, keys in (("alice", 1), ("bob", 2)):
        ssh = file(p, f"/home/{name}/.ssh")
        assert ssh.directory and (ssh.owner, ssh.group, ssh.mode) == (name, name, 0o700)
        auth = file(p, f"/home/{name}/.ssh/authorized_keys")
        assert (auth.owner, auth.group, auth.mode) == (name, name, 0o600)
        lines = auth.data.decode().splitlines()
        assert len(lines) == keys and all(line.startswith("ssh-") for line in lines)
    assert BOB_KEYS[1] + "\n" in text(p, "/home/bob/.ssh/authorized_keys")


def test_sshd_and_host_keys(small: Cluster, reference: Cluster) -> None:
    sshd = "/etc/ssh/sshd_config.d/10-clusterbake.conf"
    assert "PasswordAuthentication no\n" in text(plan(reference, role="compute"), sshd)
    assert "PasswordAuthentication yes\n" in text(plan(small, role="compute"), sshd)   # the cluster file says so
    p = plan(small, role="compute")
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string(text(p, "/etc/systemd/system/clusterbake-ssh-hostkeys.service"))
    assert "ssh.service" in unit["Unit"]["Before"].split()
    # Before ssh.socket too, which is ordered before sockets.target: only an early unit can be (no ordering
    # cycle for systemd to break by dropping ssh.socket, as the first diskless VM boot showed).
    assert {"ssh.socket", "sysinit.target"} <= set(unit["Unit"]["Before"].split())
    assert unit["Unit"]["DefaultDependencies"] == "no" and "local-fs.target" in unit["Unit"]["After"].split()
    assert unit["Service"]["ExecStart"] == "/usr/bin/ssh-keygen -A"
    assert "clusterbake-ssh-hostkeys.service" in p.enable and "ssh.service" in p.enable
    assert "/etc/ssh/ssh_host_*" in p.remove
    assert not [f for f in p.files if "ssh_host_" in f.path]


def test_cloud_init_network_config_is_disabled(small: Cluster) -> None:
    cfg = yaml.safe_load(text(plan(small, node="boss"), "/etc/cloud/cloud.cfg.d/99-clusterbake-network.cfg"))
    assert cfg == {"network": {"config": "disabled"}}
    hostname = yaml.safe_load(text(plan(small, role="compute"), "/etc/cloud/cloud.cfg.d/99-clusterbake-hostname.cfg"))
    assert (hostname["preserve_hostname"], hostname["manage_etc_hosts"]) == (True, False)
    # Imager's user-data outranks the two keys: the modules that act on them do not run at all.
    assert not {"set_hostname", "update_hostname", "update_etc_hosts"} & set(hostname["cloud_init_modules"])


def test_pi5_nodes_get_a_warning_about_waking(small: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="clusterbake"):
        plan(small, role="compute")
    assert "c1, c2 (Pi 5): the GPIO3 button" in caplog.text and "J2" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="clusterbake"):
        plan(small, role="timeserver")      # a Pi 4 wakes by its GPIO3 button
    assert caplog.text == ""


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "give exactly one of a role and a node"),
        ({"role": "compute", "node": "c1"}, "give exactly one of a role and a node"),
        ({"node": "c9"}, "minilab.yaml: nodes: no node named 'c9' (fix: use one of boss, clock, c1, c2)"),
        ({"role": "gpu"}, "role 'gpu' has no profile profiles/gpu.yaml (fix: use one of auxiliary, compute, "
                          "controller, fileserver, login, monitor, timeserver or add that profile)"),
    ],
)
def test_bad_arguments(small: Cluster, kwargs: dict[str, str], expected: str) -> None:
    with pytest.raises(InputError) as info:
        plan(small, **kwargs)
    assert expected in info.value.one_line()


def test_controller_must_run_slurmctld(small: Cluster) -> None:
    with pytest.raises(InputError) as info:
        plan(dataclasses.replace(small, slurm_controller="c1"), role="compute")
    assert info.value.one_line().startswith(
        "minilab.yaml: slurm.controller: 'c1' has role 'compute', whose profile does not enable slurmctld.service")


def test_a_new_role_and_overlay_need_no_python_change(tmp_path: Path, small: Cluster) -> None:
    profiles, overlays = tmp_path / "p", tmp_path / "o"
    shutil.copytree(PROFILES, profiles)
    shutil.copytree(OVERLAYS, overlays)
    (profiles / "gpu.yaml").write_text(
        "include: [compute]\npackages: [nvtop]\noverlays: [gpu]\n"
        "settings: {gpu_memory: 256}\nconfig_txt: ['gpu_mem={{ settings.gpu_memory }}']\n")
    (overlays / "gpu" / "etc").mkdir(parents=True)
    (overlays / "gpu" / "etc" / "gpu.conf.j2").write_text("node={{ node.name }} mem={{ settings.gpu_memory }}\n")
    source = small.source.read_text().replace("role: compute,    ip: 192.168.7.12", "role: gpu, ip: 192.168.7.12")
    (tmp_path / "gpu.yaml").write_text(source)
    cluster = load_cluster(tmp_path / "gpu.yaml", profiles_dir=profiles)
    p = render_plan(cluster, node="c2", profiles_dir=profiles, overlays_dir=overlays, secrets=False)
    assert p.role == "gpu" and "nvtop" in p.packages and "slurmd.service" in p.enable
    assert text(p, "/etc/gpu.conf") == "node=c2 mem=256\n"
    assert "gpu_mem=256" in p.config_txt_lines
    controller = render_plan(cluster, role="controller", profiles_dir=profiles, overlays_dir=overlays, secrets=False)
    assert "c2" in slurm_syntax.parse(text(controller, "/etc/slurm/slurm.conf")).nodes     # a gpu node runs slurmd
    assert "/etc/default/slurmd" in paths(p)                                    # and fetches slurm.conf


POWER_UNIT = "/etc/systemd/system/clusterbake-slurm-power.service"
POWER_SCRIPT = "/usr/local/lib/clusterbake/slurm-node-power"
SCOPES_FIRST = "/etc/systemd/system/scope.d/50-clusterbake-slurm-power.conf"


@pytest.mark.parametrize("role", ROLES)
def test_slurmd_nodes_tell_slurm_about_the_power_button(small: Cluster, role: str) -> None:
    """Nodes running slurmd leave Slurm before a power-off and return after; others have no such unit."""
    p = plan(small, role=role)
    runs_slurmd = "slurmd.service" in p.enable
    assert (POWER_UNIT in paths(p)) == runs_slurmd == ("clusterbake-slurm-power.service" in p.enable)
    assert (SCOPES_FIRST in paths(p)) == runs_slurmd
    if not runs_slurmd:
        return
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string(text(p, POWER_UNIT))
    # Stopped before munge, slurmd and the network: scontrol still reaches slurmctld at shutdown.
    assert set(unit["Unit"]["After"].split()) >= {"network-online.target", "munge.service", "slurmd.service"}
    assert unit["Service"]["ExecStop"] == f"{POWER_SCRIPT} down"
    assert unit["Service"]["RemainAfterExit"] == "yes"
    assert file(p, POWER_SCRIPT).mode == 0o755
    assert 'REASON="power button"' in text(p, POWER_SCRIPT)
    # Job steps live in slurmd's transient scope: it stops only after the jobs were requeued.
    scopes = configparser.ConfigParser(strict=False, interpolation=None)
    scopes.read_string(text(p, SCOPES_FIRST))
    assert scopes["Unit"]["Before"] == "clusterbake-slurm-power.service"


def test_one_planning_stage_loads_each_profile_once(reference: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    import builder.render.plan as planning
    from builder.render.plan import plan_targets

    loaded: list[str] = []
    real = planning.load_profile

    def counted(profiles_dir: Path, role: str, addons: tuple[str, ...] = ()) -> object:
        loaded.append(role)
        return real(profiles_dir, role, addons)

    monkeypatch.setattr(planning, "load_profile", counted)
    targets = [(role, None) for role in reference.roles] + [(None, n.name) for n in reference.nodes]
    profiles, plans = plan_targets(reference, targets, secrets=False, profiles_dir=PROFILES, overlays_dir=OVERLAYS)
    assert sorted(loaded) == sorted(reference.roles) == sorted(profiles)   # not once per target
    assert len(plans) == len(targets) and all(p.profile is profiles[p.role] for p in plans)
    with pytest.raises(TypeError):
        profiles["compute"] = profiles["controller"]  # type: ignore[index]
