"""Load a cluster file into the typed model, checking everything before any work starts."""

from __future__ import annotations

import os
import re
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import yaml

from builder.config.model import BOARD_MODELS, BaseImage, Cluster, Network, Node, User
from builder.config.reader import Reader
from builder.errors import InputError

NAME_RE = re.compile(r"^[a-z0-9-]+$")
HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
USERNAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
HEX64_RE = re.compile(r"^[0-9a-fA-F]{64}$")
FINGERPRINT_RE = re.compile(r"^[0-9A-F]{40}$")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
SERIAL_RE = re.compile(r"^[0-9a-f]{8,16}$")
IMAGE_SUFFIXES = (".img.xz", ".img.gz", ".img.zst", ".img")
SUDO_MODES = ("nopasswd", "password")


def read_yaml(path: Path) -> object:
    """Parse a YAML file; a syntax error becomes one line with its position."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file",
                         hint="pass --cluster FILE (make: CLUSTER=FILE)") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise InputError(f"{path.name}: {where}: YAML syntax error: {exc.problem}") from None


def load_cluster(path: Path, profiles_dir: Path | None = None) -> Cluster:
    """Read and validate a cluster file; raise InputError naming file, key and fix."""
    path = Path(path)
    top = Reader(read_yaml(path), path)
    name = top.text("name", pattern=NAME_RE.match, expected="a name of [a-z0-9-]+")
    base_image = _base_image(top.sub("base_image"))
    network = _network(top.sub("network"))
    time = top.sub("time")
    time_server = time.text("server")
    time.done()
    slurm = top.sub("slurm")
    controller = slurm.text("controller")
    partition = slurm.text("partition", "main", pattern=HOSTNAME_RE.match, expected="a partition name")
    slurm.done()
    nodes = tuple(_node(top.item("nodes", i, raw)) for i, raw in enumerate(top.items("nodes")))
    users = tuple(_user(top.item("users", i, raw)) for i, raw in enumerate(top.items("users", [])))
    first_user = top.text("first_user", None)
    ssh = top.sub("ssh", {})
    password_auth = ssh.flag("password_authentication", False)
    ssh.done()
    secrets = top.text("secrets_dir", None)
    top.done()

    cluster = Cluster(
        source=path.resolve(),
        name=name,
        base_image=base_image,
        network=network,
        time_server=time_server,
        slurm_controller=controller,
        slurm_partition=partition,
        nodes=nodes,
        users=users,
        first_user=first_user,
        ssh_password_authentication=password_auth,
        secrets_dir=_secrets_dir(secrets, path, name),
    )
    _check_cluster(cluster, top, profiles_dir)
    return cluster


def _base_image(r: Reader) -> BaseImage:
    url = r.text("url")
    if not url.endswith(IMAGE_SUFFIXES):
        r.fail(f"{url!r} does not end in one of {', '.join(IMAGE_SUFFIXES)}", key="url",
               hint="point at the .img.xz (or .img.gz, .img.zst, .img) file itself")
    sha256 = r.text("sha256", None, pattern=HEX64_RE.match, expected="64 hexadecimal digits")
    sha256_url = r.text("sha256_url", None)
    if (sha256 is None) == (sha256_url is None):
        r.fail("needs exactly one of 'sha256' and 'sha256_url'",
               hint="give the image's SHA-256 or the URL of its .sha256 file")
    pinned = []
    for key, fingerprint in _one_or_more(r, "fingerprint", "a 40-digit OpenPGP fingerprint"):
        compact = fingerprint.replace(" ", "").upper()
        if not FINGERPRINT_RE.match(compact):
            r.fail(f"{fingerprint!r} is not a 40-digit OpenPGP fingerprint", key=key,
                   hint="copy the full fingerprint of the signing key (gpg --fingerprint)")
        if compact in pinned:
            r.fail(f"{compact} is listed twice", key=key)
        pinned.append(compact)
    signature_url = r.text("signature_url")
    sources = [source for _, source in _one_or_more(r, "signing_key", "a URL or path of the signing key")]
    base = BaseImage(
        url=url,
        sha256=sha256.lower() if sha256 else None,
        sha256_url=sha256_url,
        signature_url=signature_url,
        signing_key=sources[0] if len(sources) == 1 else tuple(sources),
        fingerprint=pinned[0] if len(pinned) == 1 else tuple(pinned),
    )
    r.done()
    return base


def _one_or_more(r: Reader, key: str, expected: str) -> list[tuple[str, str]]:
    """A string, or a non-empty list of strings: (key path, value) pairs."""
    value = r.take(key)
    if isinstance(value, str):
        return [(key, value)]
    if not isinstance(value, list) or not value:
        r.fail(f"{value!r} is not {expected} or a list of them", key=key)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            r.fail(f"{item!r} is not {expected}", key=f"{key}[{i}]")
    return [(f"{key}[{i}]", item) for i, item in enumerate(value)]


def _network(r: Reader) -> Network:
    subnet = r.parse("subnet", lambda v: IPv4Network(v, strict=True), "an IPv4 subnet like 10.0.0.0/24")
    gateway = r.parse("gateway", IPv4Address, "an IPv4 address")
    if gateway not in subnet:
        r.fail(f"{gateway} is outside network.subnet {subnet}", key="gateway")
    raw_dns = r.items("dns", [])
    dns = []
    for i, value in enumerate(raw_dns):
        try:
            dns.append(IPv4Address(value))
        except ValueError:
            r.fail(f"{value!r} is not an IPv4 address", key=f"dns[{i}]")
    network = Network(
        subnet=subnet,
        gateway=gateway,
        dns=tuple(dns),
        interface=r.text("interface", "eth0", pattern=re.compile(r"^[a-z0-9]{1,15}$").match,
                         expected="an interface name like eth0"),
        domain=r.text("domain", None, pattern=re.compile(r"^[a-z0-9.-]+$").match, expected="a DNS domain"),
    )
    r.done()
    return network


def _node(r: Reader) -> Node:
    name = r.text("name", pattern=HOSTNAME_RE.match, expected="a hostname of [a-z0-9-]")
    role = r.text("role", pattern=NAME_RE.match, expected="a role name of [a-z0-9-]+")
    ip = r.parse("ip", IPv4Address, "an IPv4 address")
    model = r.text("model", "pi5-8gb")
    if model not in BOARD_MODELS:
        r.fail(f"{model!r} is not a known board model", key="model",
               hint="one of " + ", ".join(BOARD_MODELS) + ", or set cpus and memory_mb")
    cpus, memory = BOARD_MODELS[model]
    node = Node(
        name=name,
        role=role,
        ip=ip,
        model=model,
        cpus=r.integer("cpus", cpus, minimum=1),
        memory_mb=r.integer("memory_mb", memory, minimum=64),
        serial=_lower(r.text("serial", None, pattern=lambda v: bool(SERIAL_RE.match(v.lower())),
                             expected="a board serial (8 to 16 hex digits)")),
        mac=_lower(r.text("mac", None, pattern=lambda v: bool(MAC_RE.match(v.lower())),
                          expected="a MAC address like 2c:cf:67:00:00:01")),
    )
    r.done()
    return node


def _user(r: Reader) -> User:
    name = r.text("name", pattern=USERNAME_RE.match, expected="a user name of [a-z_][a-z0-9_-]*")
    uid = r.integer("uid", minimum=1000)
    keys = r.items("ssh_keys", [])
    for i, key in enumerate(keys):
        if not isinstance(key, str) or not re.match(r"^(ssh-|ecdsa-|sk-)\S+ \S+", key):
            r.fail(f"{str(key)[:30]!r}… is not an OpenSSH public key", key=f"ssh_keys[{i}]",
                   hint="paste one line of ~/.ssh/id_ed25519.pub")
    groups = r.items("groups", [])
    for i, group in enumerate(groups):
        if not isinstance(group, str) or not USERNAME_RE.match(group):
            r.fail(f"{group!r} is not a group name", key=f"groups[{i}]")
    password_hash = r.text("password_hash", None, pattern=lambda v: v.startswith("$"),
                           expected="a crypt(3) hash (openssl passwd -6)")
    user = User(
        name=name,
        uid=uid,
        gid=r.integer("gid", uid, minimum=1000),
        groups=tuple(groups),
        ssh_keys=tuple(keys),
        password_hash=password_hash,
        shell=r.text("shell", "/bin/bash", pattern=lambda v: v.startswith("/"), expected="an absolute path"),
        sudo=r.text("sudo", None, pattern=lambda v: v in SUDO_MODES, expected="'nopasswd' or 'password'"),
    )
    r.done()
    return user


def _lower(value: str | None) -> str | None:
    return value.lower() if value is not None else None


def _secrets_dir(value: str | None, cluster_file: Path, name: str) -> Path:
    if value is None:
        config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(config) / "clusterbake" / "secrets" / name
    expanded = Path(os.path.expanduser(value))
    return expanded if expanded.is_absolute() else (cluster_file.parent / expanded).resolve()


def _check_cluster(cluster: Cluster, top: Reader, profiles_dir: Path | None) -> None:
    """Checks across keys: names and addresses unique and inside the subnet, references resolve."""
    net = cluster.network
    if not cluster.nodes:
        top.fail("has no nodes", key="nodes", hint="list at least the controller node")
    seen_names: dict[str, int] = {}
    seen_ips: dict[IPv4Address, int] = {}
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
        if node.ip == net.gateway:
            top.fail(f"{node.ip} is the gateway's address", path=f"{where}.ip",
                     hint="choose another address; network.gateway is the router")
        if profiles_dir is not None and not (profiles_dir / f"{node.role}.yaml").is_file():
            known = sorted(p.stem for p in profiles_dir.glob("*.yaml") if p.stem != "common")
            top.fail(f"role {node.role!r} has no profile {profiles_dir.name}/{node.role}.yaml",
                     path=f"{where}.role", hint="use one of " + ", ".join(known) + " or add that profile")
        seen_names[node.name] = i
        seen_ips[node.ip] = i
    for key, ref in (("time.server", cluster.time_server), ("slurm.controller", cluster.slurm_controller)):
        if ref not in seen_names:
            top.fail(f"{ref!r} names no node", path=key, hint="use one of " + ", ".join(seen_names))
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
