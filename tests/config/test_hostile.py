"""Hostile input (issue 11): each case is refused with one line naming the key, quickly, writing nothing.

The cases (hostile_cases.py) come in the issue's five classes: strings that break the files they
land in, files that are not what they seem, templates that reach for the host, values wrong
together, and settings that used to be checked only when a build needed them. Each runs through
the CLI's `check` command, in this process or (for input that could hang or eat memory on a
broken reader) in a child with bounded time and memory. Round two (issue 23, hostile_round2.py)
adds host files reached through overlays and profiles, networks that cannot be right, roles a
platform cannot run, the environment settings, tracebacks left at load, and templates that fail
or take unbounded output, memory or CPU time. 101 of its 117 cases failed on the code before it
(dfc54ed); the 16 that did not (JOBS=0, a link the walker already refused) guard the same rules.
"""

from __future__ import annotations

import pytest

from tests.config.hostile_cases import CASES as ROUND1
from tests.config.hostile_round2 import ROUND2
from tests.config.hostile_support import Case, Sandbox, judge, run_forked, run_inprocess, run_process, snapshot

IN_PROCESS_BOUND = 5.0
CHILD_BOUND = 20.0
CASES = [*ROUND1, *ROUND2]


def test_there_are_at_least_200_cases() -> None:
    assert len(CASES) >= 200
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_one_line(case: Case, tmp_path, monkeypatch, capsys) -> None:
    box = Sandbox(tmp_path / "box")
    case.make(box)
    box.write()
    before = snapshot(box.root)
    if case.process:
        outcome = run_forked(box, timeout=CHILD_BOUND + 10)
        judge(case, box, outcome, before, CHILD_BOUND)
    else:
        outcome = run_inprocess(box, monkeypatch, capsys)
        judge(case, box, outcome, before, IN_PROCESS_BOUND)


def test_the_valid_sandbox_passes(tmp_path, monkeypatch, capsys) -> None:
    """The cases' starting point is valid: each failure above is the case's own mistake."""
    box = Sandbox(tmp_path / "box")
    outcome = run_inprocess(box, monkeypatch, capsys)
    assert outcome.code == 0, outcome.stderr
    assert outcome.stderr == ""


def test_the_valid_sandbox_passes_in_a_child(tmp_path) -> None:
    outcome = run_process(Sandbox(tmp_path / "box"))
    assert outcome.code == 0, outcome.stderr


REAL_CLI = ["cluster-fifo", "cluster-dev-zero", "cluster-alias-bomb", "overlay-fifo", "profile-lipsum-globals",
            "url-bad-ipv6", "overlays-env-missing"]


@pytest.mark.parametrize("case", [c for c in CASES if c.id in REAL_CLI], ids=lambda c: c.id)
def test_through_python_m_builder(case: Case, tmp_path) -> None:
    """A few of the cases through a real `python -m builder check`, as a user would run it."""
    box = Sandbox(tmp_path / "box")
    case.make(box)
    box.write()
    before = snapshot(box.root)
    judge(case, box, run_process(box, timeout=CHILD_BOUND + 10), before, CHILD_BOUND)


def test_a_cluster_without_slurmd_nodes_is_a_warning(tmp_path, monkeypatch, capsys) -> None:
    box = Sandbox(tmp_path / "box")
    box.data["nodes"] = box.data["nodes"][:2]          # the controller and a time server ...
    profile = box.profiles / "timeserver.yaml"          # ... that computes no more
    profile.write_text(profile.read_text().replace("include: [compute]", ""))
    outcome = run_inprocess(box, monkeypatch, capsys)
    assert outcome.code == 0, outcome.stderr
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1 and "no node runs slurmd" in lines[0], outcome.stderr
