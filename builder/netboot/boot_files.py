"""One diskless node's TFTP folder: the compute image's boot partition with its own cmdline.txt.

Everything on the image's boot partition is served (firmware, config.txt with the role's lines and
the power button, kernels, device trees, overlays, initramfs): the bootloader asks for what its board
needs. Only cmdline.txt changes: the root is the file server's export over NFS instead of the card's
partition, and the node's state folder is named for the netboot init.
"""

from __future__ import annotations

from builder.netboot.layout import NETBOOT_INIT, STATE_EXPORT

# Arguments of the image's cmdline.txt about the card's root or its first boot, which a diskless node
# has not: the root partition, its fsck and its first-boot resize (Raspberry Pi OS's `init=` script).
CARD_ARGUMENTS = ("root", "rootfstype", "rootflags", "fsck.repair", "fsck.mode", "resize", "init", "rw", "ro",
                  "rootwait", "nfsroot", "ip", "panic", "clusterbake.state")
# A kernel that cannot mount its root (the file server went away after TFTP) panics; after this many seconds
# it restarts the board, whose bootloader tries the SD card and the network again until the server answers.
PANIC_RESTART_S = 10
NFS_ROOT_OPTIONS = "v3,tcp"
# A card's files a diskless node must not be served: a person's per-card choices.
CARD_ONLY = ("node.txt", "munge.key")


def netboot_cmdline(image_cmdline: str, *, server: str, root: str, node: str) -> str:
    """The image's kernel arguments (consoles, the role's own such as cgroup_enable=memory) with the root
    over NFS: `root=/dev/nfs nfsroot=<server>:<root>,v3,tcp ro ip=dhcp`, and the node's state folder.

    NFSv3 for the root: Raspberry Pi OS boots with an initramfs (`auto_initramfs=1`), whose NFS root is
    initramfs-tools' klibc `nfsmount`, which speaks NFSv2 and v3 only and refuses a `vers=4` option; `v3`
    and `tcp` are words both it and the kernel's own nfsroot read. Read-only is the kernel's `ro`."""
    kept = [arg for arg in image_cmdline.split() if arg.partition("=")[0] not in CARD_ARGUMENTS]
    return " ".join([*kept, "root=/dev/nfs", f"nfsroot={server}:{root},{NFS_ROOT_OPTIONS}", "ro", "ip=dhcp",
                     "rootwait",
                     f"panic={PANIC_RESTART_S}", f"init={NETBOOT_INIT}",
                     f"clusterbake.state={server}:{STATE_EXPORT}/{node}"]) + "\n"
