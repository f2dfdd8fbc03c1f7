"""Issue item 6: cluster users with fixed ids in every image, their keys, sshd's policy, no host keys."""

from __future__ import annotations

import pytest

from tests.built_images.conftest import ALICE_HASH, ALICE_KEY, BOB_KEYS, Lab
from tests.built_images.image_reader import ImageReader

pytestmark = [pytest.mark.slow, pytest.mark.root]


def test_users_and_groups_have_the_same_ids_in_every_image(lab: Lab) -> None:
    for image in lab.all:
        accounts, groups = image.accounts(), image.groups()
        assert (accounts["alice"].uid, accounts["alice"].gid) == (2001, 2001), image.path.name
        assert (accounts["bob"].uid, accounts["bob"].gid) == (2002, 2100)
        assert accounts["alice"].home == "/home/alice" and accounts["alice"].shell == "/bin/bash"
        assert groups["alice"][0] == 2001 and groups["bob"][0] == 2100
        assert "alice" in groups["sudo"][1] and "bob" not in groups["sudo"][1]
        # alice joins bob's group, though bob comes after her in the cluster file
        assert "alice" in groups["bob"][1]


def test_the_slurm_user_has_the_same_ids_in_every_image(lab: Lab) -> None:
    """slurmd rejects RPCs from a SlurmUser whose uid differs from its own "slurm" (Debian fixes it at 64030).

    munge's own uid may differ per image (gpsd's user comes first on the time server): munged
    only needs to own its local key, which test_munge checks against each image's passwd.
    """
    ids = {image.path.name: (image.accounts()["slurm"].uid, image.accounts()["slurm"].gid) for image in lab.all}
    assert set(ids.values()) == {(64030, 64030)}, ids


def _assert_keys(image: ImageReader, user: str, keys: list[str]) -> None:
    account = image.accounts()[user]
    folder = image.stat(f"/home/{user}/.ssh")
    assert folder is not None and (folder.type, folder.mode, folder.uid, folder.gid) == \
        ("directory", 0o700, account.uid, account.gid), f"{image.path.name}: /home/{user}/.ssh {folder}"
    info = image.stat(f"/home/{user}/.ssh/authorized_keys")
    assert info is not None and (info.mode, info.uid, info.gid) == (0o600, account.uid, account.gid)
    assert image.text(f"/home/{user}/.ssh/authorized_keys").split("\n")[:-1] == keys
    home = image.stat(f"/home/{user}")
    assert home is not None and home.uid == account.uid


def test_authorized_keys_belong_to_their_users(lab: Lab) -> None:
    for image in lab.all:
        _assert_keys(image, "alice", [ALICE_KEY])
        _assert_keys(image, "bob", BOB_KEYS)


def _locked(field: str) -> bool:
    return field in ("!", "*", "!*", "") or (field.startswith("!") and "$" not in field)


def test_the_first_user_has_the_password_hash_and_others_none(lab: Lab) -> None:
    for image in lab.all:
        shadow = image.shadow()
        # A --no-secrets (release) image carries no password hash at all: SSH keys only.
        if image is lab.nosecrets:
            assert _locked(shadow["alice"]), shadow["alice"]
        else:
            assert shadow["alice"] == ALICE_HASH
        assert _locked(shadow["bob"]), shadow["bob"]
        info = image.stat("/etc/shadow")
        assert info is not None and info.mode & 0o007 == 0


def test_sshd_refuses_passwords_and_the_first_setting_is_ours(lab: Lab) -> None:
    """sshd keeps the FIRST value it reads for a keyword: ours must come before any other."""
    for image in lab.all:
        main = [line.split() for line in image.text("/etc/ssh/sshd_config").splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
        include = next(i for i, f in enumerate(main) if f[0].lower() == "include")
        assert main[include][1] == "/etc/ssh/sshd_config.d/*.conf"
        assert not any(f[0].lower() == "passwordauthentication" for f in main[:include])
        values = []
        for name in sorted(n for n in image.listdir("/etc/ssh/sshd_config.d") if n.endswith(".conf")):
            for line in image.text(f"/etc/ssh/sshd_config.d/{name}").splitlines():
                fields = line.split()
                if fields and fields[0].lower() == "passwordauthentication":
                    values.append((name, fields[1]))
        assert values[0] == ("10-clusterbake.conf", "no"), values


def test_no_image_carries_ssh_host_keys_and_each_board_makes_its_own(lab: Lab) -> None:
    for image in lab.all:
        keys = [n for n in image.listdir("/etc/ssh") if n.startswith("ssh_host_")]
        assert keys == [], f"{image.path.name}: {keys}"
        assert image.enabled("clusterbake-ssh-hostkeys.service")
        assert image.enabled("ssh.service")
        unit = image.unit_file("clusterbake-ssh-hostkeys.service")
        before = [w for line in unit.splitlines() if line.startswith("Before=") for w in line[7:].split()]
        assert "ExecStart=/usr/bin/ssh-keygen -A" in unit and {"ssh.service", "ssh.socket"} <= set(before)
