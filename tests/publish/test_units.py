"""The pieces of a release that need no image: sums, dpkg status, the secret scan, Imager fields, block maps."""

from __future__ import annotations

import hashlib
import os
import subprocess
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from builder.config.model import Node
from builder.errors import VerificationError
from builder.image.image_root import DirectoryRoot
from builder.publish.bmap import read_bmap
from builder.publish.imager import device_tags
from builder.publish.manifest import installed_packages
from builder.publish.secret_scan import secrets_in_tree, shadow_hashes
from builder.publish.sums import check_sums, read_sums, write_sums

STATUS = """\
Package: bash
Status: install ok installed
Architecture: arm64
Version: 5.2.37-2
Description: GNU Bourne Again SHell
 a continuation line: Version: not this

Package: libc6
Status: install ok installed
Multi-Arch: same
Architecture: arm64
Version: 2.41-12

Package: gone
Status: deinstall ok config-files
Version: 1.0
"""


def test_sums_agree_with_sha256sum(tmp_path: Path) -> None:
    (tmp_path / "a.img.xz").write_bytes(os.urandom(5000))
    (tmp_path / "b.json").write_text("{}\n")
    write_sums(tmp_path, ["b.json", "a.img.xz"])
    check = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert [line.split()[1] for line in (tmp_path / "SHA256SUMS").read_text().splitlines()] == ["a.img.xz", "b.json"]
    # And the other way round: sha256sum's own output (binary mode marker too) is read correctly.
    listing = subprocess.run(["sha256sum", "-b", "a.img.xz", "b.json"], cwd=tmp_path, capture_output=True,
                             text=True, check=True).stdout
    (tmp_path / "SHA256SUMS").write_text(listing)
    assert check_sums(tmp_path / "SHA256SUMS") == ["a.img.xz", "b.json"]
    (tmp_path / "b.json").write_text("{ }\n")
    with pytest.raises(VerificationError, match=r"b\.json: SHA-256"):
        check_sums(tmp_path / "SHA256SUMS")
    (tmp_path / "b.json").unlink()
    with pytest.raises(VerificationError, match=r"lists b\.json, which is missing"):
        check_sums(tmp_path / "SHA256SUMS")
    assert set(read_sums(tmp_path / "SHA256SUMS")) == {"a.img.xz", "b.json"}


def test_installed_packages_from_dpkg_status() -> None:
    assert installed_packages(STATUS) == {"bash": "5.2.37-2", "libc6:arm64": "2.41-12"}


def test_device_tags_from_node_models() -> None:
    def node(model: str) -> Node:
        return Node(name="n", role="compute", ip=IPv4Address("10.0.0.2"), model=model)

    assert device_tags([node("pi5-8gb"), node("pi5-4gb")]) == ("pi5-64bit",)
    assert device_tags([node("pi4-8gb"), node("pi5-8gb")]) == ("pi5-64bit", "pi4-64bit")
    assert device_tags([]) == ("pi5-64bit", "pi4-64bit")


def test_shadow_hashes() -> None:
    text = "root:*:20000:0:99999:7:::\nhpc:!:20000::::::\nbob:$y$j9T$abc$def:20000::::::\neve:!$6$x$y:1::::::\n"
    assert shadow_hashes(text) == ["bob", "eve"]


def test_secret_scan_of_a_tree(tmp_path: Path) -> None:
    (tmp_path / "etc/munge").mkdir(parents=True)
    (tmp_path / "etc/ssh").mkdir()
    (tmp_path / "etc/ssh/ssh_host_ed25519_key.pub").write_text("ssh-ed25519 AAAA\n")
    (tmp_path / "etc/shadow").write_text("root:*:1:0:99999:7:::\n")
    (tmp_path / "etc/hostname").write_text("node01\n")
    # ssh-keygen holds the bare header as a string: no key.
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/ssh-keygen").write_bytes(b"\0-----BEGIN OPENSSH PRIVATE KEY-----\0\n-----END OPENSSH")
    (tmp_path / "etc/slurm").mkdir()
    (tmp_path / "etc/slurm/slurmdbd.conf").write_text("StorageUser=slurm\n# No StoragePass in a release image\n")
    assert secrets_in_tree(DirectoryRoot(tmp_path)) == []
    (tmp_path / "etc/munge/munge.key").write_bytes(b"k" * 1024)
    (tmp_path / "etc/ssh/ssh_host_ed25519_key").write_text("x")
    (tmp_path / "etc/shadow").write_text("root:$6$salt$hash:1:0:99999:7:::\n")
    (tmp_path / "etc/slurm/slurmdbd.conf").write_text("StorageUser=slurm\nStoragePass=0123456789abcdef\n")
    (tmp_path / "etc/tls.pem").write_text("junk\n-----BEGIN OPENSSH PRIVATE KEY-----\n"
                                          "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMw\n"
                                          "-----END OPENSSH PRIVATE KEY-----\n")
    # A key file a package ships verbatim (dpkg's md5sums) is public test material, not a secret.
    (tmp_path / "usr/lib").mkdir()
    (tmp_path / "usr/lib/libtls.so").write_bytes((tmp_path / "etc/tls.pem").read_bytes())
    (tmp_path / "var/lib/dpkg/info").mkdir(parents=True)
    digest = hashlib.md5((tmp_path / "etc/tls.pem").read_bytes()).hexdigest()
    (tmp_path / "var/lib/dpkg/info/libtls1:arm64.md5sums").write_text(f"{digest}  usr/lib/libtls.so\n")
    assert secrets_in_tree(DirectoryRoot(tmp_path)) == [
        "/etc/shadow: password hash for root",
        "/etc/tls.pem: contains a private key",
        "/etc/munge/munge.key: a secret by its name",
        "/etc/slurm/slurmdbd.conf: holds slurmdbd's database password (StoragePass)",
        "/etc/ssh/ssh_host_ed25519_key: a secret by its name",
    ]


def test_read_bmap_of_bmaptool_output(tmp_path: Path) -> None:
    image = tmp_path / "x.img"
    with open(image, "wb") as out:
        out.truncate(8 << 20)
        out.seek(1 << 20)
        out.write(os.urandom(8192))
    subprocess.run(["bmaptool", "create", "--output", tmp_path / "x.bmap", image], check=True, capture_output=True)
    bmap = read_bmap(tmp_path / "x.bmap")
    assert bmap.image_size == 8 << 20
    assert bmap.block_size == 4096
    assert bmap.mapped_blocks == 2
    assert [(first, last) for first, last, _ in bmap.ranges] == [(256, 257)]
    assert bmap.checksum_type == "sha256"
