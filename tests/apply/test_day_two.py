"""`status` and `apply` against fake nodes: directories read and written by the real node agent
(LocalTransport), so the plan, the diff, the writes and the second "no change" are the real code.
Only the transport differs from a cluster's: no SSH (its failures are checked from ssh's words)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from builder.apply.commands import apply_user, run_apply, run_status
from builder.apply.converge import describe, probe_nodes, write_request
from builder.apply.desired import NodePlan
from builder.apply.restarts import RECONFIGURE, controller_needs_reconfigure, node_commands
from builder.apply.transport import LocalTransport, SshTransport, ssh_failure
from builder.cli import main
from builder.config import Cluster, load_cluster
from builder.config.model import User
from builder.errors import InputError
from tests.apply.day_two_support import booted_lab, booted_lab_of, edited_lab, plans, plans_of, small_lab
from tests.render.render_support import ALICE_KEY, BOB_KEYS, PROFILES

NEW_NODE = '  - {name: c3,    role: compute,    ip: 192.168.7.13, model: pi5-8gb}\n'
C2 = '      mac: "2c:cf:67:00:00:12"}\n'
CLUSTER_KEYS = "/usr/local/lib/clusterbake/cluster-keys"
CAROL_KEY = ALICE_KEY.replace("alice@laptop", "carol@desk")


Lab = tuple[Cluster, tuple[NodePlan, ...], dict[str, Path]]


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    cluster = small_lab(tmp_path)
    node_plans, roots = booted_lab(cluster, tmp_path / "nodes")
    return cluster, node_plans, roots


def test_nodes_as_their_plan_have_no_drift_and_apply_says_so(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    _, node_plans, roots = lab
    transport = LocalTransport(roots)
    assert all(r.drift is not None and r.drift.empty for r in probe_nodes(node_plans, transport))
    assert run_apply(node_plans, transport, yes=True) == 0
    assert "no change" in capsys.readouterr().out


def test_a_hand_edit_is_shown_and_overwritten_only_when_confirmed(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    _, node_plans, roots = lab
    hosts = roots["c1"] / "etc/hosts"
    original = hosts.read_text()
    hosts.write_text(original + "10.1.1.1 printer\n")
    hosts.chmod(0o600)
    transport = LocalTransport(roots)
    assert run_apply(node_plans, transport, yes=False, ask=lambda _: "n") == 1
    out = capsys.readouterr().out
    assert "c1:/etc/hosts: content, mode 0600, the plan says 0644" in out
    assert "-10.1.1.1 printer" in out and "nothing changed" in out
    assert hosts.read_text().endswith("printer\n")
    assert run_apply(node_plans, transport, yes=False, ask=lambda _: "y") == 0
    assert hosts.read_text() == original and hosts.stat().st_mode & 0o7777 == 0o644
    assert run_apply(node_plans, transport, yes=True) == 0
    assert "no change" in capsys.readouterr().out


def test_a_secret_is_reported_as_changed_never_printed(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    _, node_plans, roots = lab
    key = roots["c2"] / "etc/munge/munge.key"
    real = key.read_bytes()
    key.write_bytes(b"x" * len(real))
    assert run_apply(node_plans, LocalTransport(roots), yes=True) == 0
    out = capsys.readouterr().out
    assert "c2:/etc/munge/munge.key: content (secret: changed, not shown)" in out
    assert "xxxx" not in out and real.hex()[:16] not in out
    assert key.read_bytes() == real and key.stat().st_mode & 0o7777 == 0o400


def test_adding_a_node_and_a_user_changes_every_node_and_reconfigures_slurm_once(
        lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, _, roots = lab
    edited = edited_lab(tmp_path, C2 + "users:\n", C2 + NEW_NODE + "users:\n"
                        f'  - {{name: carol, uid: 2003, ssh_keys: ["{CAROL_KEY}"]}}\n')
    new_plans = [p for p in plans(edited) if p.node.name != "c3"]     # c3's card is not in yet
    reports = {r.name: r for r in probe_nodes(new_plans, LocalTransport(roots))}
    for name in ("boss", "clock", "c1", "c2"):
        drift = reports[name].drift
        assert drift is not None and drift.users == ("carol",), name
        assert {"/etc/hosts", "/home/carol/.ssh/authorized_keys"} <= {f.path for f in drift.files}, name
    # Configless: slurm.conf changes on the controller only; slurmctld is told once, at the end.
    boss = reports["boss"].drift
    assert boss is not None and "/etc/slurm/slurm.conf" in {f.path for f in boss.files}
    assert not any("/etc/slurm/" in f.path for n in ("c1", "c2", "clock") for f in reports[n].drift.files)  # type: ignore[union-attr]
    diff = "\n".join(describe(reports["boss"]))
    assert "\n+NodeName=c3 NodeAddr=192.168.7.13 CPUs=4 RealMemory=7800 State=UNKNOWN\n" in diff
    assert "\n+PartitionName=batch Nodes=clock,c[1-3] " in diff and "\n+192.168.7.13\tc3.lab.example c3\n" in diff
    assert controller_needs_reconfigure(f.path for f in boss.files)
    request = write_request(reports["c1"])
    assert request["users"] == [{"name": "carol", "uid": 2003, "shell": "/bin/bash", "home": True}]


def test_an_unreachable_node_is_reported_and_the_others_proceed(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    _, node_plans, roots = lab
    (roots["c1"] / "etc/hosts").write_text("edited\n")
    reachable = {name: root for name, root in roots.items() if name != "c2"}
    assert run_apply(node_plans, LocalTransport(reachable), yes=True) == 1
    out = capsys.readouterr().out
    assert "c2 (192.168.7.12): unreachable" in out and "not up to date: c2" in out
    assert (roots["c1"] / "etc/hosts").read_text() != "edited\n"


def test_status_as_a_table_and_as_json(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    _, node_plans, roots = lab
    (roots["clock"] / "etc/chrony/chrony.conf").unlink()
    reachable = {name: root for name, root in roots.items() if name != "c2"}
    assert run_status(node_plans, LocalTransport(reachable), as_json=False) == 3
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["node", "role", "address", "reachable", "drift"]
    rows = {line.split()[0]: line for line in table[1:] if not line.startswith(" ")}
    assert rows["clock"].split()[3:] == ["yes", "1", "files"] and "up to date" in rows["boss"]
    assert "unreachable" in rows["c2"] and rows["c2"].split()[3] == "no"
    assert "role controller" in "\n".join(table)
    run_status(node_plans, LocalTransport(reachable), as_json=True)
    nodes = {n["node"]: n for n in json.loads(capsys.readouterr().out)["nodes"]}
    assert nodes["clock"]["drift"]["files"] == ["/etc/chrony/chrony.conf"] and nodes["c2"]["reachable"] is False


def test_restarts_follow_dependencies() -> None:
    enabled = ["munge.service", "slurmd.service", "chrony.service", "nfs-server.service"]
    commands = node_commands(["/etc/default/slurmd", "/etc/munge/munge.key", "/etc/exports.d/clusterbake.exports",
                              "/etc/systemd/system/munge.service.d/10-clusterbake.conf"], enabled)
    assert commands == [["systemctl", "daemon-reload"], ["exportfs", "-ra"],
                        ["systemctl", "try-restart", "munge.service"], ["systemctl", "try-restart", "slurmd.service"]]
    assert node_commands(["/etc/hosts"], enabled) == []
    assert node_commands(["/etc/prometheus/prometheus.yml"], enabled) == []   # not running here
    assert controller_needs_reconfigure(["/etc/slurm/slurm.conf"]) and RECONFIGURE == ["scontrol", "reconfigure"]
    assert not controller_needs_reconfigure(["/etc/slurm/slurmdbd.conf", "/etc/hosts"])


@pytest.mark.parametrize(("returncode", "stderr", "expected"), [
    (255, "@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nHost key verification failed.",
     "c1 (10.0.0.1): its SSH host key is not the one pinned in known_hosts: refused"),
    (1, "sudo: a password is required\n", "c1 (10.0.0.1): sudo needs a password there"),
    (255, "ssh: connect to host 10.0.0.1 port 22: Connection timed out\n",
     "c1 (10.0.0.1): unreachable: ssh: connect to host 10.0.0.1 port 22: Connection timed out"),
    (255, "alice@10.0.0.1: Permission denied (publickey).\n", "c1 (10.0.0.1): SSH login refused"),
])
def test_ssh_and_sudo_failures_are_one_line_with_the_reason(returncode: int, stderr: str, expected: str) -> None:
    assert ssh_failure("c1", "10.0.0.1", returncode, stderr).startswith(expected)


def test_apply_logs_in_as_the_first_passwordless_sudo_user(lab: Lab, tmp_path: Path) -> None:
    cluster, _, _ = lab          # alice is in group sudo, but without first_user no rule lets her in
    with pytest.raises(InputError, match=r"^minilab.yaml: users: no user with passwordless sudo ") as error:
        apply_user(cluster)
    assert "first_user" in error.value.one_line()
    ssh = "ssh: {password_authentication: true}\n"
    assert apply_user(edited_lab(tmp_path, ssh, ssh + "first_user: alice\n")) == "alice"
    assert apply_user(edited_lab(tmp_path, "uid: 2002,", "uid: 2002, sudo: nopasswd,")) == "bob"


def test_ssh_pins_host_keys_in_the_secrets_folder_and_never_prompts(tmp_path: Path) -> None:
    transport = SshTransport(user="alice", known_hosts=tmp_path / "known_hosts", control_dir=tmp_path / "ctl")
    argv = transport.argv("10.0.0.5", ["sudo", "-n", "python3", "-c", "print('a b')", "probe", "/"])
    options = [argv[i + 1] for i, word in enumerate(argv) if word == "-o"]
    assert {"BatchMode=yes", "StrictHostKeyChecking=accept-new", f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
            "GlobalKnownHostsFile=/dev/null", "ControlMaster=auto"} <= set(options)
    assert argv[0] == "ssh" and argv[-3:-1] == ["alice@10.0.0.5", "--"]
    assert argv[-1] == "sudo -n python3 -c 'print('\"'\"'a b'\"'\"')' probe /"   # one word each on the remote shell


def test_a_node_baked_for_another_role_needs_a_new_image(lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    _, node_plans, roots = lab
    (roots["c1"] / "boot/firmware/clusterbake.txt").write_text("This card was baked by clusterbake, role login.\n")
    assert run_apply(node_plans, LocalTransport(roots), yes=True) == 1
    out = capsys.readouterr().out
    assert "no change: every reachable node is as the cluster file says; not up to date: c1" in out
    assert ("c1: needs a new image: its image was baked for role login, the cluster file says compute "
            "(make image NODE=c1)") in out


def test_node_card_writes_the_node_txt_of_a_new_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edited = edited_lab(tmp_path, C2 + "users:\n", C2 + NEW_NODE + "users:\n")
    card = tmp_path / "out" / "c3" / "node.txt"
    assert main(["node-card", "c3", "--cluster", str(edited.source), "--out", str(card)]) == 0
    assert "put it as node.txt next to clusterbake.txt" in capsys.readouterr().err
    lines = card.read_text().splitlines()
    assert lines[0] == "c3" and json.loads(lines[-1])["name"] == "c3"
    assert main(["node-card", "c9", "--cluster", str(edited.source)]) == 1
    assert "nodes: no node named 'c9'" in capsys.readouterr().err


@dataclass
class Recording:
    """The fake nodes' transport, keeping every write request (commands are not run on a tree)."""

    inner: LocalTransport
    writes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def agent(self, node: str, address: str, verb: str, request: Mapping[str, Any]) -> dict[str, Any]:
        if verb == "write":
            self.writes.append((node, dict(request)))
        return self.inner.agent(node, address, verb, request)


