"""build_image(): the pipeline as a flat list of steps, each cached by the hash of its inputs.

verified base (acquire) → role base: layers of packages, one per profile, shared between
roles (builder.layers) → final image with the rendered files, accounts and services (seconds).
Changing a template only redoes the last; adding a package to a role only its layer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from builder.acquire import fetch_base
from builder.config.model import Cluster
from builder.image import OpenImage, atomic_output, open_image
from builder.layers import build_layers, ensure_role_base
from builder.layers import copy_sparse as copy_sparse  # part of this module's interface since before layers
from builder.paths import data_dir
from builder.progress import step
from builder.provision.accounts import check_sudoers, create_users
from builder.provision.files import apply_boot_edits, remove_paths, write_files
from builder.provision.services import set_services
from builder.render import RenderPlan, render_plan

log = logging.getLogger("clusterbake")

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


def build_images(requests: Sequence[BuildRequest], plans: Sequence[RenderPlan] | None = None) -> list[Path]:
    """Several images of one cluster: first every layer their role bases miss (each once, those that
    do not depend on each other side by side), then each image on its role base. `plans`, one per
    request in order, are the requests' plans when the caller has made them already."""
    plans = list(plans) if plans is not None else [plan_build(req) for req in requests]
    if len(requests) > 1:
        first = requests[0]
        with step("Verified base image"):
            base = fetch_base(first.cluster.base_image, cluster_dir=first.cluster.source.parent, cache=first.cache,
                              offline=first.offline)
        with step("Role bases of " + ", ".join(req.target for req in requests)):
            build_layers(base, plans, first.cache)
    return [build_from_plan(req, plan).path for req, plan in zip(requests, plans, strict=True)]


def build_image(req: BuildRequest) -> Path:
    """Build one image (a role's or a node's) and return its path in req.out_dir."""
    return build_from_plan(req, plan_build(req)).path


@dataclass(frozen=True)
class BuiltImage:
    path: Path          # the finished image in req.out_dir
    base: Path          # the verified raw base image it grew from
    plan: RenderPlan


FinishingStep = Callable[[OpenImage, Path], None]   # (the open image, the verified base image)


def build_from_plan(req: BuildRequest, plan: RenderPlan, finish: FinishingStep | None = None) -> BuiltImage:
    """Build one image from its plan. `finish` runs inside the same open image after the
    customisation and before the integrity checks (a release's own steps)."""
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
            if finish is not None:
                finish(img, base)
            with step("Integrity checks"):
                img.check()
    return BuiltImage(final, base, plan)


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
