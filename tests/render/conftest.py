"""Fixtures: the repository's cluster file and a small four-node lab, each with private secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.config import Cluster, load_cluster
from tests.render.render_support import PROFILES, ROOT, SMALL, private


@pytest.fixture
def reference(tmp_path: Path) -> Cluster:
    return private(load_cluster(ROOT / "cluster.yaml", profiles_dir=PROFILES), tmp_path)


@pytest.fixture
def small(tmp_path: Path) -> Cluster:
    path = tmp_path / "minilab.yaml"
    path.write_text(SMALL)
    return private(load_cluster(path, profiles_dir=PROFILES), tmp_path)
