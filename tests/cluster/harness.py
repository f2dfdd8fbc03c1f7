"""Boot role images as a cluster of namespaced nodes on this host, and take it all down again.

Each node: the image's root partition attached read-only through a loop device (explicit offset
and size) and mounted as the lower layer of a per-node overlay; the boot partition copied out
with mtools to /boot/firmware (FAT cannot be mounted here) with the node's `node.txt`; its own
network namespace (a veth into a bridge namespace), and its own UTS, PID, IPC and mount
namespaces, whose PID 1 is `node_init.py`. Then, in the order systemd would, the first-boot
units and the daemons the image has enabled are started from the image's own unit files,
changed only as `overrides.py` documents.

Everything is held on one ExitStack: processes (by killing each node's PID 1), mounts, loop
devices and namespaces are released in reverse order whether the test passed or failed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from builder.image import clean_leftovers
from builder.image.boot import BootPartition
from builder.image.chroot import emulation_env
from builder.image.layout import read_layout
from builder.image.loop import attached
from builder.image.mounts import mounted
from tests.cluster import overrides, units

NODE_INIT = Path(__file__).with_name("node_init.py")
NODE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/root",
    **emulation_env("arm64"),
}
# The units a booting node would start that this test exercises, in systemd's order for them.
BOOT_ORDER = (
    "clusterbake-identity.service",
    "clusterbake-munge-key.service",
    "munge.service",
    "chrony.service",
    # slurm.accounting: MariaDB (its system tables first, if the image has none), the database
    # and user of slurmdbd, slurmdbd; slurmctld registers the cluster with it.
    "clusterbake-mariadb-init.service",
    "mariadb.service",
    "clusterbake-slurmdbd-db.service",
    "slurmdbd.service",
    "slurmctld.service",
    "slurmd.service",
    "prometheus-node-exporter.service",
    "prometheus.service",
)


@dataclass(frozen=True)
class NodeSpec:
    name: str
    role: str
    image: Path                   # an SD-card image, or a directory: a container's unpacked template
    address: str | None = None    # a container's address/prefix, which Proxmox gives it (pct --net0 ip=)
    node_txt: str | None = None   # the card's node.txt (a node card); by default the node's name


@dataclass
class Node:
    spec: NodeSpec
    root: Path
    netns: str
    init_pid: int
    logs: Path
    started: list[str] = field(default_factory=list)
    daemons: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    def _argv(self, argv: Sequence[str], user: str | None) -> list[str]:
        prefix = ["nsenter", "-t", str(self.init_pid), "-a", "-r", "-w", "--"]
        if user and user != "root":
            prefix += ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
        return [*prefix, *argv]

    def run(self, argv: Sequence[str], *, user: str | None = None, check: bool = True, timeout: float = 120,
            input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command inside the node (its namespaces and root) and wait for it."""
        proc = subprocess.run(self._argv(argv, user), env=NODE_ENV, input=input.decode() if input else None,
                              capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"{self.name}: {' '.join(argv)} failed ({proc.returncode}): "
                                 f"{(proc.stderr or proc.stdout).strip()[-800:]}")
        return proc

    def start(self, unit: str, argv: Sequence[str], *, user: str | None) -> None:
        """Start a foreground daemon inside the node; its output goes to the node's log folder."""
        log = open(self.logs / f"{unit}.log", "ab")  # noqa: SIM115 - closed with the process below
        self.daemons[unit] = subprocess.Popen(self._argv(argv, user), env=NODE_ENV, stdout=log,
                                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def file(self, path: str) -> Path:
        return self.root / path.lstrip("/")


class Cluster:
    """A booted set of nodes; `boot_cluster()` makes one and tears it down."""

    def __init__(self, nodes: list[Node], bridge_ns: str) -> None:
        self.nodes = nodes
        self.bridge_ns = bridge_ns

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True)


@contextlib.contextmanager
def network_namespace(name: str) -> Iterator[str]:
    _ip("netns", "add", name)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


@contextlib.contextmanager
def _lower(image: Path, target: Path) -> Iterator[Path]:
    """The image's root filesystem, read-only, shared by every node booting that image."""
    layout = read_layout(image)
    target.mkdir(parents=True)
    with attached(image, layout.root.offset, layout.root.size, read_only=True) as device, \
            mounted(device, target, fstype="ext4", options=("ro", "noload")):
        yield target


