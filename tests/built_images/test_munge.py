"""Issue item 4: one munge key per cluster, baked with the image's munge owner, or installed at first boot.

The first-boot test runs the image's own clusterbake-munge-key.service commands (read from the
unit file in the image) IN THE ARM64 CHROOT of a copy of the produced --no-secrets image, whose
/boot/firmware is a bind-mounted copy of its FAT partition that the engine writes back on exit;
the result is then read with debugfs and mtools.
"""

from __future__ import annotations

import shlex
import stat
import subprocess
from dataclasses import dataclass

import pytest

from builder.image import open_image
from tests.built_images.conftest import Lab
from tests.built_images.image_reader import ImageReader, sh

pytestmark = [pytest.mark.slow, pytest.mark.root]

KEY = "/etc/munge/munge.key"
UNIT = "clusterbake-munge-key.service"


def _secret(lab: Lab) -> bytes:
    return (lab.secrets_dir / "munge.key").read_bytes()


def test_the_key_is_made_once_into_a_private_secrets_dir(lab: Lab) -> None:
    assert stat.S_IMODE(lab.secrets_dir.stat().st_mode) == 0o700
    key = lab.secrets_dir / "munge.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_bytes()) == 1024
    assert sorted(p.name for p in lab.secrets_dir.iterdir()) == ["munge.key"]


def test_every_image_bakes_the_same_key_owned_by_its_own_munge_user(lab: Lab) -> None:
    for image in lab.with_key():
        munge = image.accounts()["munge"]
        info = image.stat(KEY)
        assert info is not None, image.path.name
        assert (info.type, info.mode, info.uid, info.gid) == ("regular", 0o400, munge.uid, munge.gid), \
            f"{image.path.name}: {info} (munge is {munge.uid}:{munge.gid} in its /etc/passwd)"
        assert image.read(KEY) == _secret(lab)
        folder = image.stat("/etc/munge")
        assert folder is not None and folder.uid == munge.uid and folder.mode & 0o077 == 0


def test_a_no_secrets_image_has_no_key_at_all_and_says_where_to_put_one(lab: Lab) -> None:
    image = lab.nosecrets
    assert not image.exists(KEY), "munge's postinst made a random key; it must be gone"
    assert [n for n in image.listdir("/etc/munge") if "key" in n] == []
    assert image.enabled(UNIT) and image.enabled("munge.service")
    assert "munge.key" in image.boot_text("clusterbake.txt")
    assert "munge.key" not in lab.roles["compute"].boot_text("clusterbake.txt")


@dataclass(frozen=True)
class FirstBoot:
    before: subprocess.CompletedProcess[bytes]   # munge's ExecStartPre check, without a key
    after: subprocess.CompletedProcess[bytes]    # the same once the unit ran
    image: ImageReader
    key: bytes


@pytest.fixture(scope="module")
def first_boot(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> FirstBoot:
    work = tmp_path_factory.mktemp("munge-first-boot")
    copy = work / "nosecrets.img"
    subprocess.run(["cp", "--sparse=always", lab.nosecrets.path, copy], check=True)
    reader = ImageReader(copy)
    key = _secret(lab)
    (work / "munge.key").write_bytes(key)
    sh("mcopy", "-i", f"{copy}@@{reader.boot_offset}", work / "munge.key", "::munge.key")

    unit = reader.unit_file(UNIT)
    assert "ConditionPathExists=/boot/firmware/munge.key" in unit.splitlines()
    commands = [shlex.split(line.split("=", 1)[1]) for line in unit.splitlines() if line.startswith("ExecStart=")]
    assert commands, unit
    check = ["/usr/local/lib/clusterbake/check-munge-key"]
    with open_image(copy) as img, img.chroot() as chroot:
        before = chroot.run(check, capture=True, check=False)
        for argv in commands:
            chroot.run(argv)
        after = chroot.run(check, capture=True, check=False)
    return FirstBoot(before=before, after=after, image=reader, key=key)


def test_the_first_boot_unit_moves_the_key_from_the_boot_partition_into_place(first_boot: FirstBoot) -> None:
    image = first_boot.image
    munge = image.accounts()["munge"]
    info = image.stat(KEY)
    assert info is not None and (info.mode, info.uid, info.gid) == (0o400, munge.uid, munge.gid)
    assert image.read(KEY) == first_boot.key
    assert "munge.key" not in image.boot_names(), "the FAT copy (readable by anyone with the card) must be deleted"
    image.fsck_boot()
    image.fsck_root()


def test_munge_refuses_to_start_without_a_key_and_says_why(first_boot: FirstBoot) -> None:
    assert first_boot.before.returncode == 1
    assert b"copy the cluster's munge.key to the boot partition" in first_boot.before.stderr
    assert first_boot.after.returncode == 0
