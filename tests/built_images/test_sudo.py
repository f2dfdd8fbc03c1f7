"""users[].sudo: key-only accounts can use sudo through an /etc/sudoers.d rule (0440 root:root).

alice is the first user, in group sudo, with a password hash: only the release-like image (which
strips every hash) gives her a NOPASSWD rule. bob has `sudo: nopasswd`: every image has his rule.
The build ran the image's own `visudo -cf` on each rule; here debugfs reads what landed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.built_images.conftest import Lab, cli
from tests.built_images.image_reader import ImageReader
from tests.built_images.test_bad_input import _copy_data

pytestmark = [pytest.mark.slow, pytest.mark.root]

SUDOERS_D = "/etc/sudoers.d"


def _rules(image: ImageReader) -> dict[str, str]:
    return {name: image.text(f"{SUDOERS_D}/{name}") for name in image.listdir(SUDOERS_D)
            if name.endswith("-nopasswd")}


def test_nopasswd_rules_where_there_is_no_password(lab: Lab) -> None:
    for image in lab.all:
        expected = {"010_bob-nopasswd": "bob ALL=(ALL:ALL) NOPASSWD: ALL\n"}
        if image is lab.nosecrets:
            expected["010_alice-nopasswd"] = "alice ALL=(ALL:ALL) NOPASSWD: ALL\n"
        assert _rules(image) == expected, image.path.name
        for name in expected:
            info = image.stat(f"{SUDOERS_D}/{name}")
            assert info is not None and (info.type, info.mode, info.uid, info.gid) == ("regular", 0o440, 0, 0)


def test_sudo_reads_the_rules_directory(lab: Lab) -> None:
    """A rule only counts if /etc/sudoers includes the directory (and sudo skips names with a dot)."""
    image = lab.nosecrets
    sudoers = image.text("/etc/sudoers").splitlines()
    assert any(line.split() in (["@includedir", SUDOERS_D], ["#includedir", SUDOERS_D]) for line in sudoers)
    assert not any("." in name or name.endswith("~") for name in _rules(image))
    assert image.exists("/usr/bin/sudo")


def test_a_rule_visudo_rejects_stops_the_build(lab: Lab, tmp_path: Path) -> None:
    """An overlay shipping a broken sudoers file: the image's visudo refuses it, nothing is written."""
    profiles, overlays = _copy_data(tmp_path)
    broken = overlays / "base" / "etc" / "sudoers.d"
    broken.mkdir(parents=True)
    (broken / "020_broken").write_text("bob ALL=(ALL NOPASSWD ALL\n")
    out = tmp_path / "out"
    proc = cli("build", "--cluster", lab.cluster_file, "--node", "c1", "--out", out,
               env={"CLUSTERBAKE_PROFILES": str(profiles), "CLUSTERBAKE_OVERLAYS": str(overlays)}, check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("clusterbake: error: ")]
    assert proc.returncode == 1 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "overlays/base/etc/sudoers.d/020_broken: visudo rejects /etc/sudoers.d/020_broken" in errors[0]
    assert not list(out.glob("*.img*"))
