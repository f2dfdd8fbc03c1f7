"""The CLUSTERBAKE_* settings (issue 23): valid values read as before, defaults when unset or empty."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import EnvironmentProblem
from builder.settings import DEFAULT_LAYER_CACHE_GIB, DEFAULT_MIRROR, read_settings


def test_unset_and_empty_are_the_defaults() -> None:
    for environ in ({}, {"CLUSTERBAKE_JOBS": "", "CLUSTERBAKE_DEBIAN_MIRROR": "", "CLUSTERBAKE_CACHE": ""}):
        got = read_settings(environ)
        assert (got.cache, got.profiles, got.overlays, got.jobs) == (None, None, None, None)
        assert (got.layer_cache_gib, got.debian_mirror) == (DEFAULT_LAYER_CACHE_GIB, DEFAULT_MIRROR)


def test_valid_values(tmp_path: Path) -> None:
    got = read_settings({"CLUSTERBAKE_JOBS": "2", "CLUSTERBAKE_LAYER_CACHE_GIB": "0",
                         "CLUSTERBAKE_DEBIAN_MIRROR": "https://snapshot.debian.org/archive/debian/20251201T000000Z/",
                         "CLUSTERBAKE_CACHE": str(tmp_path / "not-yet"), "CLUSTERBAKE_PROFILES": str(tmp_path)})
    assert (got.jobs, got.layer_cache_gib) == (2, 0)
    assert got.debian_mirror == "https://snapshot.debian.org/archive/debian/20251201T000000Z"
    assert got.cache == tmp_path / "not-yet" and got.profiles == tmp_path


def test_the_settings_object_is_frozen() -> None:
    got = read_settings({})
    with pytest.raises(AttributeError):
        got.jobs = 3  # type: ignore[misc]


@pytest.mark.parametrize("value", ["\u0663", "\u00b2", "9" * 5000, "0"])
def test_jobs_take_ascii_digits_within_bounds(value: str) -> None:
    with pytest.raises(EnvironmentProblem) as caught:
        read_settings({"CLUSTERBAKE_JOBS": value})
    assert caught.value.one_line().startswith("CLUSTERBAKE_JOBS=")
    assert len(caught.value.one_line()) < 300
