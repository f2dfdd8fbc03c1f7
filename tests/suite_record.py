"""The record of one whole run of the suite: what the README's test figures are made from.

`make measure` runs the README's test command with CLUSTERBAKE_SUITE_RECORD set; at the end of
the session this plugin writes, to that path, the commit and machine it ran on, how many tests
were collected, passed, failed and skipped, and the same with the time spent per folder of
`tests/`. `python -m tests.readme_numbers --write` then puts the figures in the README, and
`tests/test_readme_numbers.py` fails when the README, the record and the collected suite disagree.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import pytest

from builder.paths import repo_root
from tests.bench.speed import machine_facts

RECORD_SETTING = "CLUSTERBAKE_SUITE_RECORD"
OUTCOMES = ("passed", "failed", "skipped", "error")


def folder_of(nodeid: str) -> str:
    """`tests/boot/test_boot.py::test_x` → `tests/boot`; a module at the top → `tests`."""
    path = nodeid.split("::", 1)[0]
    parts = path.split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else parts[0]


def _dirty() -> bool:
    status = subprocess.run(["git", "-C", str(repo_root()), "status", "--porcelain", "--untracked-files=no"],
                            capture_output=True, text=True, check=False)
    return bool(status.stdout.strip())


class SuiteRecord:
    """A pytest plugin: counts every test's outcome and time by folder, writes them at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.started = time.monotonic()
        self.machine = machine_facts()
        self.collected: Counter[str] = Counter()
        self.outcomes: dict[str, Counter[str]] = defaultdict(Counter)
        self.seconds: Counter[str] = Counter()

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.collected.update(folder_of(item.nodeid) for item in session.items)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        folder = folder_of(report.nodeid)
        self.seconds[folder] += report.duration
        if report.when == "call":
            self.outcomes[folder]["skipped" if report.skipped else report.outcome] += 1
        elif report.failed:         # a setup or teardown failure: an error, as pytest counts it
            self.outcomes[folder]["error"] += 1
        elif report.when == "setup" and report.skipped:
            self.outcomes[folder]["skipped"] += 1

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        folders = {
            folder: {"collected": self.collected[folder],
                     **{outcome: self.outcomes[folder][outcome] for outcome in OUTCOMES},
                     "seconds": round(self.seconds[folder], 1)}
            for folder in sorted(self.collected)
        }
        record = {
            "command": os.environ.get("CLUSTERBAKE_SUITE_COMMAND", "make test"),
            "commit": self.machine["commit"],
            "dirty": _dirty(),
            "machine": self.machine,
            "exit_status": int(exitstatus),
            "seconds": round(time.monotonic() - self.started, 1),
            "collected": sum(self.collected.values()),
            **{outcome: sum(f[outcome] for f in folders.values()) for outcome in OUTCOMES},
            "folders": folders,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(record, indent=2) + "\n")


def register(config: pytest.Config) -> None:
    """Record this session when CLUSTERBAKE_SUITE_RECORD names a file (not in xdist workers: none here)."""
    target = os.environ.get(RECORD_SETTING)
    if target and not config.option.collectonly:
        config.pluginmanager.register(SuiteRecord(Path(target).resolve()), "clusterbake-suite-record")


@functools.cache
def collected_nodeids() -> tuple[str, ...]:
    """What the README's test command collects (`make test` runs `pytest` with no path: the same)."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                          cwd=repo_root(), capture_output=True, text=True, check=False,
                          env={k: v for k, v in os.environ.items() if k != RECORD_SETTING})
    assert proc.returncode == 0, f"pytest --collect-only: exit {proc.returncode}\n{proc.stdout[-3000:]}{proc.stderr}"
    return tuple(line for line in proc.stdout.splitlines() if "::" in line)


def uncollected(root: Path, nodeids: Sequence[str]) -> list[str]:
    """Every test module under root/tests, and every folder holding one, that yields no collected test."""
    modules = {path.relative_to(root).as_posix() for path in (root / "tests").rglob("test_*.py")}
    found = {nodeid.split("::", 1)[0] for nodeid in nodeids}
    missing = sorted(f"{module}: no test collected" for module in modules - found)
    folders = {module.rsplit("/", 1)[0] for module in modules}
    missing += sorted(f"{folder}/: no test collected from the folder"
                      for folder in folders if not any(f.startswith(folder + "/") for f in found))
    return missing
