"""What `build`/`images` produce: one image per target named <cluster>-<target>.img, its path printed
last, sound file systems, and never a half-written image at the output path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from builder.paths import repo_root
from tests.built_images.conftest import Lab, cli
from tests.built_images.image_reader import ImageReader, sh

pytestmark = [pytest.mark.slow, pytest.mark.root]


def _attached_over(folder: Path) -> list[str]:
    out = sh("losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE").decode()
    return [line for line in out.splitlines() if str(folder) in line]


def test_images_writes_one_image_per_role_and_prints_each_path(lab: Lab) -> None:
    printed = [line for line in lab.images_stdout.splitlines() if line.strip()]
    assert printed == [str(lab.out / f"rolelab-{role}.img") for role in ("controller", "auxiliary", "compute")]
    assert lab.node_stdout.splitlines()[-1] == str(lab.out / "rolelab-c1.img")
    produced = sorted(p.name for p in lab.out.iterdir() if p.is_file())
    assert produced == ["rolelab-auxiliary.img", "rolelab-c1.img", "rolelab-compute.img", "rolelab-controller.img"]


def test_images_verifies_the_base_image_once_for_all_its_images(lab: Lab) -> None:
    # Each verification may download the checksum list again: once per job, not once per image.
    assert lab.images_log.count("==> fetch base image") == 1, lab.images_log[-3000:]
    assert lab.images_log.count("==> Verified base image") == 1


def test_every_image_has_the_raspios_layout_and_clean_file_systems(lab: Lab) -> None:
    for image in lab.all:
        assert image.table["label"] == "dos"
        assert [p["type"] for p in image.partitions] == ["c", "83"]
        assert image.partitions[0]["start"] == 16384
        image.fsck_root()
        image.fsck_boot()
        cmdline = image.boot_text("cmdline.txt")
        assert cmdline.count("\n") == 1 and cmdline.endswith("\n"), "cmdline.txt must stay one line"
        disk_id = str(image.table["id"]).removeprefix("0x")
        assert f"root=PARTUUID={disk_id}-02" in cmdline


def test_building_twice_into_the_same_directory_replaces_the_image_without_duplicates(lab: Lab,
                                                                                      tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = cli("build", "--cluster", lab.cluster_file, "--role", "compute", "--out", out)
    second = cli("build", "--cluster", lab.cluster_file, "--role", "compute", "--out", out)
    path = out / "rolelab-compute.img"
    assert first.stdout.splitlines()[-1] == second.stdout.splitlines()[-1] == str(path)
    assert [p.name for p in out.iterdir()] == [path.name], "no temporary file may stay behind"
    image = ImageReader(path)
    config = image.boot_text("config.txt")
    assert config.count("dtoverlay=gpio-shutdown") == 1
    assert image.boot_text("cmdline.txt").split().count("cgroup_enable=memory") == 1
    # The progress of every long step is shown (on stderr, so stdout stays the path).
    for long_step in ("Verified base image", "Role base for 'compute'", "Image rolelab-compute.img",
                      "Integrity checks"):
        assert long_step in second.stderr


def test_a_failing_build_leaves_no_file_at_the_output_path_and_nothing_attached(lab: Lab, tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    shutil.copytree(repo_root() / "profiles", profiles)
    with (profiles / "compute.yaml").open("a") as f:
        f.write("\n# a unit no package ships: found only once the image is open\n"
                "role_image: {enable: [nosuch.service]}\n")
    out = tmp_path / "out"
    proc = cli("build", "--cluster", lab.cluster_file, "--role", "compute", "--out", out,
               env={"CLUSTERBAKE_PROFILES": str(profiles)}, check=False)
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("clusterbake: error: profiles/compute.yaml: enable: no unit nosuch.service"), last
    assert "Traceback" not in proc.stderr
    assert not (out / "rolelab-compute.img").exists()
    assert not out.exists() or list(out.iterdir()) == []
    assert _attached_over(tmp_path) == []
    assert _attached_over(lab.out) == []
