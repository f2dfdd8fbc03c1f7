"""The conventions a Python tool's users expect: a `clusterbake` command and CI that runs the README's tests."""

import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import yaml

from builder.cli import main
from tests.suite_record import collected_nodeids, uncollected

ROOT = Path(__file__).resolve().parent.parent


def test_the_clusterbake_command_is_python_m_builder() -> None:
    (script,) = entry_points(group="console_scripts", name="clusterbake")
    assert script.load() is main
    # The installed script itself (`make deps` installs the project into the venv, editable).
    command = Path(sys.executable).parent / "clusterbake"
    assert command.exists(), f"{command}: missing; `make deps` installs the project into the venv (pip install -e .)"
    installed = subprocess.run([command, "--help"], capture_output=True, text=True, check=True)
    module = subprocess.run([sys.executable, "-m", "builder", "--help"], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    assert installed.stdout == module.stdout
    assert "check" in installed.stdout and "release" in installed.stdout


def _readme_test_command() -> str:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", quick_start, re.S)
    assert block, "README's quick start has no sh block"
    commands = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    (test_command,) = [c for c in commands if c.startswith("make test")]
    return test_command


def test_ci_runs_the_readme_test_command_on_every_push_and_pull_request() -> None:
    workflow = yaml.safe_load((ROOT / ".github/workflows/test.yml").read_text())
    triggers = workflow[True]   # YAML 1.1 reads the key `on` as a boolean
    assert set(triggers) == {"push", "pull_request"}
    assert triggers["push"] is None and triggers["pull_request"] is None, "no branch filter: every push"
    (job,) = workflow["jobs"].values()
    runs = [step["run"].strip() for step in job["steps"] if "run" in step]
    # The README says "as root"; the runner's user has passwordless sudo.
    assert runs == [f"sudo {_readme_test_command()}"]


def test_make_test_runs_pytest_as_configured_with_no_path_of_its_own() -> None:
    # So that what `pytest --collect-only` finds below is what `make test` (and CI) runs.
    recipe = (ROOT / "Makefile").read_text().split("\ntest: deps\n", 1)[1].split("\n\n", 1)[0]
    assert recipe.strip() == "$(PY) -m pytest $(ARGS)"
    assert _readme_test_command() == "make test"


def test_every_test_module_and_folder_under_tests_is_collected() -> None:
    # pytest's default norecursedirs once hid tests/build (89 tests) from every run.
    assert not uncollected(ROOT, collected_nodeids()), uncollected(ROOT, collected_nodeids())


def test_a_folder_the_runner_skips_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "tests" / "build"
    folder.mkdir(parents=True)
    (folder / "test_outputs.py").write_text("def test_x(): pass\n")
    (tmp_path / "tests" / "test_top.py").write_text("def test_y(): pass\n")
    assert uncollected(tmp_path, ["tests/test_top.py::test_y"]) == [
        "tests/build/test_outputs.py: no test collected", "tests/build/: no test collected from the folder"]
    assert uncollected(tmp_path, ["tests/test_top.py::test_y", "tests/build/test_outputs.py::test_x"]) == []
