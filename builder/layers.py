"""Role bases as stacks of cached layers: roles share the layers of the profiles they share.

A role's stack follows its profiles' merge order (`common`, includes, the role), at most three
layers deep: `common` (every role has it), the profile the role's include chain starts with (the
family roles share: `compute` under the time server and the auxiliary node, `login` under the
controller), and one top layer with the rest of the role's packages. Each layer is an image file =
the layer below, grown, with apt having installed every package up to it. For the shipped roles:

    base ─ common ─┬─ compute ─┬─ timeserver
                   │           └─ auxiliary        (timeserver + fileserver + monitor, one layer)
                   └─ login ──── controller

A profile deeper in a chain gets no layer of its own: no other role shares it, and each layer
costs a copy, a mount and an apt run under emulation of its own (on two cores the auxiliary
node's four-deep chain made every-role builds wait for four apt runs one after another).

A layer's key names the layer below it, its packages and its growth, so it is found whatever
cluster or role asks for it, and adding a package to a role redoes only that role's layer and
those above it. Layers that do not depend on each other are built side by side, one process
each, as many at once as there are cores (CLUSTERBAKE_JOBS overrides that).
"""

from __future__ import annotations

import ctypes
import json
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path

from builder import progress
from builder.cache import cache_entry, recipe_key, write_atomically
from builder.command import run
from builder.errors import ClusterbakeError, CommandFailed, Interrupted, error_report, reported_error
from builder.image import grow_image, open_image
from builder.layer_budget import LAYER_FOLDER, take_layers
from builder.process.signals import interruptible
from builder.progress import step
from builder.provision.packages import install_packages
from builder.render import RenderPlan
from builder.settings import settings

log = logging.getLogger("clusterbake")

# Bump when what a layer contains changes for the same inputs (e.g. how packages are installed).
LAYER_VERSION = 2
PR_SET_PDEATHSIG = 1
# Layers below a role's top one: `common` and the family its include chain starts with.
SHARED_LEVELS = 2


@dataclass(frozen=True)
class Layer:
    """One cached image of a role's stack: the image below it, grown, with `packages` installed."""

    profile: str                 # the profile the layer ends with, for messages
    packages: tuple[str, ...]    # every package installed up to this layer, sorted
    new: tuple[str, ...]         # those not installed below it
    grow_mib: int                # what this layer adds to the size of the one below
    key: str


