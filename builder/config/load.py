"""Load a cluster file into the typed model, checking everything before any work starts."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Sequence
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from builder.config import grammar
from builder.config.access import check_access, is_door, read_access
from builder.config.addresses import dns_problem, gateway_problem, subnet_problem
from builder.config.fileserver import check_fileserver, read_fileserver
from builder.config.grammar import (
    FINGERPRINT_RE,
    HEX64_RE,
    ID_MAX,
    ID_MIN,
    INTERFACE_RE,
    LABEL_RE,
    serials_confusable,
    shown,
)
from builder.config.model import BOARD_MODELS, BaseImage, Cluster, Network, Node, User
from builder.config.netboot import NETWORK, boot_problem, check_netboot, read_netboot
from builder.config.partitions import read_partitions
from builder.config.platforms import RASPBERRY_PI, container_node, platform_problem
from builder.config.reader import Reader
from builder.config.roles import role_problem
from builder.config.secretsdir import secrets_dir_problem
from builder.config.sources import absolute, is_symlink_loop, local_path, resolve
from builder.config.sshkeys import ssh_key_problem
from builder.input_files import read_yaml_file

IMAGE_SUFFIXES = (".img.xz", ".img.gz", ".img.zst", ".img")
SUDO_MODES = ("nopasswd", "password")
# The power button's hold time: the lab's builder holds it three seconds. Below 20 ms a switch's own
# bounce could fire it; past ten seconds nobody holds a button. (The overlay takes any 32-bit value.)
DEFAULT_HOLD_MS, HOLD_MS_MIN, HOLD_MS_MAX = 3000, 20, 10_000
MAX_NODES = 1024    # a /22 of boards; every role image's first-boot inventory lists each of its nodes


def read_yaml(path: Path) -> object:
    """Parse a YAML file (regular, small, UTF-8, bounded); any problem is one line naming the file."""
    return read_yaml_file(path, path.name)


def load_cluster(path: Path, profiles_dir: Path | None = None) -> Cluster:
    """Read and validate a cluster file; raise InputError naming file, key and fix."""
    path = Path(path)
    top = Reader(read_yaml_file(path, str(path), hint="pass --cluster FILE (make: CLUSTER=FILE)"), path)
    name = top.text("name", check=lambda v: grammar.label_problem(v, "cluster name"))
    base_image = _base_image(top.sub("base_image"), absolute(path).parent)
    network = _network(top.sub("network"))
    time = top.sub("time")
    time_server = time.text("server")
    time.done()
    slurm = top.sub("slurm")
    controller = slurm.text("controller")
    accounting = slurm.flag("accounting", False, hint="write accounting: true (slurmdbd and MariaDB on the "
                                                      "controller) or remove the key")
    raw_nodes = top.items("nodes")
    if len(raw_nodes) > MAX_NODES:
        top.fail(f"lists {len(raw_nodes)} nodes; a cluster has at most {MAX_NODES}", key="nodes",
                 hint=f"split it into clusters of at most {MAX_NODES} nodes (each its own cluster file)")
    nodes = tuple(_node(top.item("nodes", i, raw)) for i, raw in enumerate(raw_nodes))
    partitions = read_partitions(slurm, nodes)
    slurm.done()
    users = tuple(_user(top.item("users", i, raw)) for i, raw in enumerate(top.items("users", [])))
    first_user = top.text("first_user", None, check=lambda v: grammar.account_problem(v, "user name"))
    ssh = top.sub("ssh", {})
    password_auth = ssh.flag("password_authentication", False)
    ssh.done()
    secrets = top.text("secrets_dir", None)
    fileserver = read_fileserver(top, network)
    secrets_dir = _secrets_dir(secrets, path, name, top)
    access = read_access(top, network, secrets_dir)
    netboot = read_netboot(top)
    if netboot is not None and netboot.roles:
        nodes = tuple(replace(n, boot=NETWORK) if n.role in netboot.roles else n for n in nodes)
    hold_ms = _power_button_hold(top.sub("power_button", {}))
    top.done()

    cluster = Cluster(
        source=absolute(path),
        name=name,
        base_image=base_image,
        network=network,
        time_server=time_server,
        slurm_controller=controller,
        slurm_partition=next(p.name for p in partitions if p.default),
        slurm_partitions=partitions,
        slurm_accounting=accounting,
        nodes=nodes,
        users=users,
        first_user=first_user,
        ssh_password_authentication=password_auth,
        secrets_dir=secrets_dir,
        fileserver=fileserver,
        access=access,
        power_button_hold_ms=hold_ms,
        netboot=netboot,
    )
    check_access(cluster, top)    # first: the door's address is the gateway, which _check_cluster allows it
    _check_cluster(cluster, top, profiles_dir)
    check_fileserver(cluster, top)
    check_netboot(cluster, top)
    return cluster


def _power_button_hold(r: Reader) -> int:
    """`power_button.hold_ms`: the gpio-shutdown overlay's `debounce`, so a brush against the button does nothing."""
    hold = r.take("hold_ms", DEFAULT_HOLD_MS)
    if isinstance(hold, bool) or not isinstance(hold, int) or not HOLD_MS_MIN <= hold <= HOLD_MS_MAX:
        r.fail(f"{shown(hold)} is not a whole number of milliseconds from {HOLD_MS_MIN} to {HOLD_MS_MAX}",
               key="hold_ms", hint=f"how long the button must be held to shut a node down, e.g. hold_ms: "
                                   f"{DEFAULT_HOLD_MS} (three seconds)")
    r.done()
    return int(hold)


