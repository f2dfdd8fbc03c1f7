"""The README's figures are made from recorded runs, and the suite record matches the suite."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.readme_numbers import README, regenerate, section, suite_report
from tests.suite_record import SuiteRecord, collected_nodeids, folder_of


def test_the_generated_sections_match_the_records_they_are_made_from() -> None:
    readme = README.read_text()
    assert section(readme, "suite") is not None and section(readme, "bench") is not None
    assert regenerate(readme) == readme, "README.md is stale: run `python -m tests.readme_numbers --write`"


def test_a_suite_record_is_of_the_whole_suite(pytestconfig: pytest.Config) -> None:
    making = pytestconfig.pluginmanager.get_plugin("clusterbake-suite-record")
    if not isinstance(making, SuiteRecord):
        pytest.skip("no suite record is being made in this session (`make measure` makes one)")
    # `make measure` is writing a new record: it must be of the whole suite, not of a part.
    assert making.collected == Counter(folder_of(nodeid) for nodeid in collected_nodeids()), \
        "a suite record must be made by the README's test command, whole"


def test_a_record_shows_its_commit_machine_and_every_folder() -> None:
    record = {
        "command": "make test", "commit": "abc1234", "dirty": True, "exit_status": 1, "seconds": 3421.4,
        "machine": {"date": "2026-12-04 15:00:00 +0000", "nproc": 2, "cpu": "Some CPU", "memory_mib": 24000,
                    "load_average": [0.5, 0.4, 0.3]},
        "collected": 3, "passed": 1, "failed": 1, "skipped": 1, "error": 0,
        "folders": {"tests/boot": {"collected": 2, "passed": 1, "failed": 1, "skipped": 0, "error": 0, "seconds": 61.0},
                    "tests": {"collected": 1, "passed": 0, "failed": 0, "skipped": 1, "error": 0, "seconds": 0.2}},
    }
    text = suite_report(record, now={"tests/boot": 3, "tests/apply": 4})
    assert "The suite at this commit: **7 tests** collected" in text
    assert "commit abc1234 with uncommitted changes" in text and "2 cores (Some CPU)" in text
    assert "**1 passed, 1 failed, 1 skipped, 0 errors** of 3 collected, in 57:01 (exit status 1)" in text
    # Folders the run had, folders added since, and what each collects now beside what the run did.
    assert "| `tests/boot` | 3 | 2 | 1 | 1 | 0 | 0 | 1:01 |" in text
    assert "| `tests/apply` | 4 | – | – | – | – | – | – |" in text
    assert "| `tests` | 0 | 1 | 0 | 0 | 1 | 0 | 0:00 |" in text


@pytest.mark.parametrize("nodeid, folder", [
    ("tests/boot/test_boot.py::test_x", "tests/boot"),
    ("tests/test_project.py::test_y", "tests"),
    ("tests/built_images/test_slurm.py::test_z[a/b]", "tests/built_images"),
])
def test_each_test_counts_in_its_folder(nodeid: str, folder: str) -> None:
    assert folder_of(nodeid) == folder
