"""The munge key: generated once with private modes from the start, reused, never in release images."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from builder.config import Cluster
from builder.errors import InputError
from builder.render import munge_key
from tests.render.render_support import file, paths, plan


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_key_is_1024_random_bytes_private_from_the_start_and_reused(tmp_path: Path) -> None:
    secrets = tmp_path / "config" / "secrets" / "lab"
    old = os.umask(0)    # even a permissive umask must not leave the key readable for a moment
    try:
        key = munge_key(secrets)
    finally:
        os.umask(old)
    assert len(key) == 1024
    assert len(set(key)) > 200                      # random bytes, not a constant
    assert mode(secrets) == 0o700
    assert mode(secrets / "munge.key") == 0o600
    assert [p.name for p in secrets.iterdir()] == ["munge.key"]    # no temporary file left
    assert munge_key(secrets) == key
    assert munge_key(tmp_path / "other") != key


def test_readable_or_short_key_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "s" / "munge.key"
    munge_key(key.parent)
    key.chmod(0o644)
    with pytest.raises(InputError) as info:
        munge_key(key.parent)
    assert info.value.one_line() == f"{key.parent}: munge.key is readable by others (mode 0644) (fix: chmod 600 {key})"
    key.chmod(0o600)
    key.write_bytes(b"short")
    with pytest.raises(InputError, match=r"munge\.key is 5 bytes, too short for a munge key"):
        munge_key(key.parent)


def test_plan_with_secrets_carries_the_key_as_munge_0400(small: Cluster) -> None:
    key = file(plan(small, role="compute"), "/etc/munge/munge.key")
    assert (key.owner, key.group, key.mode) == ("munge", "munge", 0o400)
    assert key.data == (small.secrets_dir / "munge.key").read_bytes()
    assert file(plan(small, role="controller"), "/etc/munge/munge.key").data == key.data   # one cluster, one key


def test_release_plan_has_no_key_but_the_first_boot_unit_and_a_clear_failure(small: Cluster) -> None:
    p = plan(small, role="compute", secrets=False)
    assert "/etc/munge/munge.key" not in paths(p)
    assert not small.secrets_dir.exists()                  # nothing generated for a release build
    assert "/etc/munge/munge.key" in p.remove              # munge's postinst made one inside the image
    unit = file(p, "/etc/systemd/system/clusterbake-munge-key.service").data.decode()
    assert "Before=munge.service" in unit
    assert "ConditionPathExists=/boot/firmware/munge.key" in unit
    assert "install -o munge -g munge -m 0400 /boot/firmware/munge.key /etc/munge/munge.key" in unit
    assert "rm -f /boot/firmware/munge.key" in unit
    assert "clusterbake-munge-key.service" in p.enable
    dropin = file(p, "/etc/systemd/system/munge.service.d/10-clusterbake.conf").data.decode()
    assert "ExecStartPre=/usr/local/lib/clusterbake/check-munge-key" in dropin
    check = file(p, "/usr/local/lib/clusterbake/check-munge-key")
    assert check.mode == 0o755
    assert ("clusterbake: no /etc/munge/munge.key — copy the cluster's munge.key to the boot partition and reboot"
            in check.data.decode())
    readme = dict(p.boot_files)["clusterbake.txt"].decode()
    assert "Copy the cluster's munge.key next to this file" in readme


def test_check_script_fails_without_key_and_passes_with_one(tmp_path: Path, small: Cluster) -> None:
    script = file(plan(small, role="compute", secrets=False), "/usr/local/lib/clusterbake/check-munge-key")
    # The script checks the fixed path /etc/munge/munge.key; run a copy pointed at a scratch path.
    body = script.data.decode().replace("/etc/munge/munge.key", str(tmp_path / "munge.key"))
    proc = subprocess.run(["sh", "-c", body], capture_output=True, text=True)
    assert proc.returncode == 1 and "copy the cluster's munge.key" in proc.stderr
    (tmp_path / "munge.key").write_bytes(b"k" * 1024)
    assert subprocess.run(["sh", "-c", body]).returncode == 0
