"""The hostile inputs of round two (issue 23), by class: each fails on the code before it, and each
makes one mistake in an otherwise valid sandbox (see hostile_cases.py for the first round)."""

from __future__ import annotations

import os
import shutil
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from tests.config.hostile_cases import Make, add_node, at, both, env, need_root, overlay_file, profile_line
from tests.config.hostile_support import Case, Sandbox

# --- 1. no host file reaches an image through overlays or profiles -----------------------------


def secret_at_home(box: Sandbox) -> Path:
    """A private key where a user keeps one: what a community overlay must not read."""
    ssh = box.root / "home" / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    key = ssh / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n-----END OPENSSH PRIVATE KEY-----\n")
    return key


def overlay_link(rel: str, target: str | None = None) -> Any:
    """A symlink in the overlays folder (to the user's private key when no target is given)."""
    def make(box: Sandbox) -> None:
        path = box.overlays / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target if target is not None else secret_at_home(box))
    return make


def including(statement: str) -> Any:
    return overlay_file("base/etc/motd.j2", statement + "\n")


def overlay_dir_elsewhere(name: str) -> Any:
    """overlays/<name> is a symlink to a copy of it outside overlays/ (holding a link to the key)."""
    def make(box: Sandbox) -> None:
        outside = box.root / "home" / f"community-{name}"
        shutil.move(box.overlays / name, outside)
        (box.overlays / name).symlink_to(outside)
    return make


def moved_outside(folder: str, rel: str) -> Any:
    """A file of profiles/ or overlays/ replaced by a link to the same content kept outside."""
    def make(box: Sandbox) -> None:
        path = (box.profiles if folder == "profiles" else box.overlays) / rel
        outside = box.root / "home" / path.name
        shutil.move(path, outside)
        path.symlink_to(outside)
    return make


HOST_FILES: list[Case] = [
    Case("include-unlisted-overlay-passwd", both(overlay_link("stash/passwd", "/etc/passwd"),
                                                 including("{% include 'stash/passwd' %}")), "stash/passwd"),
    Case("include-unlisted-overlay-ssh-key", both(overlay_link("stash/id"), including("{% include 'stash/id' %}")),
         "stash/id"),
    Case("include-listed-overlay-link", both(overlay_link("base/etc/key"), including("{% include 'base/etc/key' %}")),
         "base/etc/key"),
    Case("import-outside", both(overlay_link("stash/macros.j2"),
                                including("{% import 'stash/macros.j2' as m %}x")), "stash/macros.j2"),
    Case("from-import-outside", both(overlay_link("stash/macros.j2"),
                                     including("{% from 'stash/macros.j2' import x %}x")), "stash/macros.j2"),
    Case("extends-outside", both(overlay_link("stash/layout.j2"), including("{% extends 'stash/layout.j2' %}")),
         "stash/layout.j2"),
    Case("include-through-linked-folder", both(overlay_link("stash", "/etc"),
                                               including("{% include 'stash/passwd' %}")), "stash/passwd"),
    Case("include-through-linked-subfolder", both(overlay_link("base/etc/host", "/etc"),
                                                  including("{% include 'base/etc/host/hostname' %}")),
         "base/etc/host"),
    Case("overlay-folder-linked-outside", overlay_dir_elsewhere("base"), "overlays/base"),
    Case("overlay-node-folder-linked-outside", overlay_dir_elsewhere("node-identity"), "overlays/node-identity"),
    Case("manifest-linked-outside", moved_outside("overlays", "users/manifest.yaml"), "users/manifest.yaml"),
    Case("profile-linked-outside", moved_outside("profiles", "compute.yaml"), "profiles/compute.yaml"),
    Case("profile-common-linked-outside", moved_outside("profiles", "common.yaml"), "profiles/common.yaml"),
]

# --- 2. networks that cannot be right ----------------------------------------------------------


def network(**values: Any) -> Any:
    def make(box: Any) -> None:
        box.data["network"].update(values)
    return make


