"""`clusterbake netboot`: the tree the file server serves to the diskless nodes, from the compute role image.

The output folder mirrors the file server's `/` (`push.py` puts it there, see README "Diskless
compute nodes"):

    srv/netboot/<folder>/             one per diskless node (serial's low 8 hex digits, or dashed MAC): the
                                      image's boot partition, hard links but for the node's own cmdline.txt
    srv/netroot/compute/<version>/    the compute image's root, shared read-only (shared_root.py); each tree
                                      a version of its own, so nodes still running keep theirs
    srv/netstate/<node>/              each node's state folder, empty until its first boot fills it

The file server's DHCP, TFTP and NFS configuration is not here: it is part of the server's own
render plan (builder/render/netboot_server.py), in its image and kept in step by `apply`.
It is made beside the output folder and renamed into place only when complete; the folder it
replaces is removed after. A node picks up a new tree at its next boot.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from builder.command import run
from builder.config.model import Cluster
from builder.config.netboot import network_booted, tftp_folder
from builder.errors import InputError
from builder.image import open_image
from builder.image.image_root import DirectoryRoot
from builder.image.output import atomic_directory
from builder.layers import copy_sparse
from builder.netboot.boot_files import CARD_ONLY, netboot_cmdline
from builder.netboot.layout import STATE_EXPORT, TFTP_ROOT, root_folder
from builder.netboot.shared_root import prepare_shared_root
from builder.progress import step

log = logging.getLogger("clusterbake")


def served_tree(cluster: Cluster, image: Path, out: Path, *, overlays_dir: Path) -> Path:
    """The served tree of `cluster`'s diskless nodes from its built compute role `image`, at `out`."""
    require_diskless(cluster)
    with atomic_directory(out) as staging:
        with step("Shared root and boot files from " + image.name):
            copy = staging / "image.img"
            copy_sparse(image, copy)     # opened read-write by the image engine: the artefact stays untouched
            boot = staging / "boot"
            with open_image(copy) as img:
                root = staging / root_folder(tree_version()).lstrip("/")
                root.mkdir(parents=True)
                run(["cp", "-a", "--one-file-system", f"{img.root}/.", root], label="copy the root")
                boot.mkdir()
                img.boot.export(boot)
            copy.unlink()
        write_served_tree(cluster, boot=boot, root=root, dest=staging, overlays_dir=overlays_dir)
        shutil.rmtree(boot)
    return out


def require_diskless(cluster: Cluster) -> None:
    """Before anything is built: a served tree needs a node to serve."""
    if not network_booted(cluster):
        raise InputError(f"{cluster.source.name}: nodes: no node boots from the network",
                         hint="mark compute nodes boot: network (with serial: or mac:), or netboot: {roles: [compute]}")


def tree_version() -> str:
    """A new tree's version: when it was made (UTC), so versions sort in the order they were made."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def write_served_tree(cluster: Cluster, *, boot: Path, root: Path, dest: Path, overlays_dir: Path) -> None:
    """From the image's boot files (`boot`) and a copy of its root (`root`, at `dest`/srv/netroot/compute/<version>):
    the shared root made fit, one TFTP folder per diskless node naming that version, one state folder per node."""
    server = cluster.node(cluster.fileserver.node) if cluster.fileserver is not None else None
    assert server is not None, "the loader refuses a network boot without a file server"
    with step("Shared root for the diskless nodes"):
        prepare_shared_root(DirectoryRoot(root), overlays_dir, cluster)
    image_cmdline = (boot / "cmdline.txt").read_text()
    for name in CARD_ONLY:
        (boot / name).unlink(missing_ok=True)
    served_root = "/" + root.relative_to(dest).as_posix()
    for node in network_booted(cluster):
        folder = dest / TFTP_ROOT.lstrip("/") / tftp_folder(node)
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(boot, folder, copy_function=os.link)     # one copy of the firmware on the server's disk
        (folder / "cmdline.txt").unlink()
        (folder / "cmdline.txt").write_text(netboot_cmdline(image_cmdline, server=str(server.ip), root=served_root,
                                                                 node=node.name))
        state = dest / STATE_EXPORT.lstrip("/") / node.name
        state.mkdir(parents=True, mode=0o700)
        state.chmod(0o700)
        log.info("%s: boot files in %s/%s, state in %s/%s", node.name, TFTP_ROOT, tftp_folder(node), STATE_EXPORT,
                 node.name)
