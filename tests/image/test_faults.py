"""Faults at every stage of a build leave nothing behind: no loop device, mount, scratch dir or output.

Each case runs a real build (tests/image/fault_driver.py) in a subprocess which raises, or sends
itself SIGINT/SIGTERM, at one stage; the test then judges the host with losetup and
/proc/mounts. After a SIGKILL nothing can unwind in the process itself: the leftovers must be
there, and `clean_leftovers()` must release them.

The chroot here is host-architecture (dash copied from the host), so a command can run inside it
without qemu; what is being tested is the unwinding, which is the same for any architecture.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from builder.image import clean_leftovers
from tests.image.imagetools import ImageFacts, engine_leftovers, sh

pytestmark = pytest.mark.root

DRIVER = Path(__file__).with_name("fault_driver.py")
STAGES = ["root-attached", "root-mounted", "chroot-entered", "chroot-busy", "boot-writeback"]


def drive(image: ImageFacts, tmp_path: Path, stage: str, action: str) -> tuple[subprocess.Popen[str], str, Path]:
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, DRIVER, image.path, out, tmp_path / "apt", stage, action],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=120)
    return proc, stdout + stderr, out


def test_build_without_fault_produces_output(image: ImageFacts, tmp_path: Path) -> None:
    proc, text, out = drive(image, tmp_path, "none", "raise")
    assert proc.returncode == 0, text
    assert [p.name for p in out.iterdir()] == ["node01.img"]
    assert engine_leftovers(proc.pid, tmp_path) == []
    sh("e2fsck", "-fn", f"{out / 'node01.img'}?offset={image.root_offset}")


@pytest.mark.parametrize("action", ["raise", "SIGINT", "SIGTERM"])
@pytest.mark.parametrize("stage", STAGES)
def test_fault_unwinds_everything(image: ImageFacts, tmp_path: Path, stage: str, action: str) -> None:
    proc, text, out = drive(image, tmp_path, stage, action)
    assert f"reached {stage}" in text
    assert proc.returncode == {"raise": 1, "SIGINT": 130, "SIGTERM": 143}.get(action, -1), text
    if action != "raise":
        assert "interrupted by" in text and "Traceback" not in text
    assert engine_leftovers(proc.pid, tmp_path) == []
    assert list(out.iterdir()) == []  # not even the partial file


@pytest.mark.parametrize("stage", ["root-mounted", "chroot-busy", "boot-writeback"])
def test_sigkill_leftovers_are_cleaned_next_time(image: ImageFacts, tmp_path: Path, stage: str) -> None:
    proc, text, out = drive(image, tmp_path, stage, "SIGKILL")
    assert f"reached {stage}" in text
    assert proc.returncode == -9
    left = engine_leftovers(proc.pid, tmp_path)
    assert any(line.startswith("/dev/loop") for line in left), left
    assert [p.name for p in out.iterdir()] == [f".node01.img.partial-{proc.pid}"]

    done = clean_leftovers()

    assert any("detached /dev/loop" in line for line in done), done
    assert any("removed partial output" in line for line in done), done
    if stage == "chroot-busy":
        assert any("killed process" in line for line in done), done
    assert engine_leftovers(proc.pid, tmp_path) == []
    assert list(out.iterdir()) == []
    # Another build on this machine may have died too; of ours, nothing is left to clean.
    assert [line for line in clean_leftovers() if str(tmp_path) in line or f"-{proc.pid}-" in line] == []
