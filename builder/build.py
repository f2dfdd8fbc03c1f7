"""build_job(): the pipeline as a flat list of steps, each cached by the hash of its inputs.

verified base (acquire) → role base: at most three layers of packages (common, the role's
family, the role), shared between roles (builder.layers) → final image with the rendered
files, accounts and services (seconds).
Changing a template only redoes the last; adding a package to a role only its layer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

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
from builder.render import Profile, RenderPlan
from builder.render.plan import Target, plan_targets
from builder.render.platform import platform_of

log = logging.getLogger("clusterbake")
T = TypeVar("T")

@dataclass(frozen=True)
class BuildJob:
    """A build, validated and planned once, up front: the loaded cluster, every role's profile
    (read-only), one render plan per target (its files, packages, users and secrets policy) and
    the environment's layer settings. Everything below reads it, nothing below validates or plans again."""

    cluster: Cluster
    profiles: Mapping[str, Profile]  # every role of the cluster (and of the targets), add-ons merged
    plans: tuple[RenderPlan, ...]   # one per target, in the order asked for
    out_dir: Path
    cache: Path
    offline: bool
    layer_jobs: int                 # layers built at once ($CLUSTERBAKE_JOBS, else the cores)
    layer_budget: int               # bytes on disk the cached layers may take ($CLUSTERBAKE_LAYER_CACHE_GIB)


def profiles_dir() -> Path:
    """The role profiles: $CLUSTERBAKE_PROFILES, else the repository's profiles/."""
    return data_dir("profiles")


def overlays_dir() -> Path:
    """The overlay trees: $CLUSTERBAKE_OVERLAYS, else the repository's overlays/."""
    return data_dir("overlays")


def plan_job(cluster: Cluster, targets: Sequence[Target], *, secrets: bool = True,
             out_dir: Path = Path("out"), cache: Path = Path(), offline: bool = False) -> BuildJob:
    """The job of some (role, node) targets of one cluster: every target is planned (and so
    checked) before anything is downloaded, mounted or built."""
    profiles, plans = plan_targets(cluster, targets, secrets=secrets, profiles_dir=profiles_dir(),
                                   overlays_dir=overlays_dir())
    return BuildJob(cluster, profiles, plans, out_dir, cache, offline, layer_jobs=jobs(), layer_budget=budget_bytes())


@dataclass(frozen=True)
class BuiltImage(Generic[T]):
    path: Path          # the finished image (or container template) in job.out_dir
    base: Path          # the verified raw base image it grew from (a container template: Path())
    plan: RenderPlan
    finished: T         # what the finishing step returned (None without one)


# A job's finishing step: runs inside each board image's open image after the customisation and
# before the integrity checks (a release's own steps), given the plan and the verified base image.
FinishingStep = Callable[[OpenImage, RenderPlan, Path], T]


@overload
def build_job(job: BuildJob) -> list[BuiltImage[None]]: ...
@overload
def build_job(job: BuildJob, finish: FinishingStep[T]) -> list[BuiltImage[T]]: ...
def build_job(job: BuildJob, finish: FinishingStep[Any] | None = None) -> list[BuiltImage[Any]]:
    """The one build loop: the job's images, in the order of its plans. First every layer their role
    bases miss (each once, those that do not depend on each other side by side), then each image on
    its role base, with `finish` inside it; a container node's template through its own builder."""
    boards = [plan for plan in job.plans if not _in_container(plan)]
    assert finish is None or len(boards) == len(job.plans), "finishing steps are for board images"
    base = verified_base(job) if boards else Path()
    if len(boards) > 1:
        with step("Role bases of " + ", ".join(plan.target for plan in boards)):
            build_layers(base, boards, job.cache, limit=job.layer_jobs)
    return [BuiltImage(build_container(job.cluster, plan, out_dir=job.out_dir, cache=job.cache), Path(), plan, None)
            if _in_container(plan) else build_from_plan(job, plan, base, finish) for plan in job.plans]


def verified_base(job: BuildJob) -> Path:
    """The job's base image, found in the cache or downloaded, and verified: once per job."""
    with step("Verified base image"):
        return fetch_base(job.cluster.base_image, cache=job.cache, offline=job.offline)


def _in_container(plan: RenderPlan) -> bool:
    """Whether the plan is for a node that is no board: its artefact is a container template."""
    return plan.node is not None and not platform_of(plan.node).boot_partition


def build_from_plan(job: BuildJob, plan: RenderPlan, base: Path,
                    finish: FinishingStep[T] | None = None) -> BuiltImage[T | None]:
    """Build one board image of the job from its plan on the job's verified base image; `finish`
    runs inside the same open image after the customisation and before the integrity checks."""
    final = job.out_dir / f"{job.cluster.name}-{plan.target}.img"
    with step(f"Role base for '{plan.role}'"):
        role_base = ensure_role_base(base, plan, job.cache, budget=job.layer_budget)
    job.out_dir.mkdir(parents=True, exist_ok=True)
    finished = None
    with step(f"Image {final.name}"), atomic_output(final) as tmp:
        copy_sparse(role_base, tmp)
        with open_image(tmp) as img:
            customise(img, plan, job.cluster)
            if finish is not None:
                finished = finish(img, plan, base)
            with step("Integrity checks"):
                img.check()
    return BuiltImage(final, base, plan, finished)


def customise(img: OpenImage, plan: RenderPlan, cluster: Cluster) -> None:
    """The root's accounts, files and services (builder.provision.root), then the boot-partition edits."""
    provision_root(img, plan, cluster)
    with step("Boot partition"):
        apply_boot_edits(img, plan)
