#!/usr/bin/python3
"""clusterbake first-boot identity: make this board the cluster node it is.

A role image fits every node of its role. This script (run by clusterbake-identity.service
before NetworkManager) picks the node from /etc/clusterbake/inventory.json, in this order:

  1. /boot/firmware/node.txt names it: a person's explicit choice beats anything detected,
     and it is the way to swap a board without editing the cluster file. A node card
     (`clusterbake node-card NAME`: the name, then the node's identity as one JSON line)
     also carries the node's files, so it works for a node added after the image was built;
     a card that is not valid for this image is refused as a whole, before anything is written;
  2. the board's serial number (/proc/device-tree/serial-number, else `Serial` in
     /proc/cpuinfo) equals the node's `serial`, or ends with it (the short form);
  3. one of the board's MAC addresses (/sys/class/net/*/address) is the node's `mac`.

It then writes that node's files (hostname, network keyfile …) exactly as rendered at build
time, adds `127.0.1.1 <name>` to /etc/hosts and records the choice, so it runs only once.
Without a match the board stays on DHCP under a name derived from its serial, says so, and
tries again at the next boot.

Runs under the image's own python3: standard library only. For tests, the root, /proc and
/sys can be moved: --root/--proc/--sys, or CLUSTERBAKE_ROOT/_PROC/_SYS.
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import re
import shutil
import sys
from pathlib import Path
from typing import Any

INVENTORY = "etc/clusterbake/inventory.json"
NODE_TXT = "boot/firmware/node.txt"
DONE = "var/lib/clusterbake/identity"
SELF_ALIAS = "127.0.1.1"
MAX_NODE_TXT = 1 << 20
HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
# What a card's files may never be: the boot partition, the kernel's trees, the identity's own record.
FORBIDDEN = ("/boot/", "/proc/", "/sys/", "/dev/", "/run/", "/var/lib/clusterbake/")


def say(message: str) -> None:
    print(f"clusterbake-identity: {message}", flush=True)


def board_serial(proc: Path) -> str | None:
    try:
        raw = (proc / "device-tree" / "serial-number").read_bytes()
        serial = raw.replace(b"\0", b"").decode("ascii", "replace").strip().lower()
        if serial:
            return serial
    except OSError:
        pass
    try:
        for line in (proc / "cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Serial" and value.strip():
                return value.strip().lower()
    except OSError:
        pass
    return None


def board_macs(sys_dir: Path) -> list[str]:
    macs = []
    net = sys_dir / "class" / "net"
    for iface in sorted(net.iterdir()) if net.is_dir() else []:
        try:
            mac = (iface / "address").read_text().strip().lower()
        except OSError:
            continue
        if iface.name != "lo" and mac and mac != "00:00:00:00:00:00":
            macs.append(mac)
    return macs


class BadCard(Exception):
    """A node.txt that cannot be used: the message says why, in one line."""


def _lines(root: Path) -> list[str] | None:
    try:
        with (root / NODE_TXT).open("rb") as f:
            raw = f.read(MAX_NODE_TXT + 1)
    except OSError:
        return None
    if len(raw) > MAX_NODE_TXT:
        raise BadCard(f"/{NODE_TXT} is larger than {MAX_NODE_TXT} bytes")
    text = raw.decode("utf-8", errors="replace").lstrip("\ufeff")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def read_node_txt(root: Path) -> tuple[str | None, dict[str, Any] | None]:
    """The name node.txt gives, and its node card (the line after the name) if it has one."""
    lines = _lines(root)
    if not lines:
        return None, None
    name = lines[0].split()[0].lower()
    # Other lines are ignored, as in a plain node.txt; a line starting with `{` is a node card's identity.
    cards = [line for line in lines[1:] if line.startswith("{")]
    if not cards:
        return name, None
    try:
        card = json.loads(cards[0])
    except ValueError as exc:
        raise BadCard(f"/{NODE_TXT}: its identity line is not a node card's JSON ({exc}); "
                      f"make it again with `clusterbake node-card {name}`") from None
    if len(cards) > 1 or not isinstance(card, dict):
        raise BadCard(f"/{NODE_TXT}: a node card is the name and one JSON line; "
                      f"make it again with `clusterbake node-card {name}`")
    return name, card


def _names(root: Path, table: str) -> set[str]:
    try:
        return {line.split(":", 1)[0] for line in (root / "etc" / table).read_text().splitlines() if ":" in line}
    except OSError:
        return {"root"}


def check_card(root: Path, inventory: dict[str, Any], name: str, card: dict[str, Any]) -> dict[str, Any]:
    """The card as an inventory entry, if it is one for this image; else BadCard naming what is wrong."""
    def bad(why: str) -> BadCard:
        return BadCard(f"/{NODE_TXT}: {why}; nothing written (make the card again with "
                       f"`clusterbake node-card {name}` from the cluster file)")

    if card.get("cluster") != inventory["cluster"] or card.get("role") != inventory["role"]:
        raise bad(f"the card is for a {card.get('role')!r} node of {card.get('cluster')!r}, this image is a "
                  f"{inventory['role']!r} image of {inventory['cluster']!r}")
    if card.get("name") != name or not HOSTNAME.fullmatch(name):
        raise bad(f"the card's name {card.get('name')!r} is not its first line {name!r}, or not a host name")
    files = card.get("files")
    if not isinstance(files, list) or not files:
        raise bad("the card has no files")
    users, groups = _names(root, "passwd"), _names(root, "group")
    for file in files:
        if not isinstance(file, dict):
            raise bad("a file of the card is not an object")
        path = file.get("path")
        if (not isinstance(path, str) or not path.startswith("/") or posixpath.normpath(path) != path
                or path.startswith(FORBIDDEN)):
            raise bad(f"file path {path!r} is not an absolute, normal path of the root file system")
        mode = file.get("mode")
        if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o7777:
            raise bad(f"{path}: mode {mode!r} is not a file mode")
        if file.get("owner") not in users or file.get("group") not in groups:
            raise bad(f"{path}: owner {file.get('owner')!r}:{file.get('group')!r} is not an account of this image")
        if not isinstance(file.get("text"), str):
            raise bad(f"{path}: no text")
    return {"name": name, "files": files}


def serial_matches(configured: str | None, serial: str | None) -> bool:
    if not configured or not serial:
        return False
    configured = configured.lower()
    return serial == configured or serial.endswith(configured) or serial.lstrip("0") == configured.lstrip("0")


def pick(inventory: dict[str, Any], wanted: str | None, serial: str | None,
         macs: list[str], card: dict[str, Any] | None = None) -> tuple[dict[str, Any] | None, str]:
    nodes = inventory["nodes"]
    if card is not None:
        return card, f"node card /{NODE_TXT}"
    if wanted:
        for node in nodes:
            if node["name"] == wanted:
                return node, f"named in /{NODE_TXT}"
        say(f"/{NODE_TXT} names {wanted!r}, which is not a {inventory['role']} node of {inventory['cluster']} "
            f"(known: {', '.join(n['name'] for n in nodes) or 'none'}); ignoring it (a node added since the "
            f"image was built needs its node card: clusterbake node-card {wanted})")
    for node in nodes:
        if serial_matches(node.get("serial"), serial):
            return node, f"serial {serial}"
    for node in nodes:
        if node.get("mac") and node["mac"].lower() in macs:
            return node, f"MAC {node['mac'].lower()}"
    return None, ""


def write(root: Path, path: str, text: str, mode: int = 0o644, owner: str = "root", group: str = "root") -> None:
    """Replace a file atomically; it is created with its final mode, never readable in between."""
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.clusterbake")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, mode)  # the umask may have taken bits the file should have
    if (owner, group) != ("root", "root") and os.geteuid() == 0:
        shutil.chown(tmp, owner, group)
    os.replace(tmp, target)


def set_hostname(root: Path, proc: Path, name: str) -> None:
    write(root, "/etc/hostname", name + "\n")
    hosts = root / "etc" / "hosts"
    try:
        lines = [line for line in hosts.read_text().splitlines() if not line.startswith(SELF_ALIAS)]
    except OSError:
        lines = ["127.0.0.1\tlocalhost"]
    while lines and not lines[-1].strip():
        lines.pop()
    # After the cluster's lines, so the node's own name resolves to its real address first.
    write(root, "/etc/hosts", "\n".join([*lines, "", f"{SELF_ALIAS}\t{name}"]) + "\n")
    live = proc / "sys" / "kernel" / "hostname"
    if live.exists():
        try:
            live.write_text(name + "\n")
        except OSError as exc:
            say(f"could not set the running hostname: {exc}")


def fallback_name(cluster: str, serial: str | None, macs: list[str]) -> str:
    if serial:
        tail = serial[-6:]
    elif macs:
        tail = macs[0].replace(":", "")[-6:]
    else:
        tail = "unknown"
    return re.sub(r"[^a-z0-9-]", "-", f"{cluster}-{tail}".lower())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(os.environ.get("CLUSTERBAKE_ROOT", "/")))
    parser.add_argument("--proc", type=Path, default=Path(os.environ.get("CLUSTERBAKE_PROC", "/proc")))
    parser.add_argument("--sys", type=Path, default=Path(os.environ.get("CLUSTERBAKE_SYS", "/sys")))
    args = parser.parse_args(argv)
    root: Path = args.root

    try:
        inventory = json.loads((root / INVENTORY).read_text())
    except (OSError, ValueError) as exc:
        say(f"cannot read /{INVENTORY}: {exc}; leaving the network as it is")
        return 1
    serial = board_serial(args.proc)
    macs = board_macs(args.sys)
    try:
        wanted, card = read_node_txt(root)
        if card is not None:
            card = check_card(root, inventory, str(wanted), card)
    except BadCard as exc:
        # Not half a node: no file of any node is written; the board stays on DHCP and tries again next boot.
        name = fallback_name(inventory["cluster"], serial, macs)
        set_hostname(root, args.proc, name)
        say(f"{exc}; staying on DHCP as {name}")
        return 1
    node, reason = pick(inventory, wanted, serial, macs, card)

    if node is None:
        name = fallback_name(inventory["cluster"], serial, macs)
        set_hostname(root, args.proc, name)
        say(f"no {inventory['role']} node of {inventory['cluster']} matches this board "
            f"(serial {serial or 'unknown'}, MAC {', '.join(macs) or 'none'}); staying on DHCP as {name}. "
            f"Put the node's name in node.txt on the boot partition and reboot, or add this serial to the "
            f"cluster file and rebuild.")
        return 0

    for file in node["files"]:
        write(root, file["path"], file["text"], file["mode"], file["owner"], file["group"])
    set_hostname(root, args.proc, node["name"])
    write(root, "/" + DONE, node["name"] + "\n")
    say(f"this board is {node['name']} ({reason}); wrote {', '.join(f['path'] for f in node['files'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
