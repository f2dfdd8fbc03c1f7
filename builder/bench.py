"""`make bench`: how long each pipeline step takes, and how much memory, with its cache cold and warm.

The bench builds the example cluster's `compute` image from the stand-in base served on 127.0.0.1
(the user's cached stand-in, published and served, never rebuilt), in a private cache under
/var/tmp so the user's cache is neither used nor disturbed. Steps, in the order a user meets them:

  fetch      download + SHA-256 + signature + decompress (cold), cache hit (warm)
  role base  copy + grow + apt install under qemu: cold with an empty apt archive (downloads
             from deb.debian.org), cold with a warm one (the usual case), and warm (cache hit)
  image      the final image from a warm role base: what every template change costs

Each step runs in a fresh interpreter (multiprocessing "spawn"): ru_maxrss only ever grows within
a process, so a step's peak RSS is its own only in a process of its own. RUSAGE_SELF is the
builder; RUSAGE_CHILDREN is the largest command it waited for (xz, qemu running dpkg, mkfs, ...).

`--quick` measures only the warm rows; the cold steps still run once to fill the private cache
(the role base is copied from the user's cache when it holds the same one), unreported.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import yaml

from builder import progress
from builder.acquire import fetch_base
from builder.build import (
    BuildRequest,
    build_image,
    copy_sparse,
    ensure_role_base,
    plan_build,
    profiles_dir,
    role_base_key,
)
from builder.cache import staging_dir
from builder.command import run
from builder.config import load_cluster
from builder.demo.cluster import demo_cluster_file
from builder.demo.publish import serve_standin
from builder.errors import ClusterbakeError, CommandFailed, EnvironmentProblem, Interrupted
from builder.paths import cache_root, repo_root
from builder.progress import step
from builder.signals import interruptible

log = logging.getLogger("clusterbake.bench")

WORK_PARENT = Path("/var/tmp/clusterbake-bench")
ROLE = "compute"
MIB_IN_KIB = 1024


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


def format_table(results: Sequence[Measurement]) -> str:
    """The results as an aligned text table, one row a step."""
    rows = [COLUMNS] + [
        (m.step, m.cache, _seconds(m.seconds), _seconds(m.cpu_seconds), _mib(m.rss_self_kib), _mib(m.rss_children_kib))
        for m in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = []
    for n, row in enumerate(rows):
        # Text left-aligned, numbers right-aligned, as a reader compares them.
        cells = [cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def results_document(results: Sequence[Measurement], machine: dict[str, object], *, mode: str) -> dict[str, object]:
    """What bench-results.json holds: the machine, how the bench ran, and every measurement."""
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
    }


def _seconds(value: float) -> str:
    # Cache hits take milliseconds: a fixed one decimal would print them all as 0.0.
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _mib(kib: int) -> str:
    return f"{kib / MIB_IN_KIB:.0f} MiB"


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


# --- one step, in a process of its own -----------------------------------------------------------

def _prepare_fetch(work: Workspace) -> Callable[[], object]:
    cluster = _request(work).cluster
    return lambda: fetch_base(cluster.base_image, cluster_dir=cluster.source.parent, cache=work.cache)


def _prepare_role_base(work: Workspace) -> Callable[[], object]:
    req = _request(work)
    base = fetch_base(req.cluster.base_image, cluster_dir=req.cluster.source.parent, cache=work.cache)
    plan = plan_build(req)
    return lambda: ensure_role_base(base, plan, work.cache)


def _prepare_image(work: Workspace) -> Callable[[], object]:
    req = _request(work)
    return lambda: build_image(req)


STEPS: dict[str, Callable[[Workspace], Callable[[], object]]] = {
    "fetch": _prepare_fetch,
    "role base": _prepare_role_base,
    "image": _prepare_image,
}


def _request(work: Workspace) -> BuildRequest:
    cluster = load_cluster(work.cluster_file, profiles_dir=profiles_dir())
    return BuildRequest(cluster=cluster, role=ROLE, out_dir=work.out, cache=work.cache)


def _step_process(name: str, work: Workspace, verbosity: tuple[bool, bool], results: Connection) -> None:
    """Entry point of a step's process: prepare (untimed), run the step (timed), report its usage."""
    quiet, debug = verbosity
    progress.configure(quiet=quiet, debug=debug)
    try:
        with interruptible():
            timed = STEPS[name](work)
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


