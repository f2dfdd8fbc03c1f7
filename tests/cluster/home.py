"""A "home" network for the door of a booted cluster: the door's uplink, a web server and a client.

Two namespaces the test creates, and nothing else: `home` holds a bridge with the home router's
address and a web server (python3 -m http.server) on it, `client` is a laptop on the same
bridge. The door node's uplink device is one end of a veth whose other end is on that bridge.
Every namespace, device and process goes when the context ends, whether the test passed or not.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Interface
from pathlib import Path

from tests.cluster import overrides, units
from tests.cluster.harness import NETNS_PREFIX, Node, apply_keyfile, network_namespace

UPLINK_KEYFILE = "/etc/NetworkManager/system-connections/clusterbake-uplink.nmconnection"
FORWARD_SYSCTL = "/etc/sysctl.d/60-clusterbake-forward.conf"
WEB_PORT = 8080


@dataclass(frozen=True)
class Home:
    netns: str                 # the home network: router address and web server
    client_netns: str          # a machine of the home network, outside the cluster
    router: IPv4Interface
    client: IPv4Interface
    web_root: Path
    web_log: Path

    @property
    def web_url(self) -> str:
        return f"http://{self.router.ip}:{WEB_PORT}/"

    def client_run(self, argv: list[str], *, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """Run one of this host's programs on the home client (its network namespace only)."""
        return subprocess.run(["ip", "netns", "exec", self.client_netns, *argv], capture_output=True, text=True,
                              timeout=timeout, check=False)


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True)


@contextlib.contextmanager
def home_network(door: Node, uplink_device: str, router: IPv4Interface, client: IPv4Interface,
                 folder: Path) -> Iterator[Home]:
    tag = f"{NETNS_PREFIX}{os.getpid()}-{secrets.token_hex(2)}"
    with contextlib.ExitStack() as stack:
        home = stack.enter_context(network_namespace(f"{tag}-home"))
        laptop = stack.enter_context(network_namespace(f"{tag}-client"))
        _ip("-n", home, "link", "add", "br0", "type", "bridge")
        _ip("-n", home, "addr", "add", str(router), "dev", "br0")
        _ip("-n", home, "link", "set", "br0", "up")
        _ip("-n", home, "link", "set", "lo", "up")
        # The door's second cable, and the laptop's: veths from the home bridge. Deleting the home
        # namespace deletes them (and their ends in the other namespaces).
        _ip("-n", home, "link", "add", "up0", "type", "veth", "peer", "name", uplink_device, "netns", door.netns)
        _ip("-n", home, "link", "set", "up0", "master", "br0", "up")
        _ip("-n", home, "link", "add", "cl0", "type", "veth", "peer", "name", "eth0", "netns", laptop)
        _ip("-n", home, "link", "set", "cl0", "master", "br0", "up")
        _ip("-n", laptop, "link", "set", "lo", "up")
        _ip("-n", laptop, "addr", "add", str(client), "dev", "eth0")
        _ip("-n", laptop, "link", "set", "eth0", "up")
        web_root, web_log = folder / "web", folder / "web.log"
        web_root.mkdir(parents=True)
        with open(web_log, "wb") as log:
            server = subprocess.Popen(
                ["ip", "netns", "exec", home, sys.executable, "-m", "http.server", "--bind", str(router.ip),
                 "--directory", str(web_root), str(WEB_PORT)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        stack.callback(_stop, server)
        yield Home(netns=home, client_netns=laptop, router=router, client=client, web_root=web_root,
                   web_log=web_log)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def open_door(door: Node, *, firewall: bool = True) -> None:
    """What the door's boot does beyond the cluster's services: its uplink up (NetworkManager's part),
    forwarding on (systemd-sysctl's), its firewall loaded (nftables.service's), overrides items 5 and 6.
    `firewall=False` leaves the ruleset out: the control showing the test would see a node exposed."""
    apply_keyfile(door, UPLINK_KEYFILE)
    for setting in overrides.namespaced_sysctls(door.file(FORWARD_SYSCTL).read_text()):
        door.run(["sysctl", "-w", setting])
    if not firewall:
        return
    unit = units.read_unit(door.root, "nftables.service")
    for argv in unit.exec_start:
        subprocess.run(["ip", "netns", "exec", door.netns, *overrides.nft_argv(argv, door.root)],
                       check=True, capture_output=True, text=True)
    door.started.append("nftables.service")
