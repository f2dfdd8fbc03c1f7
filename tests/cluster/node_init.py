"""PID 1 of a booted test node: mount the kernel filesystems, chroot into the node, sleep.

Run by the host's python3 inside `unshare --pid --mount --uts --ipc --fork` in the node's
network namespace, so every mount made here lives and dies with the node's mount namespace,
and killing this process (PID 1 of the node's PID namespace) kills everything started in it.
"""

import os
import socket
import subprocess
import sys


def main() -> None:
    root = sys.argv[1]
    for argv in (
        ["mount", "-t", "proc", "-o", "nosuid,nodev,noexec", "proc", f"{root}/proc"],
        ["mount", "-t", "sysfs", "-o", "ro,nosuid,nodev,noexec", "sysfs", f"{root}/sys"],
        ["mount", "--rbind", "/dev", f"{root}/dev"],
        ["mount", "-t", "tmpfs", "-o", "nosuid,nodev,mode=0755", "tmpfs", f"{root}/run"],
        ["mount", "-t", "tmpfs", "-o", "nosuid,nodev,mode=1777", "tmpfs", f"{root}/tmp"],
    ):
        subprocess.run(argv, check=True)
    with open(f"{root}/etc/hostname") as f:
        socket.sethostname(f.read().strip() or "localhost")
    os.chroot(root)
    os.chdir("/")
    print("ready", flush=True)
    os.execv("/bin/sleep", ["sleep", "infinity"])


if __name__ == "__main__":
    main()
