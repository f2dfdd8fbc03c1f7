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
from builder.container import build_container
from builder.image import OpenImage, atomic_output, open_image
from builder.layers import build_layers, ensure_role_base
from builder.layers import copy_sparse as copy_sparse  # part of this module's interface since before layers
from builder.paths import data_dir
from builder.progress import step
from builder.provision.files import apply_boot_edits
from builder.provision.root import provision_root
from builder.render import RenderPlan, render_plan
from builder.render.platform import platform_of

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
    boards = [(req, plan) for req, plan in zip(requests, plans, strict=True) if not _in_container(req)]
    if len(boards) > 1:
        first = boards[0][0]
        with step("Verified base image"):
            base = fetch_base(first.cluster.base_image, cluster_dir=first.cluster.source.parent, cache=first.cache,
                              offline=first.offline)
        with step("Role bases of " + ", ".join(req.target for req, _ in boards)):
            build_layers(base, [plan for _, plan in boards], first.cache)
    return [_build_target(req, plan) for req, plan in zip(requests, plans, strict=True)]


def _in_container(req: BuildRequest) -> bool:
    """Whether the request is a node that is no board: its artefact is a container template."""
    return req.node is not None and not platform_of(req.cluster.node(req.node)).boot_partition


def build_image(req: BuildRequest) -> Path:
    """Build one image (a role's or a node's; a container's template) and return its path in req.out_dir."""
    return _build_target(req, plan_build(req))


def _build_target(req: BuildRequest, plan: RenderPlan) -> Path:
    if _in_container(req):
        return build_container(req.cluster, plan, out_dir=req.out_dir, cache=req.cache, secrets=req.secrets)
    return build_from_plan(req, plan).path


@dataclass(frozen=True)
class BuiltImage:
    path: Path          # the finished image in req.out_dir
    base: Path          # the verified raw base image it grew from
    plan: RenderPlan


FinishingStep = Callable[[OpenImage, Path], None]   # (the open image, the verified base image)


def build_from_plan(req: BuildRequest, plan: RenderPlan, finish: FinishingStep | None = None) -> BuiltImage:
    """Build one board image from its plan. `finish` runs inside the same open image after the
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
    """The root's accounts, files and services (builder.provision.root), then the boot-partition edits."""
    provision_root(img, plan, cluster, secrets=secrets)
    with step("Boot partition"):
        apply_boot_edits(img, plan)
