"""`fileserver:` in the cluster file: who serves what to whom; every mistake is one line."""

from __future__ import annotations

import subprocess
import sys
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from builder.config import load_cluster
from builder.errors import InputError
from builder.paths import repo_root
from tests.config.conftest import write

ROOT = repo_root()


def test_reference_lab_serves_home_and_scratch_from_the_auxiliary_node() -> None:
    server = load_cluster(ROOT / "cluster.yaml", profiles_dir=ROOT / "profiles").fileserver
    assert server is not None
    assert (server.node, server.exports, server.clients) == ("gps", ("/home", "/scratch"), IPv4Network("10.0.0.0/24"))


def test_no_fileserver_is_valid_and_means_local_homes(tmp_path: Path, data: dict) -> None:
    del data["fileserver"]
    assert load_cluster(write(tmp_path, data)).fileserver is None


def test_defaults_export_home_and_scratch_to_the_whole_subnet(tmp_path: Path, data: dict) -> None:
    data["fileserver"] = {"node": "head"}
    server = load_cluster(write(tmp_path, data)).fileserver
    assert server is not None
    assert server.exports == ("/home", "/scratch") and server.clients == IPv4Network("10.0.0.0/24")


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"node": "gps", "clients": "192.168.1.0/24"},
         "cluster.yaml: fileserver.clients: 192.168.1.0/24 is outside network.subnet 10.0.0.0/24 "
         "(fix: export only to the cluster"),
        ({"node": "gps", "clients": "10.0.0.0/16"}, "fileserver.clients: 10.0.0.0/16 is outside network.subnet"),
        ({"node": "nas"}, "cluster.yaml: fileserver.node: 'nas' names no node (fix: use one of head, gps,"),
        ({"node": "gps", "exports": ["/home", "/usr/local"]},
         "cluster.yaml: fileserver.exports[1]: /usr/local would be mounted over the system's /usr on every other node"),
        ({"node": "gps", "exports": ["/etc"]}, "fileserver.exports[0]: /etc would be mounted over the system's /etc"),
        ({"node": "gps", "exports": ["/var/lib/data"]}, "fileserver.exports[0]: /var/lib/data would be mounted over"),
        ({"node": "gps", "exports": ["/"]}, "fileserver.exports[0]: '/' is not an absolute path"),
        ({"node": "gps", "exports": ["scratch"]}, "fileserver.exports[0]: 'scratch' is not an absolute path"),
        ({"node": "gps", "exports": ["/home/../etc"]}, "fileserver.exports[0]: '/home/../etc' is not an absolute"),
        ({"node": "gps", "exports": ["/home", "/home/shared"]},
         "fileserver.exports[1]: /home/shared overlaps /home, exported already"),
        ({"node": "gps", "exports": "/home"}, "fileserver.exports: expected a list"),
        ({"node": "gps", "exports": []}, "fileserver.exports: is empty (fix: list the directories to share"),
        ({"node": "gps", "export": ["/home"]}, "fileserver.export: unknown key (fix: did you mean 'exports'?)"),
        ({"exports": ["/home"]}, "fileserver.node: is missing"),
        ("gps", "fileserver: expected a mapping, got a string"),
    ],
)
def test_bad_fileserver_is_one_precise_line(tmp_path: Path, data: dict, section: object, expected: str) -> None:
    data["fileserver"] = section
    with pytest.raises(InputError) as caught:
        load_cluster(write(tmp_path, data))
    line = caught.value.one_line()
    assert expected in line
    assert "\n" not in line


def test_cli_reports_a_bad_export_in_one_line_and_exit_1(tmp_path: Path, data: dict) -> None:
    data["fileserver"] = {"node": "gps", "exports": ["/boot/firmware"]}
    path = write(tmp_path, data)
    result = subprocess.run([sys.executable, "-m", "builder", "check", "--cluster", str(path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "clusterbake: error: cluster.yaml: fileserver.exports[0]: /boot/firmware would be mounted over the "
        "system's /boot on every other node (fix: export a directory of its own, such as /scratch or /srv/data)"]