def role_layers(base: Path, plan: RenderPlan) -> tuple[Layer, ...]:
    """The layers a role base is made of, bottom first; the last holds every package of the plan.

    A profile that adds no packages, or lies deeper than SHARED_LEVELS below the top, adds no
    layer of its own: its packages and growth go to the next layer, at the latest the top one
    (which, when nothing is left to install, only grows the one below).
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
        adds = packages != installed
        if top:
            if not adds and not grow and layers:
                continue
        elif not adds or len(layers) == SHARED_LEVELS:
            continue
        key = recipe_key({"below": below, "packages": packages, "grow_mib": grow, "version": LAYER_VERSION})
        new = tuple(p for p in packages if p not in installed)
        layers.append(Layer(profile_step.profile, packages, new, grow, key))
        below, installed, grow = key, packages, 0
    return tuple(layers)


def layer_path(cache: Path, layer: Layer) -> Path:
    return cache / LAYER_FOLDER / f"{layer.key}.img"


def copy_sparse(src: Path, dst: Path) -> None:
    """Copy an image keeping its holes (and sharing blocks where the filesystem can)."""
    run(["cp", "--sparse=always", "--reflink=auto", src, dst], label="copy image")


def ensure_role_base(base: Path, plan: RenderPlan, cache: Path, *, budget: int) -> Path:
    """The role base: the top of the role's layers, each built once and cached by its recipe; then
    the cached layers trimmed to `budget` bytes on disk (builder.layer_budget).

    Only what is missing is built, from the highest cached layer up; a cached top layer needs
    nothing below it (no lock, no lists, no network).
    """
    image = base
    for layer, below in missing_layers(base, [plan], cache):
        image = ensure_layer(below, layer, cache)
    stack = [layer_path(cache, layer) for layer in role_layers(base, plan)]
    take_layers(stack, budget)
    if image == base:
        log.info("  using the cached role base %s", stack[-1])
    return stack[-1]


def missing_layers(base: Path, plans: Sequence[RenderPlan], cache: Path) -> list[tuple[Layer, Path]]:
    """Each layer these plans need that is not cached, with the image it is built on; bottom first."""
    missing: dict[str, tuple[Layer, Path]] = {}
    for plan in plans:
        layers = role_layers(base, plan)
        cached = [n for n, layer in enumerate(layers) if layer_path(cache, layer).exists()]
        start = cached[-1] + 1 if cached else 0
        below = layer_path(cache, layers[start - 1]) if start else base
        for layer in layers[start:]:
            missing.setdefault(layer.key, (layer, below))
            below = layer_path(cache, layer)
    return list(missing.values())


def ensure_layer(below: Path, layer: Layer, cache: Path) -> Path:
    """`below` copied, grown by the layer's growth and with the layer's packages installed; cached."""
    path = layer_path(cache, layer)

    def make(work: Path) -> None:
        with step(f"Layer '{layer.profile}': " + (" ".join(layer.new) or "no new packages")):
            started = time.monotonic()
            tmp = work / path.name
            copy_sparse(below, tmp)
            if layer.grow_mib:
                grow_image(tmp, layer.grow_mib << 20)
            if layer.new:
                with open_image(tmp) as img:
                    install_packages(img, layer.packages, cache=cache, scratch=work)
            # What `make bench` reports of a cold build: written before the layer, so a layer has one.
            write_atomically(layer_record_path(path), json.dumps({
                "profile": layer.profile, "new": list(layer.new), "grow_mib": layer.grow_mib,
                "seconds": round(time.monotonic() - started, 1)}).encode())

    cache_entry(path, make)
    return path


def layer_record_path(layer_image: Path) -> Path:
    """How long a layer took to build, and what it added (JSON beside the layer's image)."""
    return layer_image.with_suffix(".json")


# --- building several layers at once -------------------------------------------------------------

def jobs() -> int:
    """How many layers to build at once: $CLUSTERBAKE_JOBS, else the cores this process may use."""
    explicit = settings().jobs
    return explicit if explicit is not None else len(os.sched_getaffinity(0))


def build_layers(base: Path, plans: Sequence[RenderPlan], cache: Path, *, limit: int) -> None:
    """Build every layer these plans miss; layers that do not depend on each other side by side,
    at most `limit` at once (the job's `jobs()`).

    A layer waits for the one below it. Each runs in a process of its own (`spawn`), which
    unwinds its loop devices and mounts on SIGINT/SIGTERM like any build, and gets SIGTERM if
    this process dies. The first failure stops the others and is raised here.
    """
    todo = missing_layers(base, plans, cache)
    if limit < 2 or len(todo) < 2:
        for layer, below in todo:
            ensure_layer(below, layer, cache)
        return
    pending = {layer.key: (layer, below) for layer, below in todo}
    keys = {layer_path(cache, layer): layer.key for layer, _ in todo}
    running: dict[str, _Worker] = {}
    try:
        while pending or running:
            for key, (layer, below) in list(pending.items()):
                if len(running) < limit and keys.get(below) not in pending and keys.get(below) not in running:
                    running[key] = _Worker(below, layer, cache, build=ensure_layer)
                    del pending[key]
            if not running:
                raise AssertionError("a layer waits for one that is neither pending nor running")
            for worker in wait_any(list(running.values())):
                del running[worker.layer.key]
                worker.result()
    finally:
        for worker in running.values():
            worker.stop()


def wait_any(workers: Sequence[_Worker]) -> list[_Worker]:
    ready = wait([w.results for w in workers])
    return [w for w in workers if w.results in ready]


class _Worker:
    """One layer built in a child process by `build` (ensure_layer); `result()` re-raises its failure
    here, of the same kind and with the same hint."""

    def __init__(self, below: Path, layer: Layer, cache: Path, *, build: Callable[[Path, Layer, Path], Path]) -> None:
        self.layer = layer
        context = multiprocessing.get_context("spawn")
        self.results, sender = context.Pipe(duplex=False)
        verbosity = (not log.isEnabledFor(logging.INFO), log.isEnabledFor(logging.DEBUG))
        self.process: BaseProcess = context.Process(target=_build_in_child,
                                                    args=(build, below, layer, cache, verbosity, sender),
                                                    name=f"layer {layer.profile}")
        self.process.start()
        sender.close()

    def result(self) -> None:
        try:
            report: dict[str, object] = self.results.recv()
        except EOFError:
            died = CommandFailed(f"the process building it died (exit {self.process.exitcode})")
            report = {"error": error_report(died)}
        finally:
            self.results.close()
            self.process.join()
        if "error" in report:
            error = report["error"]
            assert isinstance(error, dict)
            raise reported_error(error, f"layer '{self.layer.profile}'")

    def stop(self) -> None:
        """Ask the child to unwind (SIGTERM) and wait until it has."""
        if self.process.is_alive():
            self.process.terminate()
        self.process.join()
        self.results.close()


def _build_in_child(build: Callable[[Path, Layer, Path], Path], below: Path, layer: Layer, cache: Path,
                    verbosity: tuple[bool, bool], results: Connection) -> None:
    # Should the parent die (even by SIGKILL), the kernel sends us SIGTERM: we unwind, not linger.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    progress.configure(quiet=verbosity[0], debug=verbosity[1])
    try:
        with interruptible():
            if os.getppid() == 1:
                raise Interrupted("the build that started this layer is gone", signal.SIGTERM)
            build(below, layer, cache)
        results.send({"ok": True})
    except ClusterbakeError as exc:
        results.send({"error": error_report(exc)})
    finally:
        results.close()
