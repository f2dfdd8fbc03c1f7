"""apt's lists: fetched once per day and sources list, kept on the host, old days removed."""

from __future__ import annotations

from pathlib import Path

from builder.provision.packages import lists_name, remove_old_lists

SOURCES = {"/etc/apt/sources.list": "deb http://deb.debian.org/debian trixie main\n", "/var/lib/dpkg/arch": ""}


def test_the_same_sources_on_the_same_day_share_one_name() -> None:
    assert lists_name("arm64", SOURCES, "2026-11-26") == lists_name("arm64", dict(SOURCES), "2026-11-26")
    assert lists_name("arm64", SOURCES, "2026-11-26").startswith("2026-11-26-")


def test_a_new_day_or_other_sources_or_another_architecture_fetch_new_lists() -> None:
    today = lists_name("arm64", SOURCES, "2026-11-26")
    assert lists_name("arm64", SOURCES, "2026-11-27") != today
    edited = {**SOURCES, "/etc/apt/sources.list": SOURCES["/etc/apt/sources.list"] + "deb http://x/ trixie main\n"}
    assert lists_name("arm64", edited, "2026-11-26") != today
    added = {**SOURCES, "/etc/apt/sources.list.d/raspi.sources": "Types: deb\n"}
    assert lists_name("arm64", added, "2026-11-26") != today
    assert lists_name("arm64", {**SOURCES, "/var/lib/dpkg/arch": "armhf\n"}, "2026-11-26") != today
    assert lists_name("armhf", SOURCES, "2026-11-26") != today


def test_lists_of_earlier_days_are_removed_with_their_locks(tmp_path: Path) -> None:
    for name in ("2026-11-23-aaaa", "2026-11-25-bbbb", "2026-11-26-cccc", "staging-123-x"):
        (tmp_path / name / "partial").mkdir(parents=True)
        (tmp_path / f"{name}.lock").touch()
    remove_old_lists(tmp_path, keep_from="2026-11-25")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "2026-11-25-bbbb", "2026-11-25-bbbb.lock", "2026-11-26-cccc", "2026-11-26-cccc.lock",
        "staging-123-x", "staging-123-x.lock"]