def renumbered(subnet: str) -> Any:
    """The whole cluster moved into `subnet` (gateway .1, nodes .10, .20, .101, .102), so that the
    subnet itself is the only mistake."""
    def make(box: Any) -> None:
        net = IPv4Network(subnet)
        box.data["network"].update(subnet=subnet, gateway=str(net.network_address + 1),
                                   dns=[str(net.network_address + 1)])
        for node, offset in zip(box.data["nodes"], (10, 20, 101, 102), strict=True):
            node["ip"] = str(net.network_address + offset)
    return make


# The key ends in ':' so that "nodes[0].ip: … is outside network.subnet …" does not pass for it.
NETWORKS: list[Case] = [
    Case("subnet-everyone", renumbered("0.0.0.0/0"), "network.subnet:"),
    Case("subnet-half-internet", renumbered("0.0.0.0/1"), "network.subnet:"),
    Case("subnet-slash-4", renumbered("16.0.0.0/4"), "network.subnet:"),
    Case("subnet-loopback", renumbered("127.0.0.0/24"), "network.subnet:"),
    Case("subnet-multicast", renumbered("224.0.0.0/24"), "network.subnet:"),
    Case("subnet-link-local", renumbered("169.254.0.0/24"), "network.subnet:"),
    Case("subnet-reserved", renumbered("240.0.0.0/24"), "network.subnet:"),
    Case("subnet-this-network", renumbered("0.0.0.0/24"), "network.subnet:"),
    Case("subnet-slash-31", network(subnet="10.0.0.0/31", gateway="10.0.0.1"), "network.subnet:"),
    Case("subnet-slash-32", network(subnet="10.0.0.1/32", gateway="10.0.0.1"), "network.subnet:"),
    Case("gateway-network-address", network(gateway="10.0.0.0"), "network.gateway"),
    Case("gateway-broadcast-address", network(gateway="10.0.0.255"), "network.gateway"),
    Case("dns-unspecified", network(dns=["0.0.0.0"]), "network.dns[0]"),
    Case("dns-broadcast", network(dns=["10.0.0.1", "255.255.255.255"]), "network.dns[1]"),
    Case("dns-multicast", network(dns=["224.0.0.251"]), "network.dns[0]"),
    Case("dns-loopback", network(dns=["127.0.0.53"]), "network.dns[0]"),
    Case("dns-link-local", network(dns=["169.254.1.1"]), "network.dns[0]"),
]

# --- 4. environment settings: read once, at start, with the cluster file's grammar ----------------

BAD_SETTINGS: dict[str, list[tuple[str, str]]] = {
    "CLUSTERBAKE_DEBIAN_MIRROR": [
        ("newline-trusted", "http://deb.debian.org/debian\nTrusted: yes"),
        ("cr", "http://deb.debian.org/debian\r"),
        ("file", "file:///etc"),
        ("javascript", "javascript:alert(1)"),
        ("option", "--no-check-gpg"),
        ("no-host", "http:///debian"),
        ("space", "http://deb.debian.org/debian main"),
        ("ftp", "ftp://deb.debian.org/debian"),
        ("credentials", "http://user:secret@deb.debian.org/debian"),
        ("fragment", "http://deb.debian.org/debian#x"),
        ("non-ascii", "http://deb.debian.org/d\u00e9bian"),
        ("huge", "http://deb.debian.org/" + "d" * 5000),
    ],
    "CLUSTERBAKE_JOBS": [
        ("arabic-digit", "\u0663"), ("superscript", "\u00b2"), ("fullwidth", "\uff12"),
        ("5000-digits", "9" * 5000), ("zero", "0"), ("negative", "-1"), ("huge", "100000"),
        ("space", " 2"), ("newline", "2\n"), ("word", "lots"),
    ],
    "CLUSTERBAKE_LAYER_CACHE_GIB": [
        ("arabic-digit", "\u0663"), ("superscript", "\u00b2"), ("5000-digits", "9" * 5000),
        ("negative", "-1"), ("float", "1.5"), ("huge", "99999999"), ("word", "lots"),
    ],
    "CLUSTERBAKE_CACHE": [("newline", "/tmp/x\ny"), ("nul-like-escape", "/tmp/\x1b[2J")],
    "CLUSTERBAKE_PROFILES": [("newline", "/tmp\n"), ("huge", "/" + "p" * 5000)],
}

