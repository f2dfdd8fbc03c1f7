"""`make bench`: the speed goals of clusterbake as ratios of two numbers measured in one run.

Absolute times on a shared 2-core machine are noise; a ratio of two steps measured one after the
other on the same machine is not. The bench builds the example cluster (cluster.yaml: controller,
auxiliary, compute) from the stand-in base served on 127.0.0.1 (the user's cached stand-in,
published and served, never rebuilt), in a private cache under /var/tmp, so the user's cache is
neither used nor disturbed (only read: its downloaded .debs are copied in, when it has them, to spare
a pass that downloads them). In the order it runs:

  fetch          download + SHA-256 + signature + decompress (cold), cache hit (warm)
  decompress     `xz -T0 -d` of the base's .img.xz and the builder's own decompression of it, taken turn
                 about three times, the fastest of each kept
  cluster        every role image with an empty apt archive (downloads from deb.debian.org: fills it),
                 only when the user's cache has no downloaded .debs to copy
  one role       the compute image from cold: no layers, no apt lists (the apt archive is warm)
  cluster        every role image from cold, the same way: the layers the roles share are built once
  template only  the compute image again, every layer cached: what a template change costs
  one package    the compute image with one package added to its profile: only its layer is redone
  flash          bmaptool writing the compute image to a loop device: bytes written vs mapped
  roles          each role's layers (what each added, its cold build time) and image size, from the
                 cold cluster build: what a role that grows (issue 15) costs
  256 nodes      `check` of a 256-node inventory: every role's plan rendered, in-process
  first image    a newcomer's `make image ROLE=compute DEMO=1` with an empty cache of its own: the
                 stand-in built from Debian's archive (downloads included), published, served, and
                 the compute image built from it; against the 20-minute budget of issue 21

Each step runs in a fresh interpreter (multiprocessing "spawn"): ru_maxrss only ever grows within
a process, so a step's peak RSS is its own only in a process of its own. RUSAGE_SELF is the
builder; RUSAGE_CHILDREN is the largest command it waited for (xz, qemu running dpkg, mkfs, ...).

`--quick` skips the cold builds (the layers are copied from the user's cache when it has them, and
the roles table shows the cold times recorded when the user's builds made them).
`--report FILE` prints the README's "Speed and memory" tables from a results file.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import platform
import resource
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import yaml

from builder import progress
from builder.acquire import fetch_base
from builder.acquire.decompress import decompress
from builder.build import build_job, plan_job, profiles_dir
from builder.cache import staging_dir
from builder.command import run
from builder.config import Cluster, load_cluster
from builder.demo.cluster import demo_cluster_file
from builder.demo.download_site import publish_standin, serve_standin
from builder.errors import ClusterbakeError, CommandFailed, EnvironmentProblem, Interrupted
from builder.flash import flash
from builder.image.loop import attached
from builder.layers import copy_sparse, layer_path, layer_record_path, role_layers
from builder.paths import cache_root, repo_root
from builder.process.signals import interruptible
from builder.progress import step
from builder.publish.bmap import create_bmap, read_bmap

log = logging.getLogger("clusterbake.bench")

WORK_PARENT = Path("/var/tmp/clusterbake-bench")
ROLE = "compute"
EXTRA_PACKAGE = "tree"       # small, no dependencies of its own, in no shipped profile
DECOMPRESS_RUNS = 3           # xz and the builder taken turn about, the fastest of each kept
SCALE_NODES = 256
MIB_IN_KIB = 1024
SECTOR = 512

# The goals of issue 12: (name, limit). A ratio at or under its limit meets the goal.
LIMITS = {
    "cluster": 1.5,
    "one package": 0.5,
    "template only": 0.10,
    "decompress": 1.2,
    "builder RSS": 1.0,
    "flash": 1.1,
    "256 nodes": 1.0,
    "apt lists": 1.0,
    "first image": 1.0,
}
RSS_BUDGET_MIB = 200
RESULTS_FILE = repo_root() / "tests" / "measured" / "bench.json"   # the README's tables are made from it
SCALE_BUDGET_S = 2.0
FIRST_IMAGE_BUDGET_S = 20 * 60


@dataclass(frozen=True)
class Measurement:
    """One timed step: wall and CPU seconds, and peak RSS of the builder and of its largest command."""

    step: str
    cache: str
    seconds: float
    cpu_seconds: float  # user + system, the builder and every command it ran
    rss_self_kib: int
    rss_children_kib: int


@dataclass(frozen=True)
class RoleLayer:
    """One layer of a role's stack as the cold cluster build left it, and the role's image size."""

    role: str
    layer: str              # the profile the layer ends with
    new: str                # the packages it added, space-separated
    cold_seconds: float | None   # None: built by a builder that kept no record
    layer_mib: float        # the layer image's allocated size
    image_mib: float        # the role image's allocated size (the same on every row of a role)


@dataclass(frozen=True)
class Goal:
    """A goal as a ratio: `measured` / `reference` (each with its unit) against `limit`."""

    name: str
    what: str
    measured: float
    reference: float
    unit: str
    limit: float

    @property
    def ratio(self) -> float:
        return self.measured / self.reference if self.reference else float("inf")

    @property
    def met(self) -> bool:
        return self.ratio <= self.limit


@dataclass(frozen=True)
class Workspace:
    """The private directory one bench run works in (picklable: it is handed to each step's process)."""

    root: Path

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def cluster_file(self) -> Path:
        return self.root / "cluster.yaml"


# --- what is printed and written ---------------------------------------------------------------

COLUMNS = ("step", "cache", "seconds", "CPU seconds", "peak RSS builder", "peak RSS commands")
GOAL_COLUMNS = ("goal", "ratio", "limit", "measured", "reference", "")


def format_table(results: Sequence[Measurement]) -> str:
    """The results as an aligned text table, one row a step."""
    return _aligned(COLUMNS, [
        (m.step, m.cache, _seconds(m.seconds), _seconds(m.cpu_seconds), _mib(m.rss_self_kib), _mib(m.rss_children_kib))
        for m in results
    ], text_columns=2)


ROLE_COLUMNS = ("role", "layer", "cold seconds", "layer", "role image", "new packages")


def format_roles(rows: Sequence[RoleLayer]) -> str:
    """Each role's layers: what each added, how long it took cold, its size; the role image's size."""
    return _aligned(ROLE_COLUMNS, [
        (r.role, r.layer, "cached" if r.cold_seconds is None else _seconds(r.cold_seconds),
         f"{r.layer_mib:.0f} MiB", f"{r.image_mib:.0f} MiB", r.new or "(grows only)")
        for r in rows
    ], text_columns=2)


def format_goals(goals: Sequence[Goal]) -> str:
    """Each goal as a ratio, the two numbers it comes from beside it, and whether it is met."""
    return _aligned(GOAL_COLUMNS, [
        (g.what, f"{g.ratio:.2f}", f"≤ {g.limit:g}", _amount(g.measured, g.unit), _amount(g.reference, g.unit),
         "met" if g.met else "NOT MET")
        for g in goals
    ], text_columns=1)


def _aligned(header: Sequence[str], body: Sequence[Sequence[str]], *, text_columns: int) -> str:
    rows = [tuple(header), *map(tuple, body)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        # Text left-aligned, numbers right-aligned, as a reader compares them.
        cells = [cell.ljust(w) if i < text_columns or i == len(header) - 1 else cell.rjust(w)
                 for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def results_document(results: Sequence[Measurement], machine: dict[str, object], *, mode: str,
                     goals: Sequence[Goal] = (), roles: Sequence[RoleLayer] = ()) -> dict[str, object]:
    """What tests/measured/bench.json holds: the machine, how the bench ran, every measurement and goal."""
    return {
        "tool": "clusterbake bench",
        "mode": mode,
        "role": ROLE,
        "machine": machine,
        "results": [
            {**asdict(m), "seconds": round(m.seconds, 2), "cpu_seconds": round(m.cpu_seconds, 2),
             "rss_self_mib": round(m.rss_self_kib / MIB_IN_KIB, 1),
             "rss_children_mib": round(m.rss_children_kib / MIB_IN_KIB, 1)}
            for m in results
        ],
        "goals": [{**asdict(g), "ratio": round(g.ratio, 3), "met": g.met} for g in goals],
        "roles": [asdict(r) for r in roles],
    }


def markdown_report(document: Mapping[str, object]) -> str:
    """The README's tables, from a results document: the goals first, then every step."""
    machine, rows, goal_rows = document["machine"], document["results"], document.get("goals", [])
    assert isinstance(machine, dict) and isinstance(rows, list) and isinstance(goal_rows, list)
    goals = [Goal(**{k: g[k] for k in ("name", "what", "measured", "reference", "unit", "limit")}) for g in goal_rows]
    lines = [f"One `make bench` run ({machine['date']}, commit {machine['commit']}, {machine['nproc']} cores, "
             f"{machine['memory_mib'] // 1024} GiB, load {machine['load_average'][0]} at the start):", ""]
    if document.get("transcribed"):
        lines[-1:-1] = [f"(Transcribed: {document['transcribed']}.)"]
    if goals:
        lines += ["| goal | ratio | limit | measured | reference |", "| --- | ---: | ---: | ---: | ---: |"]
        lines += [f"| {g.what} | **{g.ratio:.2f}** | ≤ {g.limit:g} | {_amount(g.measured, g.unit)} | "
                  f"{_amount(g.reference, g.unit)} |" for g in goals]
        lines.append("")
    lines += ["| step | cache | seconds | peak RSS builder / commands |", "| --- | --- | ---: | ---: |"]
    lines += [f"| {r['step']} | {r['cache']} | {_seconds(r['seconds'])} | "
              f"{r['rss_self_mib']:.0f} / {r['rss_children_mib']:.0f} MiB |" for r in rows]
    role_rows = document.get("roles", [])
    assert isinstance(role_rows, list)
    if role_rows:
        lines += ["", "| role | layer | cold seconds | layer size | role image | new packages |",
                  "| --- | --- | ---: | ---: | ---: | --- |"]
        lines += [f"| {r['role']} | {r['layer']} | "
                  f"{'cached' if r['cold_seconds'] is None else _seconds(r['cold_seconds'])} | "
                  f"{r['layer_mib']:.0f} MiB | {r['image_mib']:.0f} MiB | {r['new'] or '(grows only)'} |"
                  for r in role_rows]
    return "\n".join(lines)


def _seconds(value: float) -> str:
    # Cache hits take milliseconds: a fixed one decimal would print them all as 0.0.
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _mib(kib: int) -> str:
    return f"{kib / MIB_IN_KIB:.0f} MiB"


def _amount(value: float, unit: str) -> str:
    if unit == "s":
        return f"{_seconds(value)} s"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    return f"{value:g} {unit}"


def machine_facts() -> dict[str, object]:
    """What the numbers depend on: cores, memory, load from other work, the Python and xz in use."""
    facts: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": _cpuinfo_model(),
        "memory_mib": _meminfo_kib("MemTotal") // MIB_IN_KIB,
        "load_average": [round(load, 2) for load in os.getloadavg()],
        "kernel": platform.release(),
        "python": platform.python_version(),
        "xz": _first_line(["xz", "--version"]),
        "commit": _first_line(["git", "-C", str(repo_root()), "rev-parse", "--short", "HEAD"]),
    }
    return facts


def _cpuinfo_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def _meminfo_kib(field: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def _first_line(argv: list[str]) -> str:
    proc = run(argv, capture=True, check=False)
    lines = proc.stdout.decode(errors="replace").splitlines()
    return lines[0].strip() if proc.returncode == 0 and lines else "unknown"


# --- the steps, each in a process of its own -----------------------------------------------------

Params = Mapping[str, str]


def _prepare_fetch(work: Workspace, params: Params) -> Callable[[], object]:
    cluster = _cluster(work)
    return lambda: fetch_base(cluster.base_image, cache=work.cache)


def _prepare_xz(work: Workspace, params: Params) -> Callable[[], object]:
    archive, out = Path(params["archive"]), work.root / "xz.img"
    os.sync()   # the previous run's writes are not flushed on this one's time

    def timed() -> object:
        with archive.open("rb") as src, out.open("wb") as dst:
            run(["xz", "-T0", "-d", "-c"], stdin=src, stdout=dst, label="xz -d")
        out.unlink()
        return out
    return timed


def _prepare_decompress(work: Workspace, params: Params) -> Callable[[], object]:
    archive, out = Path(params["archive"]), work.root / "builder.img"
    os.sync()

    def timed() -> object:
        decompress(archive, out, ".xz", origin=archive.name)
        out.unlink()
        return out
    return timed


def _prepare_images(work: Workspace, params: Params) -> Callable[[], object]:
    if "profiles" in params:
        os.environ["CLUSTERBAKE_PROFILES"] = params["profiles"]
    cluster = _cluster(work)
    roles = params["roles"].split(",") if "roles" in params else list(cluster.roles)
    job = plan_job(cluster, [(role, None) for role in roles], out_dir=work.out, cache=work.cache)
    return lambda: ",".join(str(built.path) for built in build_job(job))


def _prepare_flash(work: Workspace, params: Params) -> Callable[[], object]:
    image = Path(params["image"])
    bmap = create_bmap(image, work.root / f"{image.name}.bmap")
    card = work.root / "card"
    with card.open("wb") as out:
        out.truncate(image.stat().st_size)

    def timed() -> object:
        with attached(card, 0, card.stat().st_size) as device:
            before = _sectors_written(device)
            flash(image, device, bmap=bmap, yes=True)
            return (_sectors_written(device) - before) * SECTOR
    return timed


def _sectors_written(device: Path) -> int:
    # /sys/block/<dev>/stat: field 7 is sectors written (Documentation/block/stat.rst).
    return int((Path("/sys/block") / device.name / "stat").read_text().split()[6])


def _prepare_scale(work: Workspace, params: Params) -> Callable[[], object]:
    path = write_scale_cluster(work, SCALE_NODES)

    def timed() -> object:
        cluster = load_cluster(path, profiles_dir=profiles_dir())
        plan_job(cluster, [(role, None) for role in cluster.roles], secrets=False)   # what `check` does
        return len(cluster.nodes)
    return timed


def _prepare_first_image(work: Workspace, params: Params) -> Callable[[], object]:
    """The README's first command, as a newcomer runs it: nothing cached, nothing served yet."""
    cache, out = work.root / "first-image-cache", work.root / "first-image-out"
    argv = [sys.executable, "-m", "builder", "demo", "--cluster", str(repo_root() / "cluster.yaml"),
            "--role", ROLE, "--out", str(out)]

    def timed() -> object:
        run(argv, env={**os.environ, "CLUSTERBAKE_CACHE": str(cache)}, label="first image", timeout=3 * 3600)
        shutil.rmtree(cache)   # gigabytes: the stand-in, its download site, the layers
        return ",".join(str(p) for p in out.glob("*.img"))
    return timed


STEPS: dict[str, Callable[[Workspace, Params], Callable[[], object]]] = {
    "fetch": _prepare_fetch,
    "xz": _prepare_xz,
    "decompress": _prepare_decompress,
    "images": _prepare_images,
    "flash": _prepare_flash,
    "scale": _prepare_scale,
    "first image": _prepare_first_image,
}


def _cluster(work: Workspace) -> Cluster:
    return load_cluster(work.cluster_file, profiles_dir=profiles_dir())


def _step_process(name: str, work: Workspace, params: Params, verbosity: tuple[bool, bool],
                  results: Connection) -> None:
    """Entry point of a step's process: prepare (untimed), run the step (timed), report its usage."""
    quiet, debug = verbosity
    progress.configure(quiet=quiet, debug=debug)
    try:
        with interruptible():
            timed = STEPS[name](work, params)
            cpu_before, start = _cpu_seconds(), time.perf_counter()
            produced = timed()
            seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_before
        me, commands = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        results.send({
            "seconds": seconds,
            "cpu_seconds": cpu,
            "rss_self_kib": me.ru_maxrss,
            "rss_children_kib": commands.ru_maxrss,
            "produced": str(produced),
        })
    except ClusterbakeError as exc:
        results.send({"error": exc.one_line(), "exit_code": exc.exit_code})
    finally:
        results.close()


def _cpu_seconds() -> float:
    """User plus system time of this process and of every command it has waited for."""
    me, commands = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + commands.ru_utime + commands.ru_stime


def run_step(name: str, work: Workspace, params: Params | None = None) -> dict[str, object]:
    """Run one step in a fresh interpreter; return what it reported (re-raising its failure here)."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    verbosity = (not log.isEnabledFor(logging.INFO), log.isEnabledFor(logging.DEBUG))
    proc = context.Process(target=_step_process, args=(name, work, dict(params or {}), verbosity, sender),
                           name=f"bench {name}")
    proc.start()
    sender.close()
    try:
        try:
            report: dict[str, object] = receiver.recv()
        except EOFError:
            report = {"error": f"the bench's '{name}' process died (exit {proc.exitcode})", "exit_code": 1}
        proc.join()
    except Interrupted:
        # A SIGINT from the terminal reached the step too; a SIGTERM only us. Either way it unwinds
        # once (a second signal is ignored while it cleans up) and we wait for that.
        proc.terminate()
        proc.join()
        raise
    finally:
        receiver.close()
    if "error" in report:
        failure = EnvironmentProblem if report.get("exit_code") == 2 else CommandFailed
        raise failure(f"bench step '{name}': {report['error']}")
    return report


def measure(label: str, cache: str, name: str, work: Workspace,
            params: Params | None = None) -> tuple[Measurement, str]:
    """Run a step and label its numbers; also return what the step produced (a path, a count)."""
    with step(f"bench: {label} ({cache})"):
        report = run_step(name, work, params)
    measurement = Measurement(
        step=label, cache=cache,
        seconds=float(str(report["seconds"])), cpu_seconds=float(str(report["cpu_seconds"])),
        rss_self_kib=int(str(report["rss_self_kib"])), rss_children_kib=int(str(report["rss_children_kib"])),
    )
    return measurement, str(report["produced"])


# --- the runs ------------------------------------------------------------------------------------

class Run:
    """The measurements of one bench run, and the goals computed from them."""

    def __init__(self, work: Workspace, archive: Path) -> None:
        self.work = work
        self.archive = archive
        self.results: list[Measurement] = []
        self.goals: list[Goal] = []
        self.roles: list[RoleLayer] = []

    def measure(self, label: str, cache: str, name: str, params: Params | None = None) -> tuple[Measurement, str]:
        measurement, produced = measure(label, cache, name, self.work, params)
        self.results.append(measurement)
        return measurement, produced

    def goal(self, name: str, what: str, measured: float, reference: float, unit: str) -> None:
        self.goals.append(Goal(name, what, round(measured, 2), round(reference, 2), unit, LIMITS[name]))

    def forget_builds(self) -> None:
        """Back to cold: no layers, no apt lists (the apt archive and the fetched base stay)."""
        for folder in ("role-bases", "apt-lists"):
            shutil.rmtree(self.work.cache / folder, ignore_errors=True)

    def fetch_and_decompress(self) -> Path:
        """Returns the decompressed base (what the layers' keys name)."""
        self.measure("fetch", "cold", "fetch")
        _, base = self.measure("fetch", "warm", "fetch")
        self.decompression()
        return Path(base)

    def decompression(self) -> None:
        """xz and the builder, taken turn about DECOMPRESS_RUNS times, the fastest of each kept: a
        few seconds each, so one busy moment (or the other's writeback) would decide the ratio."""
        params = {"archive": str(self.archive)}
        runs = [(measure("xz -T0 -d (reference)", f"base .img.xz, best of {DECOMPRESS_RUNS}", "xz", self.work,
                         params)[0],
                 measure("decompress (builder)", f"base .img.xz, best of {DECOMPRESS_RUNS}", "decompress", self.work,
                         params)[0])
                for _ in range(DECOMPRESS_RUNS)]
        xz = min((r[0] for r in runs), key=lambda m: m.seconds)
        ours = min((r[1] for r in runs), key=lambda m: m.seconds)
        self.results += [xz, ours]
        self.goal("decompress", "decompression / `xz -T0 -d` of the same file", ours.seconds, xz.seconds, "s")

    def builds(self, base: Path) -> Path:
        """Cold one role and cold cluster, both from the same warm apt archive; returns the compute image."""
        if not self.seed_apt_archive():
            self.measure("every role image", "cold, apt archive empty", "images")
            self.forget_builds()
        one, _ = self.measure(f"{ROLE} image", "cold", "images", {"roles": ROLE})
        self.forget_builds()
        cluster, images = self.measure("every role image", "cold", "images")
        self.roles = role_layer_rows(self.work.cache, base, images.split(","), _cluster(self.work))
        fetched = [p for p in (self.work.cache / "apt-lists").iterdir() if p.is_dir()]
        self.goal("cluster", "every role image, cold / one role image, cold", cluster.seconds, one.seconds, "s")
        self.goal("apt lists", "apt-get update runs for every role image, cold", len(fetched), 1, "runs")
        warm, produced = self.measure(f"{ROLE} image", "every layer cached (template only)", "images",
                                      {"roles": ROLE})
        self.goal("template only", "template-only rebuild / one role image, cold", warm.seconds, one.seconds, "s")
        added, _ = self.measure(f"{ROLE} image", f"'{EXTRA_PACKAGE}' added to its profile", "images",
                                {"roles": ROLE, "profiles": str(self.profiles_with_extra_package())})
        self.goal("one package", "one package added to a role / one role image, cold", added.seconds, one.seconds, "s")
        return Path(produced)

    def seed_apt_archive(self) -> bool:
        """Copy the user's downloaded .debs into the bench's cache; False when there are none."""
        theirs, ours = cache_root() / "apt-archives", self.work.cache / "apt-archives"
        if not any(theirs.glob("*/*.deb")):
            return False
        log.info("  seeding the bench's apt archive with the .debs in %s", theirs)
        shutil.copytree(theirs, ours, dirs_exist_ok=True)
        return True

    def profiles_with_extra_package(self) -> Path:
        profiles = self.work.root / "profiles"
        shutil.copytree(profiles_dir(), profiles, dirs_exist_ok=True)
        path = profiles / f"{ROLE}.yaml"
        data = yaml.safe_load(path.read_text())
        data["packages"] = [*data.get("packages", []), EXTRA_PACKAGE]
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return profiles

    def flash_and_scale(self, image: Path) -> None:
        written = self.measure("flash with bmaptool", "loop device", "flash", {"image": str(image)})[1]
        bmap = read_bmap(self.work.root / f"{image.name}.bmap")
        mapped = bmap.mapped_blocks * bmap.block_size
        self.goal("flash", "bytes written by bmap flashing / the image's mapped bytes",
                  int(written) / (1 << 20), mapped / (1 << 20), "MiB")
        scale, _ = self.measure(f"check, {SCALE_NODES} nodes", "every role rendered", "scale")
        self.goal("256 nodes", f"`check` of {SCALE_NODES} nodes / its budget", scale.seconds, SCALE_BUDGET_S, "s")

    def first_image(self) -> None:
        first, _ = self.measure(f"{ROLE} image, `make image DEMO=1`", "empty cache, stand-in included", "first image")
        self.goal("first image", f"first {ROLE} image from an empty cache / 20 minutes", first.seconds,
                  FIRST_IMAGE_BUDGET_S, "s")

    def memory(self) -> None:
        peak = max(m.rss_self_kib for m in self.results) / MIB_IN_KIB
        self.goal("builder RSS", "builder peak RSS (any step) / its budget", peak, RSS_BUDGET_MIB, "MiB")


def role_layer_rows(cache: Path, base: Path, images: Sequence[str], cluster: Cluster) -> list[RoleLayer]:
    """Each role's layers in `cache` (cold time from the record the build left) and its image's size."""
    rows = []
    job = plan_job(cluster, [(role, None) for role in cluster.roles], secrets=False, cache=cache)
    for role, plan in zip(cluster.roles, job.plans, strict=True):
        image = next((Path(i) for i in images if Path(i).name.endswith(f"-{role}.img")), None)
        image_mib = _allocated_mib(image) if image is not None and image.exists() else 0.0
        for layer in role_layers(base, plan):
            path = layer_path(cache, layer)
            record = layer_record_path(path)
            seconds = json.loads(record.read_text())["seconds"] if record.exists() else None
            rows.append(RoleLayer(role, layer.profile, " ".join(layer.new), seconds,
                                  _allocated_mib(path) if path.exists() else 0.0, image_mib))
    return rows


def _allocated_mib(path: Path) -> float:
    return path.stat().st_blocks * SECTOR / (1 << 20)


def full_run(run_: Run) -> None:
    run_.first_image()
    base = run_.fetch_and_decompress()
    image = run_.builds(base)
    run_.flash_and_scale(image)
    run_.memory()


def quick_run(run_: Run) -> None:
    """No cold builds: the layers come from the user's cache when it has them (their cold times
    are the ones recorded when the user's builds made them)."""
    _, base = measure("fetch", "cold, unreported", "fetch", run_.work)
    _seed_layers(run_.work, Path(base))
    _, images = measure("every role image", "cold or seeded, unreported", "images", run_.work)
    run_.roles = role_layer_rows(run_.work.cache, Path(base), images.split(","), _cluster(run_.work))
    run_.decompression()
    _, produced = run_.measure(f"{ROLE} image", "every layer cached (template only)", "images", {"roles": ROLE})
    run_.flash_and_scale(Path(produced))
    run_.memory()


def _seed_layers(work: Workspace, base: Path) -> None:
    """Copy the user's cached layers of every role, with their records: they spare minutes of apt under qemu."""
    cluster = _cluster(work)
    for plan in plan_job(cluster, [(role, None) for role in cluster.roles], cache=work.cache).plans:
        for layer in role_layers(base, plan):
            theirs, ours = layer_path(cache_root(), layer), layer_path(work.cache, layer)
            if theirs.is_file() and not ours.exists():
                log.info("  seeding the bench's cache with the layer %s", theirs)
                ours.parent.mkdir(parents=True, exist_ok=True)
                copy_sparse(theirs, ours)
                if layer_record_path(theirs).is_file():
                    shutil.copyfile(layer_record_path(theirs), layer_record_path(ours))


def write_scale_cluster(work: Workspace, compute_nodes: int) -> Path:
    """The example cluster grown to `compute_nodes` compute nodes node001 … (a /20 holds them all)."""
    data = yaml.safe_load(work.cluster_file.read_text())
    kept = [n for n in data["nodes"] if n["role"] != "compute"]
    for number, node in enumerate(kept, start=2):
        node["ip"] = f"10.0.0.{number}"
    data["network"] = {"subnet": "10.0.0.0/20", "gateway": "10.0.0.1", "dns": ["10.0.0.1"]}
    data["nodes"] = kept + [{"name": f"node{n:03d}", "role": "compute", "ip": f"10.0.{1 + n // 250}.{1 + n % 250}",
                             "model": "pi5-8gb"} for n in range(1, compute_nodes + 1)]
    path = work.root / f"cluster-{compute_nodes}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _write_cluster_file(work: Workspace, base_image: dict[str, str]) -> None:
    """The example cluster with the served stand-in as its base and its secrets in the workspace."""
    demo_cluster_file(repo_root() / "cluster.yaml", base_image, work.cluster_file)
    data = yaml.safe_load(work.cluster_file.read_text())
    data["secrets_dir"] = str(work.root / "secrets")
    work.cluster_file.write_text(yaml.safe_dump(data, sort_keys=False))


def bench(*, quick: bool, out: Path) -> Run:
    """Run the bench, print the tables, write the JSON; the workspace is gone afterwards."""
    if os.geteuid() != 0:
        raise EnvironmentProblem("the bench builds images (loop devices, mounts, chroot): it needs root",
                                 hint="run it as root, e.g. sudo make bench")
    machine = machine_facts()
    archive = publish_standin(cache_root()).image
    with serve_standin(cache_root()) as base_image, staging_dir(WORK_PARENT) as root:
        work = Workspace(root)
        _write_cluster_file(work, base_image)
        run_ = Run(work, archive)
        (quick_run if quick else full_run)(run_)
    document = results_document(run_.results, machine, mode="quick" if quick else "full", goals=run_.goals,
                                roles=run_.roles)
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(format_table(run_.results))
    print()
    print(format_goals(run_.goals))
    if run_.roles:
        print()
        print(format_roles(run_.roles))
    print(f"\n{machine['nproc']} cores ({machine['cpu']}), {machine['memory_mib']} MiB, load "
          f"{machine['load_average']} at the start; results in {out}")
    return run_


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip the cold builds")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the results (default: tests/measured/bench.json, the README's "
                             "source; with --quick, bench-quick.json)")
    parser.add_argument("--report", type=Path, metavar="RESULTS",
                        help="print the README's tables from a results file and exit")
    parser.add_argument("--quiet", "-q", action="store_true", help="only the tables")
    parser.add_argument("--debug", action="store_true", help="show every command run")
    args = parser.parse_args(argv)
    if args.report:
        print(markdown_report(json.loads(args.report.read_text())))
        return 0
    progress.configure(quiet=args.quiet, debug=args.debug)
    try:
        with interruptible():
            bench(quick=args.quick, out=args.out or (Path("bench-quick.json") if args.quick else RESULTS_FILE))
    except ClusterbakeError as exc:
        print(f"clusterbake: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
