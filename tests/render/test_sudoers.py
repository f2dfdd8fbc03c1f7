"""users[].sudo: a key-only account (no password hash, or a release image) gets a NOPASSWD rule."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from builder.config import Cluster, load_cluster
from builder.errors import InputError
from tests.render.render_support import PROFILES, plan

RULE = "/etc/sudoers.d/010_{}-nopasswd"


def _rules(cluster: Cluster, *, secrets: bool) -> dict[str, str]:
    p = plan(cluster, role="compute", secrets=secrets)
    return {f.path: f.data.decode() for f in p.files if f.path.startswith("/etc/sudoers.d/")}


def _with_users(small: Cluster, first_user: str | None, **changes: dict[str, object]) -> Cluster:
    users = tuple(dataclasses.replace(u, **changes.get(u.name, {})) for u in small.users)  # type: ignore[arg-type]
    return dataclasses.replace(small, users=users, first_user=first_user)


def test_the_first_user_in_group_sudo_without_a_password_gets_a_nopasswd_rule(small: Cluster) -> None:
    cluster = _with_users(small, "alice")        # alice: groups [sudo], no password_hash
    for secrets in (True, False):
        rules = _rules(cluster, secrets=secrets)
        assert rules == {RULE.format("alice"): "alice ALL=(ALL:ALL) NOPASSWD: ALL\n"}
    rule = next(f for f in plan(cluster, role="compute").files if f.path == RULE.format("alice"))
    assert (rule.mode, rule.owner, rule.group) == (0o440, "root", "root")


def test_a_password_hash_keeps_sudo_asking_except_in_release_images_which_strip_it(small: Cluster) -> None:
    cluster = _with_users(small, "alice", alice={"password_hash": "$6$salt$hash"})
    assert _rules(cluster, secrets=True) == {}
    # a release (--no-secrets) image has no password hash for anyone: the rule is the only way to sudo
    assert list(_rules(cluster, secrets=False)) == [RULE.format("alice")]


def test_no_default_rule_without_first_user_or_outside_group_sudo(small: Cluster) -> None:
    assert _rules(_with_users(small, None), secrets=False) == {}
    assert _rules(_with_users(small, "bob"), secrets=False) == {}     # bob is not in group sudo


def test_sudo_key_overrides_the_default_both_ways(small: Cluster) -> None:
    cluster = _with_users(small, "alice", alice={"sudo": "password"}, bob={"sudo": "nopasswd"})
    assert list(_rules(cluster, secrets=False)) == [RULE.format("bob")]


def test_sudo_key_is_read_from_the_cluster_file_and_checked(tmp_path: Path) -> None:
    data = yaml.safe_load((PROFILES.parent / "cluster.yaml").read_text())
    data["users"][0]["sudo"] = "nopasswd"
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_cluster(path).users[0].sudo == "nopasswd"
    data["users"][0]["sudo"] = True
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=r"users\[0\]\.sudo: YAML reads the unquoted True as true/false"):
        load_cluster(path)
    data["users"][0]["sudo"] = "yes"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=r"users\[0\]\.sudo: 'yes' is not 'nopasswd' or 'password'"):
        load_cluster(path)