SETTINGS: list[Case] = [
    Case(f"env-{name.removeprefix('CLUSTERBAKE_').lower()}-{label}", env(name, value), name, code=2)
    for name, values in BAD_SETTINGS.items() for label, value in values
]

# --- 6. templates: every failure one line, every resource bounded ----------------------------------

BIG = "10 ** 1000 * 10 ** 1000 * 10 ** 1000 * 10 ** 1000 * 10 ** 1000"     # 5,001 digits
FAILING: dict[str, str] = {      # fail at once: one line naming the file and line
    "range-1e9": "{{ range(10 ** 9) | list }}",
    "macro-recursion": "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    "zero-division": "{{ 1 / 0 }}",
    "int-plus-str": "{{ 1 + 'a' }}",
    "format-c-overflow": "{{ '%c' | format(1114112) }}",
    "int-5001-digits": "{{ " + BIG + " }}",
    "undefined-attribute-call": "{{ none.x() }}",
    "dict-missing-key": "{{ {}['x'] ~ '' }}",
}
SIZES: dict[str, str] = {        # refused before the value is built (the old code built it: in a child)
    "center-1e10": "{{ 'a' | center(10 ** 10) }}",
    "printf-width-filter": "{{ '%3000000000d' | format(1) }}",
    "printf-width-operator": "{{ '%3000000000d' % 1 }}",
    "printf-precision": "{{ '%.999999999f' | format(1.5) }}",
    "str-format-width": "{{ '{:3000000000}'.format(1) }}",
    "indent-1e9": "{{ 'a\\nb' | indent(10 ** 9) }}",
    "zfill-1e10": "{{ 'a'.zfill(10 ** 10) }}",
    "ljust-1-9-gb": "{{ 'a'.ljust(1900000000) }}",
    "batch-fill-1e9": "{{ [1] | batch(10 ** 9, 'x') | list }}",
    "slice-1e9": "{{ [1] | slice(10 ** 9) | list }}",
}
HEAVY: dict[str, str] = {        # would take memory or time: run in a child with bounds
    "include-itself": "{% include 'base/etc/motd.j2' %}",
    "join-2-gb": "{{ (['x' * 10000000] * 200) | join }}",
    "output-100-mb": "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
    "macro-output-10-gb": "{% macro m() %}{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}{% endmacro %}"
                          "{{ m() }}",
    "nested-loops-1e10": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "lipsum-1e6": "{{ lipsum(n=1000000) }}",
    "wordwrap-huge-input": "{{ ('x ' * 8000000) | wordwrap(1) | length }}",
}

TEMPLATE_LIMITS: list[Case] = [
    *(Case(f"template-{name}", including(text), "base/etc/motd") for name, text in FAILING.items()),
    *(Case(f"template-{name}", including(text), "base/etc/motd", process=True)
      for name, text in (*SIZES.items(), *HEAVY.items())),
    *(Case(f"profile-template-{name}", profile_line(FAILING[name]), "profiles/compute.yaml")
      for name in ("zero-division", "int-plus-str", "range-1e9")),
    *(Case(f"profile-template-{name}", profile_line(SIZES[name]), "profiles/compute.yaml", process=True)
      for name in ("center-1e10", "printf-width-filter")),
    Case("profile-template-nested-loops", profile_line(HEAVY["nested-loops-1e10"]), "profiles/compute.yaml",
         process=True),
    Case("file-name-type-error", overlay_file("base/etc/{{ 1 - 'a' }}.j2", "x"), "overlays/base"),
    Case("file-name-nested-loops", overlay_file(
        "base/etc/{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x", "x"),
        "overlays/base", process=True),
    Case("manifest-each-range-1e9", overlay_file("users/manifest.yaml", "each:\n  'home/*': 'u in range(10 ** 9)'\n"),
         "users/"),
    Case("manifest-each-zero-division", overlay_file("users/manifest.yaml", "each:\n  'home/*': 'u in [1 / 0]'\n"),
         "users/"),
]