def _base_image(r: Reader, cluster_dir: Path) -> BaseImage:
    url = r.text("url", check=grammar.url_problem)
    if not url.endswith(IMAGE_SUFFIXES):
        r.fail(f"{shown(url)} does not end in one of {', '.join(IMAGE_SUFFIXES)}", key="url",
               hint="point at the .img.xz (or .img.gz, .img.zst, .img) file itself")
    sha256 = r.text("sha256", None, pattern=HEX64_RE.fullmatch, expected="64 hexadecimal digits")
    sha256_url = r.text("sha256_url", None, check=grammar.url_problem)
    if (sha256 is None) == (sha256_url is None):
        r.fail("needs exactly one of 'sha256' and 'sha256_url'",
               hint="give the image's SHA-256 or the URL of its .sha256 file")
    pinned = []
    for key, fingerprint in _one_or_more(r, "fingerprint", "a 40-digit OpenPGP fingerprint"):
        compact = fingerprint.replace(" ", "").upper()
        if not FINGERPRINT_RE.fullmatch(compact):
            r.fail(f"{shown(fingerprint)} is not a 40-digit OpenPGP fingerprint", key=key,
                   hint="copy the full fingerprint of the signing key (gpg --fingerprint)")
        if compact in pinned:
            r.fail(f"{compact} is listed twice", key=key)
        pinned.append(compact)
    signature_url = r.text("signature_url", check=grammar.url_problem)
    sources = []
    for key, source in _one_or_more(r, "signing_key", "a URL or path of the signing key"):
        problem = grammar.url_problem(source)
        if problem:
            r.fail(f"{shown(source)} {problem}", key=key)
        sources.append(source)
    refs = [("url", url), ("signature_url", signature_url), ("sha256_url", sha256_url),
            *((f"signing_key[{i}]" if len(sources) > 1 else "signing_key", s) for i, s in enumerate(sources))]
    for key, ref in refs:
        if ref is not None and urllib.parse.urlsplit(ref).scheme.lower() not in ("http", "https") \
                and is_symlink_loop(local_path(ref, cluster_dir)):
            r.fail(f"{shown(ref)} is a symlink loop", key=key, hint="fix or remove the link")
    r.done()
    return resolve_base_image(cluster_dir, url=url, sha256=sha256.lower() if sha256 else None, sha256_url=sha256_url,
                              signature_url=signature_url, signing_key=sources,
                              fingerprint=pinned[0] if len(pinned) == 1 else tuple(pinned))


def resolve_base_image(cluster_dir: Path, *, url: str, fingerprint: str | tuple[str, ...], signature_url: str,
                       signing_key: str | Sequence[str], sha256: str | None = None,
                       sha256_url: str | None = None) -> BaseImage:
    """The base image whose references, as written in a cluster file in `cluster_dir` and already checked,
    are resolved: the one place where a file named by the cluster file becomes a Source."""
    keys = (signing_key,) if isinstance(signing_key, str) else tuple(signing_key)
    return BaseImage(
        image=resolve("base_image.url", url, cluster_dir),
        fingerprint=fingerprint,
        signature=resolve("base_image.signature_url", signature_url, cluster_dir),
        keys=tuple(resolve("base_image.signing_key" + (f"[{i}]" if len(keys) > 1 else ""), ref, cluster_dir)
                   for i, ref in enumerate(keys)),
        sha256=sha256,
        sha256_list=resolve("base_image.sha256_url", sha256_url, cluster_dir) if sha256_url is not None else None,
    )


def _one_or_more(r: Reader, key: str, expected: str) -> list[tuple[str, str]]:
    """A string, or a non-empty list of strings: (key path, value) pairs, none with a control character."""
    value = r.take(key)
    if isinstance(value, str):
        items = [(key, value)]
    elif isinstance(value, list) and value:
        items = [(f"{key}[{i}]", item) for i, item in enumerate(value)]
    else:
        r.fail(f"{shown(value)} is not {expected} or a list of them", key=key)
    for where, item in items:
        if not isinstance(item, str):
            r.fail(f"{shown(item)} is not {expected}", key=where)
        problem = grammar.control_problem(item)
        if problem:
            r.fail(f"{shown(item)} {problem}", key=where)
    return items


