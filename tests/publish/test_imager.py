"""os_list.json against Imager's schema rules: the device block, an icon, init_format none."""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from builder.config.model import Node
from builder.publish.imager import ImagerEntry, device_tags, write_os_list
from tests.publish.imager_schema import problems, unmatched_devices


def _entry(name: str, devices: tuple[str, ...]) -> ImagerEntry:
    return ImagerEntry(name=name, description=f"{name} image", url=f"https://example.org/{name}.img.xz",
                       release_date="2026-11-25", extract_size=3 << 30, extract_sha256="ab" * 32,
                       image_download_size=600 << 20, image_download_sha256="cd" * 32, devices=devices)


def _written(tmp_path: Path, *entries: ImagerEntry) -> dict:
    return json.loads(write_os_list(tmp_path / "os_list.json", entries).read_text())


def test_os_list_follows_imagers_schema_and_offers_the_boards_its_images_run_on(tmp_path: Path) -> None:
    doc = _written(tmp_path, _entry("controller", ("pi5-64bit",)), _entry("timeserver", ("pi4-64bit",)),
                   _entry("compute", ("pi5-64bit", "pi4-64bit")))
    assert problems(doc) == []
    assert unmatched_devices(doc) == []
    devices = doc["imager"]["devices"]
    assert [(d["name"], d["tags"]) for d in devices] == [("Raspberry Pi 5", ["pi5-64bit"]),
                                                         ("Raspberry Pi 4", ["pi4-64bit"])]
    assert all(d["icon"].startswith("https://") and d["matching_type"] == "exclusive" for d in devices)
    for entry in doc["os_list"]:
        assert entry["icon"].startswith("https://") and entry["icon"].endswith(".png")
        # Already customised: Imager must offer no customisation that would write user-data or a hostname.
        assert entry["init_format"] == "none"


def test_a_pi5_only_cluster_offers_only_the_pi5(tmp_path: Path) -> None:
    node = Node(name="n1", role="compute", ip=IPv4Address("10.0.0.2"), model="pi5-8gb")
    doc = _written(tmp_path, _entry("compute", device_tags([node])))
    assert [d["tags"] for d in doc["imager"]["devices"]] == [["pi5-64bit"]]
    assert problems(doc) == [] and unmatched_devices(doc) == []


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: d.pop("imager"), "image tag pi5-64bit has no device"),
    (lambda d: d["os_list"][0].pop("icon"), "os_list[0].icon: required"),
    (lambda d: d["os_list"][0].update(init_format="cloud-init"), "os_list[0].init_format: 'cloud-init' is not"),
    (lambda d: d["os_list"][0].update(extract_size="3G"), "os_list[0].extract_size: not a int"),
    (lambda d: d.update(extra=1), "extra: not allowed at the top level"),
    (lambda d: d["imager"]["devices"][0].update(matching_type="all"), "matching_type: 'all' is not inclusive"),
])
def test_the_schema_rules_catch_what_imager_would_reject(tmp_path: Path, change: object, expected: str) -> None:
    doc = _written(tmp_path, _entry("compute", ("pi5-64bit",)))
    change(doc)  # type: ignore[operator]
    found = problems(doc) + (unmatched_devices(doc) if "os_list" in doc else [])
    assert any(expected in p for p in found), found