# --- 5. tracebacks left: symlink loops, unreadable "regular" files, hidden limits, names, parents ------


def looping(*path: Any) -> Any:
    """The key at `path` names a symlink loop beside the cluster file."""
    def make(box: Sandbox) -> None:
        name = "loop.img.xz" if path[-1] == "url" else "loop"
        (box.root / "work" / name).symlink_to(name)
        target: Any = box.data
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = name
    return make


def secrets_loop(box: Sandbox) -> None:
    (box.root / "home" / "loop").symlink_to("loop")
    box.data["secrets_dir"] = str(box.root / "home" / "loop" / "secrets")


def secrets_in_open_folder(owner: int | None, mode: int) -> Any:
    """secrets_dir, private itself, inside a folder others can write to (or that someone else owns)."""
    def make(box: Sandbox) -> None:
        if owner is not None:
            need_root()
        folder = box.root / "home" / "open"
        folder.mkdir()
        secrets = folder / "secrets"
        secrets.mkdir(mode=0o700)
        os.chmod(folder, mode)
        if owner is not None:
            os.chown(folder, owner, owner)
        box.data["secrets_dir"] = str(secrets)
    return make


def many_nodes(count: int) -> Any:
    def make(box: Sandbox) -> None:
        box.data["network"].update(subnet="10.0.0.0/20")
        box.data["nodes"] += [{"name": f"n{n:04d}", "role": "compute", "model": "pi4-8gb",
                               "ip": f"10.0.{1 + n // 250}.{1 + n % 250}"} for n in range(count - 4)]
    return make


TRACEBACKS: list[Case] = [
    Case("url-symlink-loop", looping("base_image", "url"), "base_image.url"),
    Case("signature-url-symlink-loop", looping("base_image", "signature_url"), "base_image.signature_url"),
    Case("signing-key-symlink-loop", looping("base_image", "signing_key"), "base_image.signing_key"),
    Case("signing-key-list-symlink-loop", both(looping("base_image", "signing_key"),
                                               lambda box: box.data["base_image"].update(
                                                   signing_key=["https://example.org/key.gpg", "loop"])),
         "base_image.signing_key[1]"),
    Case("sha256-url-symlink-loop", both(looping("base_image", "sha256_url"),
                                         lambda box: box.data["base_image"].pop("sha256")), "base_image.sha256_url"),
    Case("secrets-dir-symlink-loop", secrets_loop, "secrets_dir"),
    Case("cluster-proc-self-mem", lambda box: setattr(box, "cluster_arg", "/proc/self/mem"), "/proc/self/mem"),
    Case("cluster-arg-symlink-loop", lambda box: (setattr(box, "cluster_arg", str(box.root / "work" / "c.yaml")),
                                              (box.root / "work" / "c.yaml").symlink_to("c.yaml")), "c.yaml"),
    Case("nodes-2500", many_nodes(2500), "nodes", process=True),
    Case("node-all-digits", at(("nodes", 3, "name"), "123"), "nodes[3].name"),
    Case("node-hex-address", at(("nodes", 3, "name"), "0x1f"), "nodes[3].name"),
    Case("node-octal-address", at(("nodes", 3, "name"), "0777"), "nodes[3].name"),
    Case("secrets-in-world-writable-folder-of-another", secrets_in_open_folder(65534, 0o777), "secrets_dir"),
    Case("secrets-in-folder-of-another", secrets_in_open_folder(65534, 0o755), "secrets_dir"),
    Case("secrets-in-world-writable-folder", secrets_in_open_folder(None, 0o777), "secrets_dir"),
    Case("secrets-in-group-writable-folder", secrets_in_open_folder(None, 0o770), "secrets_dir"),
]

