"""build_image(): the pipeline as a flat list of steps, each cached by the hash of its inputs.

verified base (acquire) → role base with packages installed (cached here) → final image with
the rendered files, accounts and services (seconds). Changing a template only redoes the last.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from builder.acquire import fetch_base
from builder.cache import install, locked, recipe_key, staging_dir
from builder.command import run
from builder.config.model import Cluster
from builder.image import OpenImage, atomic_output, grow_image, open_image
from builder.paths import data_dir
from builder.progress import step
from builder.provision.accounts import check_sudoers, create_users
from builder.provision.files import apply_boot_edits, remove_paths, write_files
from builder.provision.packages import install_packages
from builder.provision.services import set_services
from builder.render import RenderPlan, render_plan

log = logging.getLogger("clusterbake")

# Bump when what a role base contains changes for the same inputs (e.g. how packages are installed).
ROLE_BASE_VERSION = 1


@dataclass(frozen=True)
class BuildRequest:
    cluster: Cluster
    role: str | None = None
    node: str | None = None
    secrets: bool = True
    out_dir: Path = Path("out")
    cache: Path = Path()
    offline: bool = False

    @property
    def target(self) -> str:
        return self.node or self.role or "?"


def profiles_dir() -> Path:
    """The role profiles: $CLUSTERBAKE_PROFILES, else the repository's profiles/."""
    return data_dir("CLUSTERBAKE_PROFILES", "profiles")


def overlays_dir() -> Path:
    """The overlay trees: $CLUSTERBAKE_OVERLAYS, else the repository's overlays/."""
    return data_dir("CLUSTERBAKE_OVERLAYS", "overlays")


def plan_build(req: BuildRequest) -> RenderPlan:
    """Everything that can be checked without touching an image: fails in seconds on bad input."""
    return render_plan(req.cluster, role=req.role, node=req.node, secrets=req.secrets,
                       profiles_dir=profiles_dir(), overlays_dir=overlays_dir())


def build_image(req: BuildRequest) -> Path:
    """Build one image (a role's or a node's) and return its path in req.out_dir."""
    plan = plan_build(req)
    final = req.out_dir / f"{req.cluster.name}-{req.target}.img"
    with step("Verified base image"):
        base = fetch_base(req.cluster.base_image, cluster_dir=req.cluster.source.parent, cache=req.cache,
                          offline=req.offline)
    with step(f"Role base for '{plan.role}'"):
        role_base = ensure_role_base(base, plan, req.cache)
    req.out_dir.mkdir(parents=True, exist_ok=True)
    with step(f"Image {final.name}"), atomic_output(final) as tmp:
        copy_sparse(role_base, tmp)
        with open_image(tmp) as img:
            customise(img, plan, req.cluster, secrets=req.secrets)
            with step("Integrity checks"):
                img.check()
    return final


def role_base_key(base: Path, plan: RenderPlan) -> str:
    """The role base depends on the verified base (named by its hash), the packages and the size only."""
    return recipe_key({"base": base.name, "packages": sorted(plan.packages), "grow_mib": plan.grow_mib,
                       "version": ROLE_BASE_VERSION})


def ensure_role_base(base: Path, plan: RenderPlan, cache: Path) -> Path:
    """The base image grown and with the role's packages installed, cached by its recipe.

    Roles with the same packages share one entry (the name holds no role).
    """
    folder = cache / "role-bases"
    path = folder / f"{role_base_key(base, plan)}.img"
    with locked(folder / f"{path.name}.lock"):
        if path.exists():
            log.info("  using the cached role base %s", path)
            return path
        with staging_dir(folder) as work:
            tmp = work / path.name
            copy_sparse(base, tmp)
            if plan.grow_mib:
                grow_image(tmp, plan.grow_mib << 20)
            apt_cache = cache / "apt-archives"
            with open_image(tmp) as img, img.chroot(apt_cache=apt_cache) as chroot:
                install_packages(img, chroot, plan.packages, archive_lock=apt_cache.with_name("apt-archives.lock"))
            install(tmp, path)
    return path


def copy_sparse(src: Path, dst: Path) -> None:
    """Copy an image keeping its holes (and sharing blocks where the filesystem can)."""
    run(["cp", "--sparse=always", "--reflink=auto", src, dst], label="copy image")


def customise(img: OpenImage, plan: RenderPlan, cluster: Cluster, *, secrets: bool = True) -> None:
    """Accounts, rendered files, services and boot-partition edits: the fast, per-build part.

    Accounts come first (files are owned by them and live in their homes), the units the
    plan ships are written before services are enabled. Without secrets (release images)
    accounts get no password hash.
    """
    with img.chroot() as chroot:
        with step("Accounts"):
            create_users(img, chroot, cluster, passwords=secrets)
        with step(f"Write {len(plan.files)} rendered files"):
            remove_paths(img, plan.remove)
            write_files(img, plan.files)
            check_sudoers(img, chroot, plan.files)
        with step("Services"):
            set_services(img, chroot, enable=plan.enable, disable=plan.disable, mask=plan.mask,
                         source=plan.source)
    with step("Boot partition"):
        apply_boot_edits(img, plan)
