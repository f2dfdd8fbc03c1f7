"""build_image(): the pipeline as a flat list of steps, each cached by the hash of its inputs.

verified base (acquire) → role base: at most three layers of packages (common, the role's
family, the role), shared between roles (builder.layers) → final image with the rendered
files, accounts and services (seconds).
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
from builder.layer_budget import budget_bytes
from builder.layers import build_layers, ensure_role_base, jobs
from builder.layers import copy_sparse as copy_sparse  # part of this module's interface since before layers
from builder.paths import data_dir
from builder.progress import step
from builder.provision.rendered_files import apply_boot_edits
from builder.provision.root import provision_root
from builder.render import RenderPlan, render_plan
from builder.render.platform import platform_of

log = logging.getLogger("clusterbake")

@dataclass(frozen=True)
class BuildRequest:
    """What was asked for: one target (a role or a node) of a cluster, and where to build it."""

    cluster: Cluster
    role: str | None = None
    node: str | None = None
    secrets: bool = True            # the secrets policy: False for release images (no munge key, no hashes)
    out_dir: Path = Path("out")
    cache: Path = Path()
    offline: bool = False

    @property
    def target(self) -> str:
        return self.node or self.role or "?"


@dataclass(frozen=True)
class BuildJob:
    """A build, validated and planned once, up front: the loaded cluster and one render plan per
    target (its files, packages, users and secrets policy). Everything below reads it, nothing
    below validates or plans again."""

    cluster: Cluster
    plans: tuple[RenderPlan, ...]   # one per target, in the order asked for
    out_dir: Path
    cache: Path
    offline: bool


def profiles_dir() -> Path:
    """The role profiles: $CLUSTERBAKE_PROFILES, else the repository's profiles/."""
    return data_dir("profiles")


def overlays_dir() -> Path:
    """The overlay trees: $CLUSTERBAKE_OVERLAYS, else the repository's overlays/."""
    return data_dir("overlays")


def plan_build(req: BuildRequest) -> RenderPlan:
    """Everything that can be checked without touching an image: fails in seconds on bad input."""
    return render_plan(req.cluster, role=req.role, node=req.node, secrets=req.secrets,
                       profiles_dir=profiles_dir(), overlays_dir=overlays_dir())


def plan_job(cluster: Cluster, targets: Sequence[tuple[str | None, str | None]], *, secrets: bool = True,
             out_dir: Path = Path("out"), cache: Path = Path(), offline: bool = False) -> BuildJob:
    """The job of some (role, node) targets of one cluster: every target is planned (and so
    checked) before anything is downloaded, mounted or built."""
    plans = tuple(plan_build(BuildRequest(cluster=cluster, role=role, node=node, secrets=secrets))
                  for role, node in targets)
    jobs(), budget_bytes()   # the environment's settings, checked before anything is built too
    return BuildJob(cluster, plans, out_dir, cache, offline)


def _job_of(requests: Sequence[BuildRequest]) -> BuildJob:
    first = requests[0]
    where = (first.cluster, first.secrets, first.out_dir, first.cache, first.offline)
    assert all((r.cluster, r.secrets, r.out_dir, r.cache, r.offline) == where for r in requests), "one job"
    return plan_job(first.cluster, [(r.role, r.node) for r in requests], secrets=first.secrets,
                    out_dir=first.out_dir, cache=first.cache, offline=first.offline)


def build_image(req: BuildRequest) -> Path:
    """Build one image (a role's or a node's; a container's template) and return its path in req.out_dir."""
    [image] = build_job(_job_of([req]))
    return image


def build_images(requests: Sequence[BuildRequest]) -> list[Path]:
    """Several images of one cluster, in the order asked for (see build_job)."""
    return build_job(_job_of(requests))


def build_job(job: BuildJob) -> list[Path]:
    """The job's images: first every layer their role bases miss (each once, those that do not
    depend on each other side by side), then each image on its role base."""
    boards = [plan for plan in job.plans if not _in_container(plan)]
    base = verified_base(job) if boards else Path()
    if len(boards) > 1:
        with step("Role bases of " + ", ".join(plan.target for plan in boards)):
            build_layers(base, boards, job.cache)
    return [build_container(job.cluster, plan, out_dir=job.out_dir, cache=job.cache) if _in_container(plan)
            else build_from_plan(job, plan, base).path for plan in job.plans]


def verified_base(job: BuildJob) -> Path:
    """The job's base image, found in the cache or downloaded, and verified: once per job."""
    with step("Verified base image"):
        return fetch_base(job.cluster.base_image, cache=job.cache, offline=job.offline)


def _in_container(plan: RenderPlan) -> bool:
    """Whether the plan is for a node that is no board: its artefact is a container template."""
    return plan.node is not None and not platform_of(plan.node).boot_partition


@dataclass(frozen=True)
class BuiltImage:
    path: Path          # the finished image in job.out_dir
    base: Path          # the verified raw base image it grew from
    plan: RenderPlan


FinishingStep = Callable[[OpenImage, Path], None]   # (the open image, the verified base image)


def build_from_plan(job: BuildJob, plan: RenderPlan, base: Path, finish: FinishingStep | None = None) -> BuiltImage:
    """Build one board image of the job from its plan on the job's verified base image. `finish`
    runs inside the same open image after the customisation and before the integrity checks
    (a release's own steps)."""
    final = job.out_dir / f"{job.cluster.name}-{plan.target}.img"
    with step(f"Role base for '{plan.role}'"):
        role_base = ensure_role_base(base, plan, job.cache)
    job.out_dir.mkdir(parents=True, exist_ok=True)
    with step(f"Image {final.name}"), atomic_output(final) as tmp:
        copy_sparse(role_base, tmp)
        with open_image(tmp) as img:
            customise(img, plan, job.cluster)
            if finish is not None:
                finish(img, base)
            with step("Integrity checks"):
                img.check()
    return BuiltImage(final, base, plan)


def customise(img: OpenImage, plan: RenderPlan, cluster: Cluster) -> None:
    """The root's accounts, files and services (builder.provision.root), then the boot-partition edits."""
    provision_root(img, plan, cluster)
    with step("Boot partition"):
        apply_boot_edits(img, plan)
