"""A directory output (a release's dist/, the netboot tree) replaces the old one whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.image.output import atomic_directory


def test_the_new_tree_replaces_the_old_whole(tmp_path: Path) -> None:
    final = tmp_path / "dist"
    (final / "old-only").mkdir(parents=True)
    # A dead builder's leftover (pid 2**22 + 1 is above any pid_max): removed before the new one starts.
    stale = tmp_path / f".dist.partial-{2**22 + 1}"
    stale.mkdir()
    with atomic_directory(final) as work:
        (work / "new").write_text("x")
        assert not (final / "new").exists()     # nothing shows before the block ends
    assert sorted(p.name for p in final.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dist"]


def test_a_failed_block_leaves_the_old_tree_and_nothing_beside_it(tmp_path: Path) -> None:
    final = tmp_path / "dist"
    (final / "old").mkdir(parents=True)
    with pytest.raises(RuntimeError), atomic_directory(final) as work:
        (work / "half").write_text("x")
        raise RuntimeError("build failed")
    assert sorted(p.name for p in final.iterdir()) == ["old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dist"]
