"""build_image(): the pipeline as a flat list of steps, each cached by the hash of its inputs.

verified base (acquire) → role base: layers of packages, one per profile, shared between
roles (cached here) → final image with the rendered files, accounts and services (seconds).
Changing a template only redoes the last; adding a package to a role only its top layer.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from builder.acquire import fetch_base
from builder.cache import install, locked, recipe_key, staging_dir
from builder.command import run
from builder.config.model import Cluster
from builder.image import OpenImage, atomic_output, grow_image, open_image
from builder.paths import repo_root
from builder.progress import step
from builder.provision.accounts import create_users
from builder.provision.files import apply_boot_edits, remove_paths, write_files
from builder.provision.packages import install_packages
from builder.provision.services import set_services
from builder.render import RenderPlan, render_plan

log = logging.getLogger("clusterbake")

# Bump when what a layer contains changes for the same inputs (e.g. how packages are installed).
LAYER_VERSION = 2


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
    return Path(os.environ.get("CLUSTERBAKE_PROFILES") or repo_root() / "profiles")


def overlays_dir() -> Path:
    """The overlay trees: $CLUSTERBAKE_OVERLAYS, else the repository's overlays/."""
    return Path(os.environ.get("CLUSTERBAKE_OVERLAYS") or repo_root() / "overlays")


def plan_build(req: BuildRequest) -> RenderPlan:
    """Everything that can be checked without touching an image: fails in seconds on bad input."""
    return render_plan(req.cluster, role=req.role, node=req.node, secrets=req.secrets,
                       profiles_dir=profiles_dir(), overlays_dir=overlays_dir())


def build_images(requests: Sequence[BuildRequest]) -> list[Path]:
    """Several images, one after the other: the layers their roles share are built by the first."""
    return [build_image(req) for req in requests]


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


@dataclass(frozen=True)
class Layer:
    """One cached image of a role's stack: the image below it, grown, with `packages` installed.

    A role's stack follows its profiles' merge order (`common`, includes, the role), one layer
    per profile that adds packages, so roles share the layers of the profiles they share:
    compute and timeserver share common and compute, controller shares common. The key
    names the layer below, so a layer is found whatever cluster or role asked for it.
    """

    profile: str                 # the profile the layer ends with, for messages
    packages: tuple[str, ...]    # every package installed up to this layer, sorted
    new: tuple[str, ...]         # those not installed below it
    grow_mib: int                # what this layer adds to the size of the one below
    key: str


def role_layers(base: Path, plan: RenderPlan) -> tuple[Layer, ...]:
    """The layers a role base is made of, bottom first; the last holds every package of the plan.

    A profile that adds no packages adds no layer: its growth goes to the next layer that
    installs something (or the top one), so the last layer's image has the plan's size.
    """
    steps = plan.profile.package_steps
    layers: list[Layer] = []
    below, grow = f"base {base.name}", 0
    installed: tuple[str, ...] = ()
    for number, profile_step in enumerate(steps):
        top = number == len(steps) - 1
        grow += profile_step.grow_mib
        # role_image packages (the identity service's) sit in the top layer, with the role's own.
        packages = tuple(sorted(set(plan.packages if top else profile_step.packages)))
        if packages == installed and not (top and (grow or not layers)):
            continue
        key = recipe_key({"below": below, "packages": packages, "grow_mib": grow, "version": LAYER_VERSION})
        new = tuple(p for p in packages if p not in installed)
        layers.append(Layer(profile_step.profile, packages, new, grow, key))
        below, installed, grow = key, packages, 0
    return tuple(layers)


def layer_path(cache: Path, layer: Layer) -> Path:
    return cache / "role-bases" / f"{layer.key}.img"


def ensure_role_base(base: Path, plan: RenderPlan, cache: Path) -> Path:
    """The role base: the top of the role's layers, each built once and cached by its recipe.

    Only what is missing is built, from the highest cached layer up; a cached top layer needs
    nothing below it (no lock, no lists, no network).
    """
    layers = role_layers(base, plan)
    cached = [n for n, layer in enumerate(layers) if layer_path(cache, layer).exists()]
    start = cached[-1] if cached else -1
    image = layer_path(cache, layers[start]) if start >= 0 else base
    if start >= 0:
        log.info("  using the cached layer '%s' %s", layers[start].profile, image)
    for layer in layers[start + 1:]:
        image = ensure_layer(image, layer, cache)
    return image


def ensure_layer(below: Path, layer: Layer, cache: Path) -> Path:
    """`below` copied, grown by the layer's growth and with the layer's packages installed; cached."""
    path = layer_path(cache, layer)
    with locked(path.with_name(f"{path.name}.lock")):
        if path.exists():  # another builder made it while we waited
            return path
        with step(f"Layer '{layer.profile}': " + (" ".join(layer.new) or "no new packages")), \
                staging_dir(path.parent) as work:
            tmp = work / path.name
            copy_sparse(below, tmp)
            if layer.grow_mib:
                grow_image(tmp, layer.grow_mib << 20)
            if layer.new:
                with open_image(tmp) as img:
                    install_packages(img, layer.packages, cache=cache)
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
        with step("Services"):
            set_services(img, chroot, enable=plan.enable, disable=plan.disable, source=plan.source)
    with step("Boot partition"):
        apply_boot_edits(img, plan)
