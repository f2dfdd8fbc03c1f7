"""`clusterbake netboot --push`: the served tree put in place on the file server, run here into a folder.

The same script the server runs under `sudo -n` over SSH (builder/netboot/push.py), fed the same tar
stream; only its root is a folder of the test instead of `/`.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from builder.errors import EnvironmentProblem
from builder.netboot.push import KEEP_VERSIONS, PUSH_SCRIPT, push_tree

pytestmark = pytest.mark.root


def tree(folder: Path, version: str, nodes: dict[str, str]) -> Path:
    """A served tree as `clusterbake netboot` writes it: boot folders, one root version, state folders."""
    root = folder / "srv/netroot/compute" / version
    (root / "etc").mkdir(parents=True)
    (root / "etc/version").write_text(version)
    (root / "etc/munge.key").write_bytes(b"k" * 32)
    os.chown(root / "etc/munge.key", 106, 110)
    os.chmod(root / "etc/munge.key", 0o400)
    for boot, node in nodes.items():
        (folder / "srv/netboot" / boot).mkdir(parents=True)
        (folder / "srv/netboot" / boot / "cmdline.txt").write_text(f"nfsroot=x:/srv/netroot/compute/{version}\n")
        (folder / "srv/netstate" / node).mkdir(parents=True, mode=0o700)
    return folder


def push(source: Path, server: Path) -> list[str]:
    return push_tree(source, ["sh", "-c", PUSH_SCRIPT, "clusterbake-push", str(server)], server="gps")


def test_a_push_puts_the_tree_in_place_keeping_owners_and_modes(tmp_path: Path) -> None:
    server = tmp_path / "server"
    done = push(tree(tmp_path / "a", "v1", {"abcdef01": "node01", "2c-cf-67-00-00-02": "node02"}), server)
    assert "shared root v1" in done and "boot folder abcdef01" in done and "state folder node01 made" in done
    assert sorted(os.listdir(server / "srv/netboot")) == ["2c-cf-67-00-00-02", "abcdef01"]
    key = (server / "srv/netroot/compute/v1/etc/munge.key").stat()
    assert (key.st_uid, key.st_gid, key.st_mode & 0o777) == (106, 110, 0o400)
    assert (server / "srv/netstate/node01").stat().st_mode & 0o777 == 0o700
    assert not (server / "srv/.clusterbake-netboot-incoming").exists()


def test_a_new_push_keeps_state_and_the_root_running_nodes_use(tmp_path: Path) -> None:
    server = tmp_path / "server"
    push(tree(tmp_path / "a", "v1", {"abcdef01": "node01", "abcdef02": "node02"}), server)
    kept = server / "srv/netstate/node01/ssh"
    kept.mkdir()
    (kept / "ssh_host_ed25519_key").write_text("node01's own key\n")
    # node02 left the cluster; node03 joined.
    done = push(tree(tmp_path / "b", "v2", {"abcdef01": "node01", "abcdef03": "node03"}), server)
    assert sorted(os.listdir(server / "srv/netboot")) == ["abcdef01", "abcdef03"]
    assert "boot folder abcdef02 removed (no such node)" in done
    assert (kept / "ssh_host_ed25519_key").read_text() == "node01's own key\n"     # never replaced
    assert sorted(os.listdir(server / "srv/netroot/compute")) == ["v1", "v2"]      # v1: nodes not yet rebooted
    assert (server / "srv/netboot/abcdef01/cmdline.txt").read_text().endswith("/srv/netroot/compute/v2\n")
    push(tree(tmp_path / "c", "v3", {"abcdef01": "node01"}), server)
    assert sorted(os.listdir(server / "srv/netroot/compute")) == ["v2", "v3"][-KEEP_VERSIONS:]


def test_a_failed_push_says_so_in_one_line_and_leaves_the_server_as_it_was(tmp_path: Path) -> None:
    server = tmp_path / "server"
    push(tree(tmp_path / "a", "v1", {"abcdef01": "node01"}), server)
    before = subprocess.run(["find", str(server), "-printf", "%p %m %s\n"], capture_output=True, text=True).stdout
    broken = tmp_path / "b"
    (broken / "srv/netstate/node01").mkdir(parents=True)         # no boot folders, no root: not a served tree
    with pytest.raises(EnvironmentProblem) as raised:
        push(broken, server)
    assert raised.value.one_line().startswith("gps: the served tree was not put in place: the pushed tree has no")
    after = subprocess.run(["find", str(server), "-printf", "%p %m %s\n"], capture_output=True, text=True).stdout
    assert after == before
    with pytest.raises(EnvironmentProblem, match="no served tree here"):
        push(tmp_path / "nothing", server)