def _network(r: Reader) -> Network:
    subnet = r.parse("subnet", lambda v: IPv4Network(v, strict=True), "an IPv4 subnet like 10.0.0.0/24")
    problem = subnet_problem(subnet)
    if problem is not None:
        r.fail(f"{subnet} {problem[0]}", key="subnet", hint=problem[1])
    gateway = r.parse("gateway", IPv4Address, "an IPv4 address")
    problem = gateway_problem(gateway, subnet)
    if problem is not None:
        r.fail(f"{gateway} {problem[0]}", key="gateway", hint=problem[1])
    raw_dns = r.items("dns", [])
    dns = []
    for i, value in enumerate(raw_dns):
        try:
            dns.append(IPv4Address(value))
        except ValueError:
            r.fail(f"{shown(value)} is not an IPv4 address", key=f"dns[{i}]")
        problem = dns_problem(dns[-1])
        if problem is not None:
            r.fail(f"{value} {problem[0]}", key=f"dns[{i}]", hint=problem[1])
    network = Network(
        subnet=subnet,
        gateway=gateway,
        dns=tuple(dns),
        interface=r.text("interface", "eth0", pattern=INTERFACE_RE.fullmatch,
                         expected="an interface name like eth0 (1-15 of a-z, 0-9)"),
        domain=r.text("domain", None, check=grammar.domain_problem),
    )
    r.done()
    return network


def _node(r: Reader) -> Node:
    name = r.text("name", check=grammar.hostname_problem)
    role = r.text("role", pattern=LABEL_RE.fullmatch, expected="a role name of [a-z0-9-]")
    ip = r.parse("ip", IPv4Address, "an IPv4 address")
    platform = r.text("platform", RASPBERRY_PI, check=platform_problem)
    if platform != RASPBERRY_PI:
        container = container_node(r, name=name, role=role, ip=ip, platform=platform)
        r.done()
        return container
    model = r.text("model", "pi5-8gb")
    if model not in BOARD_MODELS:
        r.fail(f"{shown(model)} is not a known board model", key="model",
               hint="one of " + ", ".join(BOARD_MODELS) + ", or set cpus and memory_mb")
    cpus, memory = BOARD_MODELS[model]
    node = Node(
        name=name,
        role=role,
        ip=ip,
        model=model,
        cpus=r.integer("cpus", cpus, minimum=1, maximum=cpus),
        memory_mb=r.integer("memory_mb", memory, minimum=64, maximum=_installed_mb(model)),
        serial=_lower(r.text("serial", None, check=lambda v: grammar.serial_problem(v.lower()))),
        mac=_lower(r.text("mac", None, check=lambda v: grammar.mac_problem(v.lower()))),
        boot=r.text("boot", "sd", check=boot_problem, hint="boot: network for a diskless node, else leave it out"),
    )
    r.done()
    return node


def _user(r: Reader) -> User:
    name = r.text("name", check=grammar.user_name_problem)
    uid = _id(r, "uid", None)
    keys = r.items("ssh_keys", [])
    for i, key in enumerate(keys):
        problem = ssh_key_problem(key) if isinstance(key, str) else "is not text"
        if problem is not None:
            r.fail(f"{shown(key)} is not an OpenSSH public key: {problem}", key=f"ssh_keys[{i}]",
                   hint="paste one line of ~/.ssh/id_ed25519.pub")
    groups = r.items("groups", [])
    for i, group in enumerate(groups):
        problem = grammar.account_problem(group, "group name") if isinstance(group, str) else "is not a group name"
        if problem is not None:
            r.fail(f"{shown(group)} {problem}", key=f"groups[{i}]")
    password_hash = r.text("password_hash", None, check=grammar.crypt_problem,
                           hint="make one with: openssl passwd -6")
    user = User(
        name=name,
        uid=uid,
        gid=_id(r, "gid", uid),
        groups=tuple(groups),
        ssh_keys=tuple(keys),
        password_hash=password_hash,
        shell=r.text("shell", "/bin/bash", check=grammar.shell_problem),
        sudo=r.text("sudo", None, pattern=lambda v: v in SUDO_MODES, expected="'nopasswd' or 'password'"),
    )
    r.done()
    return user


def _id(r: Reader, key: str, default: int | None) -> int:
    """A UID or GID: above the image's own user (pi, 1000), below what systemd reserves."""
    value = r.take(key, default) if default is not None else r.take(key)
    if isinstance(value, bool) or not isinstance(value, int) or not ID_MIN <= value <= ID_MAX:
        r.fail(f"{shown(value)} is not a whole number from {ID_MIN} to {ID_MAX}", key=key,
               hint="1000 is the image's own user; 0-999 belong to the system, above 60000 to systemd")
    return value


