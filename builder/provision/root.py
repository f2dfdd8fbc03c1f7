"""The per-build part of provisioning a root, the same for an SD-card image and a container."""

from __future__ import annotations

from builder.config.model import Cluster
from builder.image.image_root import ImageRoot
from builder.progress import step
from builder.provision.accounts import check_sudoers, create_users
from builder.provision.rendered_files import remove_paths, write_files
from builder.provision.services import set_services
from builder.render import RenderPlan


def provision_root(root: ImageRoot, plan: RenderPlan, cluster: Cluster) -> None:
    """Accounts, rendered files and services.

    Accounts come first (files are owned by them and live in their homes), the units the
    plan ships are written before services are enabled. A plan without secrets (release
    images) gives the accounts no password hash.
    """
    with root.chroot() as chroot:
        with step("Accounts"):
            create_users(root, chroot, plan.users, cluster_file=cluster.source.name)
        with step(f"Write {len(plan.files)} rendered files"):
            remove_paths(root, plan.remove)
            write_files(root, plan.files)
            check_sudoers(root, chroot, plan.files)
        with step("Services"):
            set_services(root, chroot, enable=plan.enable, disable=plan.disable, mask=plan.mask,
                         source=plan.source)