def run_step(name: str, work: Workspace) -> dict[str, object]:
    """Run one step in a fresh interpreter; return what it reported (re-raising its failure here)."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    verbosity = (not log.isEnabledFor(logging.INFO), log.isEnabledFor(logging.DEBUG))
    proc = context.Process(target=_step_process, args=(name, work, verbosity, sender), name=f"bench {name}")
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


def measure(name: str, cache: str, work: Workspace) -> tuple[Measurement, str]:
    """Run a step and label its numbers; also return the path the step produced."""
    with step(f"bench: {name} ({cache})"):
        report = run_step(name, work)
    measurement = Measurement(
        step=name, cache=cache,
        seconds=float(str(report["seconds"])), cpu_seconds=float(str(report["cpu_seconds"])),
        rss_self_kib=int(str(report["rss_self_kib"])), rss_children_kib=int(str(report["rss_children_kib"])),
    )
    return measurement, str(report["produced"])


# --- the runs ------------------------------------------------------------------------------------

def full_run(work: Workspace) -> list[Measurement]:
    """Every step cold, then warm, in the order a first build meets them."""
    results = []
    for name, cache in (("fetch", "cold"), ("fetch", "warm"), ("role base", "cold, apt archive empty")):
        results.append(measure(name, cache, work)[0])
    # Again from scratch, now that apt's archive holds the packages: the usual cold case.
    for built in (work.cache / "role-bases").glob("*.img"):
        built.unlink()
    for name, cache in (("role base", "cold, apt archive warm"), ("role base", "warm"), ("image", "warm role base")):
        results.append(measure(name, cache, work)[0])
    return results


def quick_run(work: Workspace) -> list[Measurement]:
    """The warm rows only; the cold steps fill the private cache first, unmeasured."""
    _, base = measure("fetch", "cold, unreported", work)
    _seed_role_base(work, Path(base))
    measure("role base", "cold or seeded, unreported", work)
    return [measure(name, cache, work)[0]
            for name, cache in (("fetch", "warm"), ("role base", "warm"), ("image", "warm role base"))]


def _seed_role_base(work: Workspace, base: Path) -> None:
    """Copy the user's cached role base for the same inputs, if any: it spares minutes of apt under qemu."""
    name = f"{role_base_key(base, plan_build(_request(work)))}.img"
    theirs, ours = cache_root() / "role-bases" / name, work.cache / "role-bases" / name
    if theirs.is_file() and not ours.exists():
        log.info("  seeding the bench's cache with the role base %s", theirs)
        ours.parent.mkdir(parents=True, exist_ok=True)
        copy_sparse(theirs, ours)


def _write_cluster_file(work: Workspace, base_image: dict[str, str]) -> None:
    """The example cluster with the served stand-in as its base and its secrets in the workspace."""
    demo_cluster_file(repo_root() / "cluster.yaml", base_image, work.cluster_file)
    data = yaml.safe_load(work.cluster_file.read_text())
    data["secrets_dir"] = str(work.root / "secrets")
    work.cluster_file.write_text(yaml.safe_dump(data, sort_keys=False))


def bench(*, quick: bool, out: Path) -> list[Measurement]:
    """Run the bench, print the table, write the JSON; the workspace is gone afterwards."""
    if os.geteuid() != 0:
        raise EnvironmentProblem("the bench builds images (loop devices, mounts, chroot): it needs root",
                                 hint="run it as root, e.g. sudo make bench")
    machine = machine_facts()
    with serve_standin(cache_root()) as base_image, staging_dir(WORK_PARENT) as root:
        work = Workspace(root)
        _write_cluster_file(work, base_image)
        results = quick_run(work) if quick else full_run(work)
    document = results_document(results, machine, mode="quick" if quick else "full")
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(format_table(results))
    print(f"\n{machine['nproc']} cores ({machine['cpu']}), {machine['memory_mib']} MiB, load "
          f"{machine['load_average']} at the start; results in {out}")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m builder.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="measure only the warm steps")
    parser.add_argument("--out", type=Path, default=Path("bench-results.json"),
                        help="where to write the results (default: bench-results.json)")
    parser.add_argument("--quiet", "-q", action="store_true", help="only the table")
    parser.add_argument("--debug", action="store_true", help="show every command run")
    args = parser.parse_args(argv)
    progress.configure(quiet=args.quiet, debug=args.debug)
    try:
        with interruptible():
            bench(quick=args.quick, out=args.out)
    except ClusterbakeError as exc:
        print(f"clusterbake: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