def _find_init(root: Path, timeout: float = 30) -> int:
    """The host pid of the node's PID 1: the process whose root directory is the node's root."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.readlink(entry / "root") == str(root):
                    status = (entry / "status").read_text()
                    nspid = next(line for line in status.splitlines() if line.startswith("NSpid:")).split()
                    if nspid[-1] == "1":
                        return int(entry.name)
            except (OSError, StopIteration):
                continue
        time.sleep(0.2)
    raise AssertionError(f"node rooted at {root} did not start")


def _kill_init(pid: int, proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=20)


NETNS_PREFIX = "cbtest-"


def remove_stale_namespaces() -> None:
    """Namespaces of a test run that was SIGKILLed: their names carry the dead run's pid."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    for name in (line.split()[0] for line in listing.splitlines() if line.startswith(NETNS_PREFIX)):
        pid = name[len(NETNS_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


@contextlib.contextmanager
def boot_cluster(specs: Sequence[NodeSpec], scratch: Path) -> Iterator[Cluster]:
    """Boot every node of `specs` up to, not including, its services (see `start_services`)."""
    clean_leftovers()  # what a SIGKILLed run left: its node processes, overlays, loop devices
    remove_stale_namespaces()
    tag = f"{os.getpid()}-{secrets.token_hex(2)}"
    with contextlib.ExitStack() as stack:
        bridge = stack.enter_context(network_namespace(f"{NETNS_PREFIX}{tag}-br"))
        _ip("-n", bridge, "link", "add", "br0", "type", "bridge")
        _ip("-n", bridge, "link", "set", "br0", "up")
        lowers: dict[Path, Path] = {}
        nodes = []
        for index, spec in enumerate(specs):
            if spec.image not in lowers:
                lowers[spec.image] = spec.image if spec.image.is_dir() else stack.enter_context(
                    _lower(spec.image, scratch / f"lower-{len(lowers)}-{spec.image.stem}"))
            folder = scratch / spec.name
            for sub in ("upper", "work", "root", "logs"):
                (folder / sub).mkdir(parents=True)
            root = stack.enter_context(mounted(
                "overlay", folder / "root", fstype="overlay",
                options=(f"lowerdir={lowers[spec.image]}", f"upperdir={folder / 'upper'}",
                         f"workdir={folder / 'work'}")))
            if not spec.image.is_dir():
                layout = read_layout(spec.image)
                boot = root / layout.boot_mountpoint.lstrip("/")
                BootPartition(layout.image, layout.boot).export(boot)
                (boot / "node.txt").write_text(spec.node_txt or spec.name + "\n")
            netns = stack.enter_context(network_namespace(f"{NETNS_PREFIX}{tag}-{spec.name}"))
            veth = f"cbt{secrets.token_hex(4)}{index}"[:15]
            _ip("-n", bridge, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
            _ip("-n", bridge, "link", "set", veth, "master", "br0", "up")
            _ip("-n", netns, "link", "set", "lo", "up")
            _ip("-n", netns, "link", "set", "eth0", "up")
            if spec.address is not None:
                # A container has no identity service: Proxmox's part is its address, the test's
                # part the same file overrides as every other node's.
                _ip("-n", netns, "addr", "add", spec.address, "dev", "eth0")
                overrides.apply_file_overrides(root)
            init = subprocess.Popen(
                ["ip", "netns", "exec", netns, "unshare", "--uts", "--ipc", "--pid", "--mount", "--fork",
                 "--propagation", "private", "--", sys.executable, str(NODE_INIT), str(root)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            pid = _find_init(root)
            stack.callback(_kill_init, pid, init)
            nodes.append(Node(spec=spec, root=root, netns=netns, init_pid=pid, logs=folder / "logs"))
        yield Cluster(nodes, bridge)


def apply_keyfile(node: Node, keyfile: str = "/etc/NetworkManager/system-connections/eth0.nmconnection") -> str:
    """NetworkManager's part: bring a device up with the address (and default route) of a keyfile of the
    node, by default its cluster keyfile (every node's veth is eth0). Returns the address."""
    path = node.file(keyfile)
    if not path.is_file():
        raise AssertionError(f"{node.name}: no NetworkManager keyfile {keyfile} "
                             "(the identity service did not pick this node?)")
    values: dict[str, str] = {}
    section = ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[f"{section}{key}"] = value
    if "[ipv4]address1" not in values:
        raise AssertionError(f"{node.name}: {path.name} has no [ipv4] address1=")
    address, _, gateway = values["[ipv4]address1"].partition(",")
    ipaddress.ip_interface(address)
    device = values.get("[connection]interface-name", "eth0")
    _ip("-n", node.netns, "addr", "add", address, "dev", device)
    _ip("-n", node.netns, "link", "set", device, "up")
    if gateway and values.get("[ipv4]never-default") != "true":
        _ip("-n", node.netns, "route", "add", "default", "via", str(ipaddress.ip_address(gateway)), "dev", device)
    return address.split("/")[0]


def start_services(node: Node) -> None:
    """Start, in boot order, the units of BOOT_ORDER that the image has enabled."""
    enabled = units.enabled_units(node.root) - overrides.NOT_STARTED
    # systemd-tmpfiles-setup's part of a boot: the directories packages declare under /run
    # (/run/mysqld for MariaDB's socket), which units without a RuntimeDirectory rely on.
    node.run(["systemd-tmpfiles", "--create", "--prefix=/run"], check=False)
    for name in BOOT_ORDER:
        if name in enabled:
            start_unit(node, name)


def start_unit(node: Node, name: str) -> None:
    """Start one unit from the image's own unit file, as systemd would (if its conditions hold)."""
    unit = units.read_unit(node.root, name)
    if not units.conditions_hold(node.root, unit):
        return
    if name == "clusterbake-identity.service":
        _run_oneshot(node, unit)
        overrides.apply_file_overrides(node.root)
        apply_keyfile(node)
        node.started.append(name)
        return
    user, group = unit.user or "root", unit.group or unit.user or "root"
    for directory in unit.runtime_directories:
        node.run(["install", "-d", "-m", unit.runtime_mode, "-o", user, "-g", group, f"/run/{directory}"])
    for argv in unit.exec_start_pre:
        node.run(units.expand(argv, unit.environment), user=unit.user)
    if unit.service_type == "oneshot":
        _run_oneshot(node, unit)
    elif unit.service_type == "forking":
        for argv in unit.exec_start:
            node.run(overrides.daemon_argv(name, units.expand(argv, unit.environment)),
                     user=None if name == "chrony.service" else unit.user)
    else:
        argv = overrides.daemon_argv(name, units.expand(unit.exec_start[0], unit.environment))
        node.start(name, argv, user=unit.user)
    node.started.append(name)


def _run_oneshot(node: Node, unit: units.Unit) -> None:
    for argv in unit.exec_start:
        result = node.run(units.expand(argv, unit.environment), user=unit.user)
        (node.logs / f"{unit.name}.log").write_text(result.stdout + result.stderr)
