"""A node's Proxmox container template: the role's root, provisioned, as `<cluster>-<node>.tar.zst`.

Two cached levels below it (builder.cache: keyed by recipe, locked, renamed into place):
  lxc/base-<key>.tar            Debian trixie amd64 (builder.container.base)
  role-bases/lxc-<key>.tar      that base with the plan's packages installed (native apt, today's
                                lists): a layer like a board's role base, under the same budget
                                (builder.layer_budget)
The template itself is made in a staging directory and written through `atomic_output`: the
output path holds a finished template or nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

from builder.cache import cache_entry, recipe_key, staging_dir
from builder.config.model import Cluster
from builder.container.base import FOLDER, container_base, pack_root, unpack_root
from builder.container.pct import template_name
from builder.image import atomic_output
from builder.image.image_root import DirectoryRoot
from builder.layer_budget import LAYER_FOLDER, take_layers
from builder.progress import step
from builder.provision.packages import install_packages
from builder.provision.root import provision_root
from builder.render import RenderPlan

log = logging.getLogger("clusterbake")

ROLE_VERSION = 1   # bump when how a role root is made changes for the same inputs


def build_container(cluster: Cluster, plan: RenderPlan, *, out_dir: Path, cache: Path, layer_budget: int) -> Path:
    """Build the template of the plan's node into out_dir; return its path. The cached layers are
    kept within `layer_budget` bytes on disk, the role root among them."""
    assert plan.node is not None, "a container is built for one node"
    final = out_dir / template_name(cluster, plan.node)
    with step("Container base"):
        base = container_base(cache)
    with step(f"Container root for '{plan.role}'"):
        role_root = ensure_role_root(base, plan.packages, cache, budget=layer_budget)
    with step(f"Template {final.name}"), staging_dir(cache / FOLDER) as work, atomic_output(final) as tmp:
        root = work / "root"
        unpack_root(role_root, root)
        provision_root(DirectoryRoot(root), plan, cluster)
        pack_root(root, tmp, compress=True)
    return final


def role_root_path(base: Path, packages: tuple[str, ...], cache: Path) -> Path:
    """Where the role root of `base` with `packages` is cached: among the layers."""
    key = recipe_key({"base": base.name, "packages": sorted(set(packages)), "v": ROLE_VERSION})
    return cache / LAYER_FOLDER / f"lxc-{key}.tar"


def ensure_role_root(base: Path, packages: tuple[str, ...], cache: Path, *, budget: int) -> Path:
    """`base` with `packages` installed, cached by (base, packages) as a layer; then the cached
    layers trimmed to `budget` bytes on disk (builder.layer_budget)."""
    wanted = sorted(set(packages))
    tarball = role_root_path(base, packages, cache)

    def make(work: Path) -> None:
        with step("apt-get install " + " ".join(wanted)):
            root = work / "root"
            unpack_root(base, root)
            install_packages(DirectoryRoot(root), wanted, cache=cache, scratch=work)
            pack_root(root, work / tarball.name)

    made = cache_entry(tarball, make)
    take_layers([tarball], budget)
    if not made:
        log.info("  using the cached container root %s", tarball)
    return tarball
