"""`slurm.accounting` in the cluster file: off unless set to true; anything else is one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from builder.config import load_cluster
from builder.errors import InputError
from builder.paths import repo_root

ROOT = repo_root()


def write(tmp_path: Path, accounting: object) -> Path:
    data = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    data["slurm"]["accounting"] = accounting
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_reference_lab_keeps_accounting_off() -> None:
    assert load_cluster(ROOT / "cluster.yaml").slurm_accounting is False


@pytest.mark.parametrize("value", [True, False])
def test_true_or_false(tmp_path: Path, value: bool) -> None:
    assert load_cluster(write(tmp_path, value)).slurm_accounting is value


@pytest.mark.parametrize("value", ["yes", "on", 1, None, [True]])
def test_anything_else_names_the_key_and_the_fix(tmp_path: Path, value: object) -> None:
    with pytest.raises(InputError) as err:
        load_cluster(write(tmp_path, value))
    assert str(err.value).startswith("cluster.yaml: slurm.accounting: ")
    assert str(err.value).endswith("is not true or false")
    assert err.value.hint is not None and "accounting: true" in err.value.hint


def test_the_cli_prints_one_line_and_fails(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "builder", "check", "--cluster", write(tmp_path, "yes")],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "clusterbake: error: cluster.yaml: slurm.accounting: 'yes' is not true or false (fix: write accounting: "
        "true (slurmdbd and MariaDB on the controller) or remove the key)"]
