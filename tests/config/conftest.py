"""What the cluster-file tests share: the shipped cluster file as data, and writing a changed one."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from builder.paths import repo_root


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def data() -> dict:
    """The shipped cluster.yaml, to change in a test."""
    return yaml.safe_load((repo_root() / "cluster.yaml").read_text())