# --- 3. roles on the wrong platform, roles twice ---------------------------------------------------

def served_by(node: str) -> Any:
    return lambda box: box.data.update(fileserver={"node": node, "exports": ["/home"]})


def gps_auxiliary(box: Sandbox) -> None:
    box.data["nodes"][1]["role"] = "auxiliary"


ROLES: list[Case] = [
    Case("lxc-nfs-server", both(add_node(name="nas", role="fileserver", ip="10.0.0.30", platform="proxmox-lxc"),
                                lambda box: box.data["nodes"][4].pop("model"), served_by("nas")), "nodes[4].role"),
    Case("second-nfs-server", both(gps_auxiliary, served_by("gps"),
                                   add_node(name="nas", role="fileserver", ip="10.0.0.30")), "nodes[4].role"),
    Case("second-nfs-server-first", both(gps_auxiliary, served_by("nas"),
                                         add_node(name="nas", role="fileserver", ip="10.0.0.30")), "nodes[1].role"),
]

# --- 4. Slurm partitions (`slurm.partitions`) --------------------------------------------------------

def partitions(*items: Any) -> Make:
    def make(box: Sandbox) -> None:
        del box.data["slurm"]["partition"]
        box.data["slurm"]["partitions"] = list(items)
    return make


PARTITIONS: list[Case] = [
    Case("partitions-and-partition", at(("slurm", "partitions"), [{"name": "main"}]), "slurm.partitions"),
    Case("partitions-empty", partitions(), "slurm.partitions"),
    Case("partitions-not-a-list", both(partitions(), at(("slurm", "partitions"), "main")), "slurm.partitions"),
    Case("partition-not-a-mapping", partitions("main"), "slurm.partitions[0]"),
    Case("partition-no-name", partitions({"max_time": "60"}), "slurm.partitions[0].name"),
    Case("partition-keyword", partitions({"name": "DEFAULT"}), "slurm.partitions[0].name"),
    Case("partition-twice", partitions({"name": "main"}, {"name": "main"}), "slurm.partitions[1].name"),
    Case("partition-max-time-words", partitions({"name": "main", "max_time": "2 days"}),
         "slurm.partitions[0].max_time"),
    Case("partition-max-time-zero", partitions({"name": "main", "max_time": 0}), "slurm.partitions[0].max_time"),
    Case("partition-max-time-75-minutes", partitions({"name": "main", "max_time": "1:75:00"}),
         "slurm.partitions[0].max_time"),
    Case("partition-max-time-25-hours", partitions({"name": "main", "max_time": "1-25"}),
         "slurm.partitions[0].max_time"),
    Case("partition-max-time-float", partitions({"name": "main", "max_time": 1.5}), "slurm.partitions[0].max_time"),
    Case("partition-unknown-node", partitions({"name": "main", "nodes": ["node09"]}),
         "slurm.partitions[0].nodes[0]"),
    Case("partition-node-twice", partitions({"name": "main", "nodes": ["node01", "node01"]}),
         "slurm.partitions[0].nodes[1]"),
    Case("partition-node-without-slurmd", partitions({"name": "main", "nodes": ["head"]}),
         "slurm.partitions[0].nodes[0]"),
    Case("partition-nodes-empty", partitions({"name": "main", "nodes": []}), "slurm.partitions[0].nodes"),
    Case("partition-two-defaults", partitions({"name": "a", "default": True}, {"name": "b", "default": True}),
         "slurm.partitions[1].default"),
    Case("partition-default-text", partitions({"name": "a", "default": "yes"}), "slurm.partitions[0].default"),
    Case("partition-unknown-key", partitions({"name": "main", "maxtime": "60"}), "slurm.partitions[0].maxtime"),
]

ROUND2: list[Case] = [*HOST_FILES, *NETWORKS, *ROLES, *SETTINGS, *TEMPLATE_LIMITS, *TRACEBACKS, *PARTITIONS]
