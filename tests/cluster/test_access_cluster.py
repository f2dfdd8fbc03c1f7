"""`access:` on a booted cluster: the door lets the cluster out and only SSH in (issue 25, part 2).

The lab of test_cluster.py with gps as the door: its cluster address is the others' gateway and DNS,
its second interface (eth1) is cabled to a "home" network holding a web server and a client
(tests/cluster/home.py). Booted: head (slurmctld), gps (the door, with dnsmasq) and node01 (slurmd),
the door and node01 with sshd from their images. node01 resolves head through the door's DNS. From
the client, `ssh -F <the README's ~/.ssh/config stanza> node01 srun …` goes through the door as a
jump host and runs a job on node01; node01 fetches a page from the home web server through the
door's NAT (the server sees the door's uplink address); the client, given a route to the cluster
through the door, reaches no node's port 22, 6818 or 9100 (only the door's own SSH). Departures from
a real boot: overrides.py (items 5 and 6 are the door's).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from ipaddress import IPv4Interface
from pathlib import Path

import pytest

from tests.cluster import checks
from tests.cluster.conftest import Lab, build_role_images, cluster_yaml, write_cluster
from tests.cluster.harness import NodeSpec, boot_cluster, start_services, start_unit
from tests.cluster.home import Home, home_network, open_door
from tests.reports import report

pytestmark = [pytest.mark.slow, pytest.mark.root]

BOOTED = ("head", "gps", "node01")
DOOR = "gps"
ROUTER = IPv4Interface("192.168.77.1/24")     # the home router, and the web server
UPLINK = IPv4Interface("192.168.77.2/24")     # the door's uplink address
CLIENT = IPv4Interface("192.168.77.3/24")     # a laptop at home
SSH_UNITS = ("clusterbake-ssh-hostkeys.service", "ssh.service")
CLOSED_PORTS = (22, 6818, 9100)
SSH_WAIT = 300


@pytest.fixture(scope="module")
def accesslab(served_base: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Path]]:
    folder = tmp_path_factory.mktemp("accesslab")
    key = folder / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "laptop", "-f", key], check=True)
    data = cluster_yaml(served_base, folder / "secrets")
    data["network"] = {"subnet": "10.77.0.0/24", "gateway": "10.77.0.20", "dns": ["10.77.0.20"]}
    data["access"] = {"node": DOOR, "uplink": {"interface": "eth1", "address": str(UPLINK),
                                               "gateway": str(ROUTER.ip), "dns": [str(ROUTER.ip)]}}
    data["users"] = [{"name": "hpc", "uid": 2000, "groups": ["sudo"],
                      "ssh_keys": [key.with_suffix(".pub").read_text().strip()]}]
    cluster = write_cluster(folder, data)
    images = build_role_images(cluster, folder / "out", ("controller", "auxiliary", "compute"))
    yield Lab(base_image=served_base, cluster=cluster, images=images, out=folder / "out"), key


def ssh_config(key: Path, known_hosts: Path) -> str:
    """The README's stanza (section "access:") for this lab, then what a test needs: its key, no prompts."""
    return (f"Host {DOOR}\n    HostName {UPLINK.ip}\n    User hpc\n\n"
            f"Host head node01 node02\n    ProxyJump {DOOR}\n    User hpc\n\n"
            f"Host *\n    IdentityFile {key}\n    IdentitiesOnly yes\n    BatchMode yes\n"
            f"    StrictHostKeyChecking accept-new\n    UserKnownHostsFile {known_hosts}\n    ConnectTimeout 60\n")


def probe(home: Home, targets: list[str]) -> dict[str, str]:
    """From the home client: each host:port `open`, `no answer` (dropped) or the error (refused, unreachable)."""
    result = home.client_run(["python3", "-c", PROBE, json.dumps(targets)])
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


# One DNS question for an A record, sent by UDP; prints the first answer's address, or why there is none.
DNS_QUERY = """
import socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
question = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\\0"
query = struct.pack(">HHHHHH", 0x2525, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", 1, 1)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(5)
try:
    sock.sendto(query, (server, 53))
    answer = sock.recv(512)
except OSError as exc:
    print("no answer:", exc.strerror or type(exc).__name__)
    sys.exit(0)
count = struct.unpack(">H", answer[6:8])[0]
print(socket.inet_ntoa(answer[-4:]) if count and struct.unpack(">H", answer[-14:-12])[0] == 1 else "no address")
"""

PROBE = """
import json, socket, sys
found = {}
for target in json.loads(sys.argv[1]):
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=4).close()
        found[target] = "open"
    except TimeoutError:
        found[target] = "no answer"
    except OSError as exc:
        found[target] = exc.strerror or type(exc).__name__
print(json.dumps(found))
"""


