"""dnsmasq as the file server runs it, inside a test's network namespace: `ip netns exec NS python -m ...`.

`ip netns exec` gives the command a mount namespace of its own whose mounts never reach the host, so the
served folder can be put at /srv/netboot, where the rendered configuration has its TFTP root, without
touching the host's /srv: a tmpfs over /srv, the folder bound below it. The mounts end with the process.
"""

from __future__ import annotations

import argparse
import os
import subprocess


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tftp-tree", required=True, help="the served tree's srv/netboot")
    parser.add_argument("--conf", required=True, help="the rendered dnsmasq.conf")
    args = parser.parse_args()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "clusterbake-test", "/srv"], check=True)
    os.mkdir("/srv/netboot")
    subprocess.run(["mount", "--bind", args.tftp_tree, "/srv/netboot"], check=True)
    os.execvp("dnsmasq", ["dnsmasq", "--keep-in-foreground", f"--conf-file={args.conf}"])


if __name__ == "__main__":
    main()
