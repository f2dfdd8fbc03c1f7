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
from builder.container import build_container, pct_instructions
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
from builder.render.platform import LXC_TEMPLATE, SD_CARD_IMAGE

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
    path: Path          # the finished artefact in job.out_dir: an image, or a container template
    base: Path          # the verified raw base image it grew from (Path() for what does not grow from it)
    plan: RenderPlan
    finished: T         # what the finishing step returned (None without one)
    next_steps: str | None = None   # what to do with the artefact, when more than flashing it


# A job's finishing step: runs inside each board image's open image after the customisation and
# before the integrity checks (a release's own steps), given the plan and the verified base image.
FinishingStep = Callable[[OpenImage, RenderPlan, Path], T]


@overload
def build_job(job: BuildJob) -> list[BuiltImage[None]]: ...
@overload
def build_job(job: BuildJob, finish: FinishingStep[T]) -> list[BuiltImage[T]]: ...
def build_job(job: BuildJob, finish: FinishingStep[Any] | None = None) -> list[BuiltImage[Any]]:
    """The one build loop: the job's artefacts, in the order of its plans, each made by the builder
    of its platform's artefact (BUILDERS). Images on the verified base first get every layer their
    role bases miss (each once, those that do not depend on each other side by side), then each its
    image on its role base, with `finish` inside it."""
    builders = [BUILDERS[plan.platform.artefact] for plan in job.plans]
    on_base = [plan for plan, builder in zip(job.plans, builders, strict=True) if builder.on_verified_base]
    assert finish is None or len(on_base) == len(job.plans), "finishing steps are for images on the base"
    base = verified_base(job) if on_base else Path()
    if len(on_base) > 1:
        with step("Role bases of " + ", ".join(plan.target for plan in on_base)):
            build_layers(base, on_base, job.cache, limit=job.layer_jobs)
    return [builder.build(job, plan, base, finish) for plan, builder in zip(job.plans, builders, strict=True)]


def verified_base(job: BuildJob) -> Path:
    """The job's base image, found in the cache or downloaded, and verified: once per job."""
    with step("Verified base image"):
        return fetch_base(job.cluster.base_image, cache=job.cache, offline=job.offline)


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


def container_template(job: BuildJob, plan: RenderPlan, base: Path, finish: object = None) -> BuiltImage[None]:
    """A node's container template (builder.container), and how to create the container from it."""
    assert plan.node is not None and finish is None, "a container template is built per node, finished as it is"
    path = build_container(job.cluster, plan, out_dir=job.out_dir, cache=job.cache, layer_budget=job.layer_budget)
    return BuiltImage(path, Path(), plan, None, next_steps=pct_instructions(job.cluster, plan.node))


@dataclass(frozen=True)
class Builder:
    build: Callable[[BuildJob, RenderPlan, Path, Any], BuiltImage[Any]]   # (job, plan, verified base, finish)
    on_verified_base: bool      # grows from the job's verified base image through cached role layers


# Which builder makes each platform's artefact (builder.render.platform).
BUILDERS: dict[str, Builder] = {
    SD_CARD_IMAGE: Builder(build_from_plan, on_verified_base=True),
    LXC_TEMPLATE: Builder(container_template, on_verified_base=False),
}


def customise(img: OpenImage, plan: RenderPlan, cluster: Cluster) -> None:
    """The root's accounts, files and services (builder.provision.root), then the boot-partition edits."""
    provision_root(img, plan, cluster)
    with step("Boot partition"):
        apply_boot_edits(img, plan)
