"""The root's walk, glob and rewrite stay inside the root: a link is listed, never followed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from builder.errors import InputError
from builder.image.image_root import DirectoryRoot


@pytest.fixture
def tree(tmp_path: Path) -> DirectoryRoot:
    root = tmp_path / "root"
    (root / "etc/ssh").mkdir(parents=True)
    (root / "var/log/apt").mkdir(parents=True)
    (root / "etc/hostname").write_text("node01\n")
    (root / "etc/passwd-").write_text("old\n")
    (root / "etc/ssh/sshd_config").write_text("x\n")
    (root / "var/log/apt/history.log").write_text("log\n")
    host = tmp_path / "host"          # what an absolute link would reach if the host resolved it
    host.mkdir()
    (host / "secret").write_text("host file\n")
    (root / "etc/outside").symlink_to(host)             # a directory link out of the root
    (root / "etc/loop").symlink_to("/etc/loop")         # a link to itself
    (root / "etc/hosts-").symlink_to(host / "secret")   # matches etc/*- but is a link
    return DirectoryRoot(root)


def test_walk_lists_links_and_never_follows_them(tree: DirectoryRoot) -> None:
    walked = {path: stat.S_IFMT(info.st_mode) for path, info in tree.walk("/")}
    assert walked == {
        "/etc/hostname": stat.S_IFREG, "/etc/hosts-": stat.S_IFLNK, "/etc/loop": stat.S_IFLNK,
        "/etc/outside": stat.S_IFLNK, "/etc/passwd-": stat.S_IFREG,
        "/etc/ssh/sshd_config": stat.S_IFREG, "/var/log/apt/history.log": stat.S_IFREG,
    }
    # a directory's own entries first, then its subdirectories', each in name order
    assert [path for path, _ in tree.walk("/etc")][-1] == "/etc/ssh/sshd_config"
    assert list(tree.walk("/etc/outside")) == [] and list(tree.walk("/nowhere")) == []


def test_glob_matches_the_last_component(tree: DirectoryRoot) -> None:
    assert [path for path, _ in tree.glob("/etc/*-")] == ["/etc/hosts-", "/etc/passwd-"]
    assert tree.glob("/var/cache/apt/*.bin") == []
    # a link out of the root is resolved inside it: the host's directory is not listed
    assert tree.glob("/etc/outside/*") == []


def test_rewrite_keeps_mode_and_owner_and_refuses_links(tree: DirectoryRoot) -> None:
    host = tree.root / "etc/hostname"
    os.chmod(host, 0o640)
    os.chown(host, 1234, 4321)
    tree.rewrite("/etc/hostname", b"node02\n")
    info = host.stat()
    assert (host.read_text(), stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == ("node02\n", 0o640, 1234, 4321)
    with pytest.raises(InputError):
        tree.rewrite("/etc/outside/secret", b"changed\n")
    assert (tree.root.parent / "host/secret").read_text() == "host file\n"
