"""The images every build test inspects, built ONCE per session through the CLI.

A four-node lab (controller, time server that also computes, two compute nodes, two users, one
of them the first user with a password hash, the other with `sudo: nopasswd`) over the stand-in
base served on 127.0.0.1:
  role images   rolelab-controller.img, rolelab-auxiliary.img, rolelab-compute.img (`images`)
  node image    rolelab-c1.img (`build --node c1`)
  release-like  nosecrets/rolelab-compute.img (`build --role compute --no-secrets`)
Role bases are cached under cache_root() (by base + packages), so only the first session pays
the apt installs under qemu (~100 s per package set); later sessions take seconds per image.
Tests only read these images; a test that changes one works on a copy.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from builder.paths import repo_root
from tests.built_images.image_reader import ImageReader
from tests.render.render_support import ALICE_KEY, BOB_KEYS

ALICE_HASH = "$6$rolelabsalt0$HUaaDT8xSDArPPrkqL1elkYGw2KkLivmjmcl0LUv3iQYbH8KZINWVlkDHaPLrn0wxyv7OLy4btzkksH94f70e."

NODES = [
    {"name": "head", "role": "controller", "ip": "10.9.0.10", "model": "pi5-8gb"},
    {"name": "gps", "role": "auxiliary", "ip": "10.9.0.20", "model": "pi4-4gb", "serial": "10000000aaaa0020"},
    {"name": "c1", "role": "compute", "ip": "10.9.0.101", "model": "pi5-8gb", "serial": "10000000c0ffee01"},
    {"name": "c2", "role": "compute", "ip": "10.9.0.102", "model": "pi5-16gb", "mac": "2c:cf:67:00:00:02"},
]


def lab_data(base_image: Mapping[str, str], secrets_dir: Path) -> dict[str, object]:
    return {
        "name": "rolelab",
        "base_image": dict(base_image),
        "network": {"subnet": "10.9.0.0/24", "gateway": "10.9.0.1", "dns": ["10.9.0.1", "9.9.9.9"]},
        "time": {"server": "gps"},
        "slurm": {"controller": "head"},
        "fileserver": {"node": "gps", "exports": ["/home", "/scratch"]},
        "nodes": NODES,
        "users": [
            {"name": "alice", "uid": 2001, "groups": ["sudo", "bob"], "ssh_keys": [ALICE_KEY],
             "password_hash": ALICE_HASH},
            {"name": "bob", "uid": 2002, "gid": 2100, "ssh_keys": BOB_KEYS, "sudo": "nopasswd"},
        ],
        "first_user": "alice",
        "secrets_dir": str(secrets_dir),
    }


def write_cluster(path: Path, data: Mapping[str, object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False))
    return path


def cli(*args: str | os.PathLike[str], env: Mapping[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """`python -m builder ARGS` as a user would run it (a separate process, the repo as cwd)."""
    proc = subprocess.run([sys.executable, "-m", "builder", *map(os.fspath, args)], cwd=repo_root(),
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, check=False)
    if check:
        assert proc.returncode == 0, f"builder {args}: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    return proc


@dataclass(frozen=True)
class Lab:
    cluster_file: Path
    secrets_dir: Path
    out: Path
    images_stdout: str          # what `images` printed
    images_log: str             # and its progress (stderr)
    node_stdout: str            # what `build --node c1` printed
    roles: Mapping[str, ImageReader]
    node: ImageReader           # rolelab-c1.img
    nosecrets: ImageReader      # nosecrets/rolelab-compute.img

    @property
    def all(self) -> list[ImageReader]:
        return [*self.roles.values(), self.node, self.nosecrets]

    def with_key(self) -> list[ImageReader]:
        return [*self.roles.values(), self.node]


@pytest.fixture(scope="session")
def lab(served_base: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Lab:
    top = tmp_path_factory.mktemp("rolelab")
    secrets_dir = top / "secrets" / "rolelab"
    cluster_file = write_cluster(top / "rolelab.yaml", lab_data(served_base, secrets_dir))
    out = top / "out"
    images = cli("images", "--cluster", cluster_file, "--out", out)
    node = cli("build", "--cluster", cluster_file, "--node", "c1", "--out", out)
    cli("build", "--cluster", cluster_file, "--role", "compute", "--no-secrets", "--out", out / "nosecrets")
    return Lab(
        cluster_file=cluster_file,
        secrets_dir=secrets_dir,
        out=out,
        images_stdout=images.stdout,
        images_log=images.stderr,
        node_stdout=node.stdout,
        roles={role: ImageReader(out / f"rolelab-{role}.img") for role in ("controller", "auxiliary", "compute")},
        node=ImageReader(out / "rolelab-c1.img"),
        nosecrets=ImageReader(out / "nosecrets" / "rolelab-compute.img"),
    )
