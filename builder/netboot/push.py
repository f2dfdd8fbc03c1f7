"""`clusterbake netboot --push`: the served tree onto the running file server, over day two's connection.

One tar stream over SSH (as `apply`: the cluster's first user, host key pinned, `sudo -n`) into a
folder beside /srv/netboot on the server, then put in place by `PUSH_SCRIPT`:
- the shared root's new version goes beside the versions running nodes use: a node keeps the root it
  booted from until its next boot, which is when it picks up the new tree. The newest `KEEP_VERSIONS`
  are kept; push twice without rebooting the diskless nodes and the oldest lose their root;
- each node's boot folder is replaced whole (a board asking in the instant between finds none and
  asks again); the folders of nodes no longer in the tree are removed;
- a node's state folder is made when missing and never replaced: its host keys and spools stay.
The server's dnsmasq.conf and exports are not part of this: they are the file server's plan (`apply`).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from builder.errors import EnvironmentProblem

KEEP_VERSIONS = 2
TAR_OPTIONS = ("--numeric-owner", "--xattrs", "--xattrs-include=*")
# $1: the server's root ("" on the server itself; a folder in the tests). Reads the tar stream on stdin.
PUSH_SCRIPT = r"""
set -eu
srv="${1:-}/srv"
incoming="$srv/.clusterbake-netboot-incoming"
trap 'rm -rf "$incoming"' EXIT
rm -rf "$incoming"
mkdir -p "$srv/netboot" "$srv/netroot/compute" "$srv/netstate"
mkdir -m 0700 "$incoming"
tar --extract --file=- --directory="$incoming" --same-owner --preserve-permissions """ + " ".join(
    f"'{o}'" for o in TAR_OPTIONS) + r"""
new="$incoming/srv"
if [ ! -d "$new/netboot" ] || [ ! -d "$new/netroot/compute" ]; then
    echo "the pushed tree has no srv/netboot or srv/netroot/compute" >&2
    exit 3
fi
for version in "$new"/netroot/compute/*; do
    name=${version##*/}
    rm -rf "$srv/netroot/compute/$name"
    mv "$version" "$srv/netroot/compute/$name"
    echo "shared root $name"
done
names=" "
for folder in "$new"/netboot/*; do
    name=${folder##*/}
    names="$names$name "
    rm -rf "$srv/netboot/.old-$name"
    if [ -e "$srv/netboot/$name" ]; then mv "$srv/netboot/$name" "$srv/netboot/.old-$name"; fi
    mv "$folder" "$srv/netboot/$name"
    rm -rf "$srv/netboot/.old-$name"
    echo "boot folder $name"
done
for folder in "$srv"/netboot/*; do
    [ -e "$folder" ] || continue
    case "$names" in
        *" ${folder##*/} "*) ;;
        *) rm -rf "$folder"; echo "boot folder ${folder##*/} removed (no such node)" ;;
    esac
done
for state in "$new"/netstate/*; do
    [ -e "$state" ] || continue
    if [ ! -e "$srv/netstate/${state##*/}" ]; then
        mv "$state" "$srv/netstate/"
        echo "state folder ${state##*/} made"
    fi
done
ls -1 "$srv/netroot/compute" | sort | head -n -""" + str(KEEP_VERSIONS) + r""" | while read -r old; do
    rm -rf "${srv:?}/netroot/compute/$old"
    echo "shared root $old removed (older than the """ + str(KEEP_VERSIONS) + r""" newest)"
done
"""


def remote_command() -> list[str]:
    """What runs on the file server, as root (sudo -n), reading the tree on stdin."""
    return ["sudo", "-n", "sh", "-c", PUSH_SCRIPT, "clusterbake-push"]


def push_tree(tree: Path, receiver: Sequence[str], *, server: str) -> list[str]:
    """Stream `tree`'s srv/ into `receiver` (ssh to the server running `remote_command()`, or a local
    shell in the tests); returns what the server did, a line each."""
    if not (tree / "srv").is_dir():
        raise EnvironmentProblem(f"{tree}: no served tree here", hint="run clusterbake netboot first")
    with subprocess.Popen(["tar", "--create", "--file=-", f"--directory={tree}", *TAR_OPTIONS, "srv"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as tar:
        assert tar.stdout is not None
        try:
            proc = subprocess.run(list(receiver), stdin=tar.stdout, capture_output=True, text=True, check=False)
        finally:
            tar.stdout.close()
            tar_err = tar.stderr.read().decode(errors="replace") if tar.stderr else ""
            tar.wait()
    if tar.returncode != 0:
        raise EnvironmentProblem(f"{tree}: tar failed: {tar_err.strip()[-300:]}")
    if proc.returncode != 0:
        # tar's first complaint says why (a full disk, say); its last line only that there were some.
        said = [line for line in proc.stderr.strip().splitlines() if "Exiting with failure status" not in line]
        why = (said or [f"exit {proc.returncode}"])[0]
        raise EnvironmentProblem(f"{server}: the served tree was not put in place: {why}",
                                 hint="check the file server's free space and that the apply user has "
                                      "passwordless sudo")
    return proc.stdout.splitlines()
