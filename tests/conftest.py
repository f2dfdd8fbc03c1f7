"""Fixtures shared by every stage's tests, and a guard against leaked loop devices and mounts.

The stand-in base image is slow to make (debootstrap under qemu-user, ~10 minutes) so it is
built once into the cache (`builder.paths.cache_root()`, keyed by its recipe) and reused by
every session afterwards.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.demo.download_site import serve_standin
from builder.demo.standin import build_standin
from builder.paths import cache_root
from tests.reports import print_reports
from tests.suite_record import register as register_suite_record


def pytest_configure(config: pytest.Config) -> None:
    register_suite_record(config)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    print_reports(terminalreporter)


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: the stand-in image is built with debootstrap and keeps file ownership")


@pytest.fixture(scope="session")
def standin_image() -> Path:
    """Path of the cached raw stand-in image (Raspberry-Pi-OS-Lite-like, arm64).

    The file is shared by every test and every later session: NEVER modify it in place.
    Copy it first (the `standin_copy` fixture does that) and work on the copy.
    """
    _need_root()
    return build_standin(cache_root())


@pytest.fixture
def standin_copy(standin_image: Path, tmp_path: Path) -> Path:
    """A private, sparse copy of the stand-in image in this test's tmp_path, free to modify."""
    copy = tmp_path / "base.img"
    subprocess.run(["cp", "--sparse=always", standin_image, copy], check=True)
    return copy


@pytest.fixture(scope="session")
def served_base() -> Iterator[dict[str, str]]:
    """The `base_image` mapping of a cluster file pointing at the stand-in served on 127.0.0.1.

    Keys: url, sha256_url, signature_url, signing_key, fingerprint; `resolve_base_image(folder, **served_base)`
    works. The server lives for the whole session.
    """
    _need_root()
    with serve_standin(cache_root()) as base_image:
        yield base_image


# --- leak guard -------------------------------------------------------------------------

def _loop_devices() -> dict[str, str]:
    """Attached loop devices and their backing files, read from sysfs (no subprocess)."""
    attached = {}
    for device in Path("/sys/block").glob("loop*"):
        try:
            attached[f"/dev/{device.name}"] = (device / "loop" / "backing_file").read_text().strip()
        except OSError:
            continue
    return attached


def _mounts() -> set[tuple[str, str]]:
    with open("/proc/self/mounts") as mounts:
        return {(fields[0], fields[1]) for fields in (line.split() for line in mounts)}


@pytest.fixture(scope="session", autouse=True)
def no_leaked_loops_or_mounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail the session loudly if a test left a loop device or a mount behind.

    Other sessions (or builds) may run on this machine at the same time, so only what
    points into this session's temporary directories, or into a cache staging directory
    of this process, counts as ours and fails; anything else new is only warned about.
    """
    loops_before, mounts_before = _loop_devices(), _mounts()
    yield
    ours = (str(tmp_path_factory.getbasetemp().resolve()), f"/staging-{os.getpid()}-")
    loops = {dev: back for dev, back in _loop_devices().items() if loops_before.get(dev) != back}
    mounts = _mounts() - mounts_before

    def is_ours(*paths: str) -> bool:
        return any(mark in path for path in paths for mark in ours)

    leaked = [f"loop device {dev} -> {back}" for dev, back in loops.items() if is_ours(back)]
    leaked += [f"mount {point} ({source})" for source, point in mounts
               if is_ours(point, source, loops.get(source, ""))]
    if leaked:
        pytest.fail("tests leaked: " + "; ".join(sorted(leaked)) + " (release them: umount / losetup -d)",
                    pytrace=False)
    others = [f"loop {dev} -> {back}" for dev, back in loops.items() if not is_ours(back)]
    others += [f"mount {point}" for _, point in mounts if not is_ours(point)]
    if others:
        warnings.warn("new loop devices or mounts appeared during the session, maybe from another "
                      "process: " + "; ".join(sorted(others)), stacklevel=1)
