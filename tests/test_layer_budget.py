"""The layer cache keeps to its budget: least recently used layers go first; the current build's,
and one another builder is making, never."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builder.build import plan_job
from builder.config.load import load_cluster
from builder.container.template import ensure_role_root, role_root_path
from builder.layer_budget import prune
from builder.layers import Layer, ensure_role_base, layer_path, role_layers

ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20


def layer(folder: Path, name: str, hours_ago: float, mib: int = 1) -> Path:
    """A stand-in layer: `mib` of real blocks, last used `hours_ago`, with its record and lock file."""
    folder.mkdir(parents=True, exist_ok=True)
    image = folder / f"{name}.img"
    image.write_bytes(os.urandom(mib * MIB))
    image.with_suffix(".json").write_text("{}")
    image.with_name(f"{image.name}.lock").touch()
    when = time.time() - hours_ago * 3600
    os.utime(image, (when, when))
    return image


def on_disk(folder: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in folder.glob("*.img"))


def test_least_recently_used_layers_go_until_the_rest_fit(tmp_path: Path) -> None:
    images = [layer(tmp_path, name, hours) for name, hours in (("a", 40), ("b", 30), ("c", 20), ("d", 10))]
    result = prune(tmp_path, budget=int(2.5 * MIB), used_since=time.time())
    assert [p.name for p in result.removed] == ["a.img", "b.img"]
    assert [p.exists() for p in images] == [False, False, True, True]
    assert not (tmp_path / "a.json").exists() and (tmp_path / "c.json").exists()
    assert (tmp_path / "a.img.lock").exists()   # a waiter may hold it: lock files stay
    assert on_disk(tmp_path) <= 2.5 * MIB and result.kept == on_disk(tmp_path)
    assert result.freed >= 2 * MIB


def test_within_budget_nothing_goes(tmp_path: Path) -> None:
    images = [layer(tmp_path, name, hours) for name, hours in (("a", 40), ("b", 30))]
    assert prune(tmp_path, budget=3 * MIB, used_since=time.time()).removed == ()
    assert all(p.exists() for p in images)


def test_a_layer_used_since_the_build_started_stays_over_budget(tmp_path: Path) -> None:
    old = layer(tmp_path, "old", 50)
    used = layer(tmp_path, "used", 0.001)
    result = prune(tmp_path, budget=0, used_since=time.time() - 60)
    assert result.removed == (old,)
    assert used.exists()


def test_a_layer_another_builder_locks_stays(tmp_path: Path) -> None:
    locked, free = layer(tmp_path, "locked", 50), layer(tmp_path, "free", 40)
    holder = subprocess.Popen(["flock", str(locked.with_name("locked.img.lock")), "sleep", "60"])
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["flock", "-n", str(locked.with_name("locked.img.lock")), "true"]).returncode == 0:
            assert time.monotonic() < deadline, "flock never took the lock"
            time.sleep(0.05)
        result = prune(tmp_path, budget=0, used_since=time.time())
    finally:
        holder.kill()
        holder.wait()
    assert result.removed == (free,)
    assert locked.exists()


def test_taking_a_role_base_marks_its_stack_used_and_trims_the_rest(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLUSTERBAKE_LAYER_CACHE_GIB", "0")
    job = plan_job(load_cluster(ROOT / "cluster.yaml"), [("compute", None)], secrets=False, cache=tmp_path)
    [plan] = job.plans
    base = tmp_path / "base.img"
    stack = [layer_path(tmp_path, each) for each in role_layers(base, plan)]
    for path in stack:
        layer(path.parent, path.stem, 100)
    stale = layer(stack[0].parent, "stale", 50)
    assert job.layer_budget == 0
    assert ensure_role_base(base, plan, tmp_path, budget=job.layer_budget) == stack[-1]
    assert not stale.exists()
    assert all(p.exists() and time.time() - p.stat().st_mtime < 60 for p in stack)


def test_a_container_role_root_is_a_layer_under_the_same_budget(tmp_path: Path) -> None:
    base = tmp_path / "lxc" / "base-0123.tar"
    root = role_root_path(base, ("sudo", "openssh-server"), tmp_path)
    assert root.parent == layer_path(tmp_path, Layer("compute", (), (), 0, "0123")).parent   # among the layers
    root.parent.mkdir()
    root.write_bytes(os.urandom(MIB))
    when = time.time() - 100 * 3600
    os.utime(root, (when, when))
    stale_image, stale_root = layer(root.parent, "stale", 50), root.with_name("lxc-stale.tar")
    stale_root.write_bytes(os.urandom(MIB))
    os.utime(stale_root, (when, when))
    assert ensure_role_root(base, ("openssh-server", "sudo"), tmp_path, budget=0) == root   # cached: nothing built
    assert not stale_image.exists() and not stale_root.exists()
    assert root.exists() and time.time() - root.stat().st_mtime < 60


@pytest.mark.parametrize("variable", ["CLUSTERBAKE_LAYER_CACHE_GIB", "CLUSTERBAKE_JOBS"])
def test_a_bad_setting_is_one_line_before_anything_is_built(tmp_path: Path, variable: str) -> None:
    env = {**os.environ, variable: "lots", "CLUSTERBAKE_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "builder", "build", "--role", "compute", "--no-secrets",
                           "--offline", "--cluster", str(ROOT / "cluster.yaml"), "--out", str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    [line] = [each for each in proc.stderr.splitlines() if each.startswith("clusterbake: error")]
    assert proc.stderr.strip().endswith(line) and "Traceback" not in proc.stderr
    assert line.startswith(f"clusterbake: error: {variable}='lots'") and "fix:" in line, line
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache" / "role-bases").exists()