def test_a_partition_time_limit_changes_the_controllers_slurm_conf_and_reconfigures_once(
        lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, _, roots = lab
    edited = edited_lab(tmp_path, "slurm: {controller: boss, partition: batch}",
                        'slurm:\n  controller: boss\n  partitions: [{name: batch, max_time: "2-00:00:00"}]')
    transport = Recording(LocalTransport(roots))
    assert run_apply(plans(edited), transport, yes=True) == 0
    out = capsys.readouterr().out
    assert "-PartitionName=batch Nodes=clock,c[1-2] Default=YES MaxTime=INFINITE State=UP\n" \
           "+PartitionName=batch Nodes=clock,c[1-2] Default=YES MaxTime=2-00:00:00 State=UP\n" in out
    assert [node for node, _ in transport.writes] == ["boss", "boss"]     # the file, then slurmctld told once
    first, last = (request for _, request in transport.writes)
    assert [f["path"] for f in first["files"]] == ["/etc/slurm/slurm.conf"] and first["commands"] == []
    assert last == {"commands": [RECONFIGURE]}
    assert "MaxTime=2-00:00:00" in (roots["boss"] / "etc/slurm/slurm.conf").read_text()
    assert run_apply(plans(edited), transport, yes=True) == 0 and "no change" in capsys.readouterr().out


BOB = '''  - {name: bob, uid: 2002,
      ssh_keys: ["''' + BOB_KEYS[0] + '", "' + BOB_KEYS[1] + '''"]}
'''


def test_a_user_who_left_the_cluster_file_is_removed_with_the_home_kept(
        lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, _, roots = lab
    # bob gets passwordless sudo first, so that leaving also takes his sudoers rule away.
    with_sudo = edited_lab(tmp_path, BOB, BOB.replace("uid: 2002,", "uid: 2002, sudo: nopasswd,"))
    assert run_apply(plans(with_sudo), LocalTransport(roots), yes=True) == 0
    assert (roots["c1"] / "etc/sudoers.d/010_bob-nopasswd").is_file()
    (roots["c1"] / "home/bob").mkdir(parents=True, exist_ok=True)
    (roots["c1"] / "home/bob/results.csv").write_text("1,2\n")
    # Accounts clusterbake did not make are never touched: the image's own, one made by hand.
    for root in roots.values():
        with (root / "etc/passwd").open("a") as passwd:
            passwd.write("pi:x:1000:1000::/home/pi:/bin/bash\ndave:x:3000:3000::/home/dave:/bin/sh\n")
    capsys.readouterr()

    gone = edited_lab(tmp_path, BOB, "")
    assert run_apply(plans(gone), LocalTransport(roots), yes=True) == 0
    out = capsys.readouterr().out
    for name in roots:
        assert f"{name}: user bob: remove (its home is kept)" in out, out
        passwd = (roots[name] / "etc/passwd").read_text()
        assert "\nbob:" not in passwd and "\npi:x:1000:" in passwd and "\ndave:x:3000:" in passwd, name
        assert "\nalice:x:2001:" in passwd, name
        assert not (roots[name] / "etc/sudoers.d/010_bob-nopasswd").exists(), name
    assert (roots["c1"] / "home/bob/results.csv").read_text() == "1,2\n"
    assert "user pi" not in out and "user dave" not in out
    assert run_apply(plans(gone), LocalTransport(roots), yes=True) == 0
    assert "no change" in capsys.readouterr().out


def test_only_accounts_clusterbake_recorded_with_the_same_uid_are_removed(lab: Lab, tmp_path: Path) -> None:
    _, _, roots = lab
    record = (roots["c2"] / "etc/clusterbake/users").read_text()
    assert "\nalice 2001\nbob 2002\n" in record
    # bob on c2 is no longer the account clusterbake made (another uid): it stays.
    passwd = roots["c2"] / "etc/passwd"
    passwd.write_text(passwd.read_text().replace("bob:x:2002:2002:", "bob:x:2102:2102:"))
    reports = {r.name: r for r in probe_nodes(plans(edited_lab(tmp_path, BOB, "")), LocalTransport(roots))}
    assert reports["c1"].drift is not None and reports["c1"].drift.remove_users == ("bob",)
    assert reports["c2"].drift is not None and reports["c2"].drift.remove_users == ()


def test_a_user_added_gets_the_cluster_key_made_on_the_file_server_at_once(tmp_path: Path) -> None:
    """The file server makes each cluster user's SSH key in the shared home with a oneshot unit run at boot
    (clusterbake-cluster-keys.service). A user `apply` added had none until the file server booted again,
    so could not SSH from node to node (issue 15's promise): apply must run the unit again, and `start` it,
    since `try-restart` leaves a finished oneshot alone."""
    reference = load_cluster(Path(__file__).parents[2] / "cluster.yaml", profiles_dir=PROFILES)
    cluster = dataclasses.replace(reference, secrets_dir=tmp_path / "secrets")
    _, roots = booted_lab_of(cluster, tmp_path / "nodes", only=("gps", "node01"))
    carol = User(name="carol", uid=2003, gid=2003, ssh_keys=(CAROL_KEY,))
    edited = plans_of(dataclasses.replace(cluster, users=(*cluster.users, carol)), only=("gps", "node01"))
    reports = {r.name: r for r in probe_nodes(edited, LocalTransport(roots))}
    run_keys = ["systemctl", "start", "clusterbake-cluster-keys.service"]
    assert run_keys in write_request(reports["gps"])["commands"]
    assert run_keys not in write_request(reports["node01"])["commands"]
    assert node_commands([CLUSTER_KEYS], ["nfs-server.service"]) == []     # a node that is no file server
