"""Cache entries: stable keys, and staging leftovers removed without touching the host."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder.cache import STAGING_PREFIX, cache_entry, recipe_key, remove_stale_staging, staging_dir
from builder.process.procfs import mounts_under
from builder.process.record import STATE_DIR, forget, held_by_live_builders, remember


def test_recipe_key_ignores_order_but_not_content() -> None:
    assert recipe_key({"a": 1, "b": [1, 2]}) == recipe_key({"b": [1, 2], "a": 1})
    assert recipe_key({"a": 1, "b": [1, 2]}) != recipe_key({"a": 1, "b": [2, 1]})


def test_leftovers_of_a_dead_builder_go_and_a_live_ones_stay(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_dir = tmp_path / f"staging-{dead.stdout.strip()}-x"
    live_dir = tmp_path / f"staging-{os.getpid()}-y"
    for directory in (dead_dir, live_dir):
        (directory / "root").mkdir(parents=True)
    remove_stale_staging(tmp_path)
    assert not dead_dir.exists()
    assert live_dir.exists()


@pytest.mark.root
def test_staging_unmounts_before_deleting(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount")
    # A bind mount left inside a staging dir (as a killed debootstrap leaves /proc or
    # /dev) must be unmounted, never recursed into: the host's files must survive.
    host = tmp_path / "host"
    host.mkdir()
    (host / "precious").write_text("keep me")
    with staging_dir(tmp_path / "cache") as work:
        target = work / "root" / "dev"
        target.mkdir(parents=True)
        subprocess.run(["mount", "--bind", host, target], check=True)
        try:
            assert mounts_under(work) == [target]
        except BaseException:
            subprocess.run(["umount", target], check=False)
            raise
    assert not work.exists()
    assert (host / "precious").read_text() == "keep me"
    assert mounts_under(tmp_path) == []


@pytest.mark.root
def test_a_dead_builders_recorded_staging_dir_is_released(tmp_path: Path) -> None:
    """The record marks a staging directory: a dead builder's is unmounted and removed, even when its
    name says nothing of its builder; a live builder's stays, whatever its name says."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    host = tmp_path / "host"
    host.mkdir()
    (host / "precious").write_text("keep me")
    parent = tmp_path / "cache"
    orphan = parent / "staging-from-a-killed-build"
    (orphan / "root/proc").mkdir(parents=True)
    subprocess.run(["mount", "--bind", host, orphan / "root/proc"], check=True)
    record = STATE_DIR / f"{dead.stdout.strip()}.json"
    STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    record.write_text(json.dumps({"pid": int(dead.stdout), "start": 1,
                                  "entries": [{"kind": "dir", "value": str(orphan)}]}))
    try:
        with staging_dir(parent) as ours:
            assert str(ours) in held_by_live_builders("dir")
            disguised = parent / f"staging-{dead.stdout.strip()}-disguised"   # a dead pid in the name
            with contextlib.ExitStack() as stack:
                stack.callback(forget, "dir", str(disguised))
                remember("dir", str(disguised))
                disguised.mkdir()
                remove_stale_staging(parent)
                assert disguised.is_dir()
            assert not orphan.exists() and not record.exists()
            assert ours.is_dir()
        assert not ours.exists() and str(ours) not in held_by_live_builders("dir")
    finally:
        subprocess.run(["umount", orphan / "root/proc"], check=False, capture_output=True)
        record.unlink(missing_ok=True)
    assert (host / "precious").read_text() == "keep me"
    assert mounts_under(tmp_path) == []


def test_a_cache_entry_is_made_once_in_staging_and_only_a_finished_one_is_installed(tmp_path: Path) -> None:
    entry = tmp_path / "entries" / "thing.tar"
    made: list[Path] = []

    def make(work: Path) -> None:
        made.append(work)
        (work / entry.name).write_text("done")

    def fail(work: Path) -> None:
        (work / entry.name).write_text("half")
        raise RuntimeError("interrupted halfway")

    with pytest.raises(RuntimeError):
        cache_entry(entry, fail)
    assert not entry.exists() and not list(entry.parent.glob(f"{STAGING_PREFIX}*"))
    assert cache_entry(entry, make) is True and entry.read_text() == "done"
    assert made[0].parent == entry.parent and not made[0].exists()   # staged beside it, then removed
    assert cache_entry(entry, make) is False and len(made) == 1
    assert (entry.parent / "thing.tar.lock").exists()
