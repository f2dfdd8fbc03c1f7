"""Cache entries: stable keys, and staging leftovers removed without touching the host."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder.cache import recipe_key, remove_stale_staging, staging_dir
from builder.host.procfs import mounts_under


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