def _installed_mb(model: str) -> int:
    """The RAM a board model has, from its name (pi5-8gb: 8192 MB): RealMemory cannot be more."""
    return int(model.rsplit("-", 1)[1].removesuffix("gb")) * 1024


def _lower(value: str | None) -> str | None:
    return value.lower() if value is not None else None


def _secrets_dir(value: str | None, cluster_file: Path, name: str, top: Reader) -> Path:
    if value is None:
        config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        path = Path(config) / "clusterbake" / "secrets" / name
    elif not value.strip():
        top.fail("is empty", path="secrets_dir", hint="remove the key to use ~/.config/clusterbake/secrets/NAME")
    else:
        expanded = Path(os.path.expanduser(value))
        path = expanded if expanded.is_absolute() else absolute(cluster_file.parent / expanded)
    problem = secrets_dir_problem(path)
    if problem is not None:
        top.fail(f"{shown(str(path))} {problem[0]}", path="secrets_dir", hint=problem[1])
    return path


def _check_cluster(cluster: Cluster, top: Reader, profiles_dir: Path | None) -> None:
    """Checks across keys: names and addresses unique and inside the subnet, references resolve."""
    net = cluster.network
    if not cluster.nodes:
        top.fail("has no nodes", key="nodes", hint="list at least the controller node")
    seen_names: dict[str, int] = {}
    seen_ips: dict[IPv4Address, int] = {}
    _check_board_ids(cluster, top)
    for i, node in enumerate(cluster.nodes):
        where = f"nodes[{i}]"
        if node.name in seen_names:
            top.fail(f"name {node.name!r} is already used by nodes[{seen_names[node.name]}]",
                     path=f"{where}.name", hint="give every node its own name")
        if node.ip in seen_ips:
            top.fail(f"{node.ip} is already used by nodes[{seen_ips[node.ip]}]", path=f"{where}.ip",
                     hint="give every node its own address")
        if node.ip not in net.subnet:
            top.fail(f"{node.ip} is outside network.subnet {net.subnet}", path=f"{where}.ip",
                     hint=f"choose an address in {net.subnet}")
        if node.ip in (net.subnet.network_address, net.subnet.broadcast_address):
            top.fail(f"{node.ip} is the network or broadcast address of {net.subnet}", path=f"{where}.ip")
        if node.ip == net.gateway and not is_door(cluster, node.name):
            top.fail(f"{node.ip} is the gateway's address", path=f"{where}.ip",
                     hint="choose another address; network.gateway is the router")
        no_role = role_problem(profiles_dir, node.role) if profiles_dir is not None else None
        if no_role is not None:
            top.fail(no_role[0], path=f"{where}.role", hint=no_role[1])
        seen_names[node.name] = i
        seen_ips[node.ip] = i
    for key, ref in (("time.server", cluster.time_server), ("slurm.controller", cluster.slurm_controller)):
        if ref not in seen_names:
            top.fail(f"{shown(ref)} names no node", path=key, hint="use one of " + ", ".join(seen_names))
    user_names = [u.name for u in cluster.users]
    for i, user in enumerate(cluster.users):
        if user_names.index(user.name) != i:
            top.fail(f"user {user.name!r} is listed twice", path=f"users[{i}].name")
    uids = [u.uid for u in cluster.users]
    for i, user in enumerate(cluster.users):
        if uids.index(user.uid) != i:
            top.fail(f"uid {user.uid} is already used by users[{uids.index(user.uid)}]", path=f"users[{i}].uid")
    if cluster.first_user is not None and cluster.first_user not in user_names:
        top.fail(f"{cluster.first_user!r} names no entry of users", path="first_user")


def _check_board_ids(cluster: Cluster, top: Reader) -> None:
    """No board may match two nodes at first boot: MACs unique, no serial another's short form."""
    macs: dict[str, int] = {}
    serials: dict[str, int] = {}
    for i, node in enumerate(cluster.nodes):
        if node.mac is not None:
            if node.mac in macs:
                top.fail(f"{node.mac} is already the MAC of nodes[{macs[node.mac]}]", path=f"nodes[{i}].mac",
                         hint="every board has its own MAC address")
            macs[node.mac] = i
        if node.serial is not None:
            for serial, j in serials.items():
                if serials_confusable(serial, node.serial):
                    top.fail(f"{node.serial} and the serial {serial} of nodes[{j}] could be the same board "
                             f"(one is the other's short form)", path=f"nodes[{i}].serial",
                             hint="give each node's full serial from /proc/cpuinfo")
            serials[node.serial] = i
