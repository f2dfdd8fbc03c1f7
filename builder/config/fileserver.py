"""`fileserver:` in the cluster file: which node exports which directories over NFS, and to whom.

None at all is valid (local homes on every node). Each export is mounted over the same path on
every other node, so it may be neither a system directory nor inside one, nor overlap another.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Network

from builder.config import grammar
from builder.config.grammar import shown
from builder.config.model import Cluster, FileServer, Network
from builder.config.reader import Reader

# Exports are mounted over these on every other node: never over (or under) the system's own.
SYSTEM_PATHS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/lost+found", "/media", "/proc",
                "/root", "/run", "/sbin", "/snap", "/sys", "/tmp", "/usr", "/var")
EXPORT_RE = re.compile(r"(?:/[a-z0-9_]+)+")
MAX_EXPORT = 255
DEFAULT_EXPORTS = ("/home", "/scratch")


def read_fileserver(top: Reader, network: Network) -> FileServer | None:
    """`fileserver:` (optional): which node serves which directories to which part of the subnet."""
    raw_section = top.take("fileserver", None)
    if raw_section is None:
        return None
    r = Reader(raw_section, top.file, "fileserver")
    node = r.text("node", check=grammar.hostname_problem)
    clients_text = r.text("clients", str(network.subnet), expected="an IPv4 subnet like 10.0.0.0/24")
    try:
        clients = IPv4Network(clients_text, strict=True)
    except ValueError:
        r.fail(f"{shown(clients_text)} is not an IPv4 subnet like 10.0.0.0/24", key="clients",
               hint=f"e.g. {network.subnet}")
    if not clients.subnet_of(network.subnet):
        r.fail(f"{clients} is outside network.subnet {network.subnet}", key="clients",
               hint=f"export only to the cluster: {network.subnet} or a part of it")
    raw = r.items("exports", list(DEFAULT_EXPORTS))
    if not raw:
        r.fail("is empty", key="exports", hint="list the directories to share, or remove fileserver:")
    exports: list[str] = []
    for i, path in enumerate(raw):
        key = f"exports[{i}]"
        problem = _export_problem(path)
        if problem is not None:
            r.fail(f"{shown(path)} {problem}", key=key, hint="e.g. /home or /scratch")
        clash = next((s for s in SYSTEM_PATHS if path == s or path.startswith(s + "/")), None)
        if clash is not None:
            r.fail(f"{path} would be mounted over the system's {clash} on every other node", key=key,
                   hint="export a directory of its own, such as /scratch or /srv/data")
        nested = next((e for e in exports if path == e or path.startswith(e + "/") or e.startswith(path + "/")),
                      None)
        if nested is not None:
            r.fail(f"{path} overlaps {nested}, exported already", key=key,
                   hint="export each directory once, none inside another")
        exports.append(path)
    r.done()
    return FileServer(node=node, exports=tuple(exports), clients=clients)


def _export_problem(path: object) -> str | None:
    if not isinstance(path, str):
        return "is not an absolute path"
    problem = grammar.control_problem(path)
    if problem is not None:
        return problem
    if len(path) > MAX_EXPORT:
        return f"is {len(path)} characters long; at most {MAX_EXPORT}"
    if not EXPORT_RE.fullmatch(path):
        return "is not an absolute path of lower-case letters, digits and _"
    return None


def check_fileserver(cluster: Cluster, top: Reader) -> None:
    server = cluster.fileserver
    if server is not None and server.node not in {n.name for n in cluster.nodes}:
        top.fail(f"{shown(server.node)} names no node", path="fileserver.node",
                 hint="use one of " + ", ".join(n.name for n in cluster.nodes))