def test_ssh_jump_nat_out_and_nothing_else_in(accesslab: tuple[Lab, Path], tmp_path: Path) -> None:
    lab, key = accesslab
    inv = lab.inventory
    started = time.monotonic()
    specs = [NodeSpec(n.name, n.role, lab.images[n.role]) for n in lab.cluster.nodes if n.name in BOOTED]
    with boot_cluster(specs, tmp_path / "nodes") as cluster:
        door, head, node01 = cluster.node(DOOR), cluster.node("head"), cluster.node("node01")
        with home_network(door, "eth1", ROUTER, CLIENT, tmp_path / "home") as home:
            for node in cluster.nodes:
                start_services(node)
            open_door(door)
            for node in (door, node01):
                for unit in SSH_UNITS:
                    start_unit(node, unit)
                assert "ssh.service" in node.started, f"{node.name}: sshd not started ({node.started})"
            start_unit(door, "dnsmasq.service")
            assert "dnsmasq.service" in door.started, door.started
            assert checks.wait_for(lambda: checks.node_states(head).get("node01") == "idle", checks.SLURM_WAIT), \
                f"node01 is {checks.node_states(head).get('node01', 'missing from sinfo')}, not idle"

            # DNS: node01's resolver is the door, which answers the cluster's names; not to the home side.
            dns = lab.cluster.network.dns[0]
            resolved = node01.run(["python3", "-c", DNS_QUERY, str(dns), "head"], check=False)
            assert resolved.stdout.strip() == inv.addresses["head"], \
                f"node01 asking the door ({dns}) for head: {(resolved.stdout + resolved.stderr).strip()[-400:]}"
            outside = home.client_run(["python3", "-c", DNS_QUERY, str(UPLINK.ip), "head"])
            assert outside.stdout.startswith("no answer"), f"the door answers DNS on its uplink: {outside.stdout}"

            # The one way in: ssh -J through the door, then a job on the node.
            config = tmp_path / "ssh_config"
            config.write_text(ssh_config(key, tmp_path / "known_hosts"))
            ssh: subprocess.CompletedProcess[str] | None = None

            def jumped() -> bool:
                nonlocal ssh
                ssh = home.client_run(["ssh", "-F", str(config), "node01", "srun", "-N1", "-w", "node01",
                                       "hostname"])
                return ssh.returncode == 0
            assert checks.wait_for(jumped, SSH_WAIT, interval=5), \
                f"ssh -J {DOOR} node01 from the home client: {ssh and (ssh.stderr or ssh.stdout).strip()[-800:]}"
            assert ssh is not None and ssh.stdout.split() == ["node01"], ssh and ssh.stdout

            # The way out: node01 fetches from the home web server; the server sees the door's address.
            token = secrets.token_hex(8)
            (home.web_root / "apt.txt").write_text(token)
            fetched = node01.run(["python3", "-c", "import sys, urllib.request; "
                                  "print(urllib.request.urlopen(sys.argv[1], timeout=30).read().decode())",
                                  home.web_url + "apt.txt"], check=False)
            assert fetched.stdout.strip() == token, f"node01 fetching {home.web_url}apt.txt: {fetched.stderr[-600:]}"
            assert f"{UPLINK.ip} - - " in home.web_log.read_text(), \
                f"the web server did not see the door's uplink address: {home.web_log.read_text()[-400:]}"

            # Nothing else in: even routed at the cluster through the door, the client reaches no node's
            # ssh, slurmd or node exporter; the door's own SSH (on its cluster address too) is the control.
            subprocess.run(["ip", "-n", home.client_netns, "route", "add", str(lab.cluster.network.subnet),
                            "via", str(UPLINK.ip)], check=True)
            addresses = inv.addresses
            targets = [f"{addresses[name]}:{port}" for name in ("head", "node01") for port in CLOSED_PORTS]
            targets += [f"{addresses[DOOR]}:{port}" for port in CLOSED_PORTS[1:]] + [f"{addresses[DOOR]}:22"]
            found = probe(home, targets)
            assert found.pop(f"{addresses[DOOR]}:22") == "open", "the door's SSH is not reachable from the client"
            reachable = {target: state for target, state in found.items() if state == "open"}
            assert not reachable, f"the home client reaches the cluster directly: {reachable}"
            report("cluster test report",
                f"access: ssh -J {DOOR} node01 srun hostname from the home client -> {ssh.stdout.strip()}; "
                f"the door's dnsmasq gives node01 head = {resolved.stdout.strip()}; "
                f"node01 fetched {home.web_url}apt.txt as {UPLINK.ip}; from the client "
                + ", ".join(f"{t} {s}" for t, s in sorted(found.items()))
                + f"; up and checked in {time.monotonic() - started:.0f}s")


def test_without_the_ruleset_the_home_client_would_reach_a_node(accesslab: tuple[Lab, Path], tmp_path: Path) -> None:
    """The control: the same door with forwarding on but its nftables ruleset not loaded lets the home
    client reach node01's sshd, so the test above sees an exposed node, and the ruleset is what closes it."""
    lab, _ = accesslab
    specs = [NodeSpec(n.name, n.role, lab.images[n.role]) for n in lab.cluster.nodes if n.name in (DOOR, "node01")]
    with boot_cluster(specs, tmp_path / "nodes") as cluster:
        door, node01 = cluster.node(DOOR), cluster.node("node01")
        with home_network(door, "eth1", ROUTER, CLIENT, tmp_path / "home") as home:
            for node in cluster.nodes:
                start_services(node)
            open_door(door, firewall=False)
            for unit in SSH_UNITS:
                start_unit(node01, unit)
            subprocess.run(["ip", "-n", home.client_netns, "route", "add", str(lab.cluster.network.subnet),
                            "via", str(UPLINK.ip)], check=True)
            target = f"{lab.inventory.addresses['node01']}:22"
            found: dict[str, str] = {}

            def exposed() -> bool:
                found.update(probe(home, [target]))
                return found[target] == "open"
            assert checks.wait_for(exposed, 60), f"without the ruleset {target} is {found.get(target)}, not open"
