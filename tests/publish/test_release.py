"""`python -m builder release` end to end, judged with independent tools.

One release of a small lab (a controller and two compute nodes, one Pi 4 and one Pi 5) is made
from the served stand-in base with a throw-away signing key, then: gpg --verify, sha256sum -c,
xz -t, os_list.json against the files, a secret scan of every file of every image, the
manifests against the images, a flash into a loop device, verify-release, and a second build
of the compute image from a cold cache compared file by file (SOURCE_DATE_EPOCH).
Takes ~5 minutes cold (role bases, xz -1 of ~1.5 GB images), ~2 minutes with cached role bases.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from builder.build import plan_job
from builder.config import load_cluster
from builder.paths import repo_root
from builder.publish.release import publish_images
from tests.flash.cardtools import loop_card, sha256_prefix
from tests.publish import imager_schema
from tests.publish.conftest import ReleaseKey
from tests.publish.imagetree import boot_files, mounted_root, tree

pytestmark = [pytest.mark.slow, pytest.mark.root]

EPOCH = 1764000000  # 2025-11-24
DATE = "2025-11-24"
ROLES = ("controller", "compute", "timeserver")
PRIVATE_KEY = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----\s+[A-Za-z0-9+/=\s:,-]+-----END \1PRIVATE KEY-----")


@dataclass(frozen=True)
class Release:
    dist: Path
    cluster_file: Path
    raw: dict[str, Path]          # role → decompressed image (xz -dc of the released file)
    key: ReleaseKey


def _cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "builder", *map(str, args)], capture_output=True, text=True,
                          cwd=repo_root(), stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


def _sha256(path: Path) -> str:
    """By sha256sum, not by the code under test."""
    return subprocess.run(["sha256sum", path], capture_output=True, text=True, check=True).stdout.split()[0]


@pytest.fixture(scope="module")
def release(served_base: dict[str, str], release_key: ReleaseKey,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    work = tmp_path_factory.mktemp("release")
    cluster_file = work / "minilab.yaml"
    cluster_file.write_text(yaml.safe_dump({
        "name": "minilab",
        "base_image": served_base,
        "network": {"subnet": "10.9.0.0/24", "gateway": "10.9.0.1", "dns": ["10.9.0.1"]},
        "time": {"server": "gps"},
        "slurm": {"controller": "head"},
        "secrets_dir": str(work / "secrets"),
        "nodes": [{"name": "head", "role": "controller", "ip": "10.9.0.10", "model": "pi5-8gb"},
                  {"name": "node01", "role": "compute", "ip": "10.9.0.101", "model": "pi4-8gb"},
                  {"name": "node02", "role": "compute", "ip": "10.9.0.102", "model": "pi5-8gb"},
                  # time.server must name a node whose role serves time (checked at load since issue 11).
                  {"name": "gps", "role": "timeserver", "ip": "10.9.0.20", "model": "pi4-8gb"}],
        "users": [{"name": "hpc", "uid": 2000, "groups": ["sudo"]}],
    }, sort_keys=False))
    dist = work / "dist"
    proc = _cli("release", "--cluster", cluster_file, "--key", release_key.fingerprint, "--dist", dist, "--fast",
                env={"GNUPGHOME": str(release_key.gnupghome), "SOURCE_DATE_EPOCH": str(EPOCH)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    raw = {}
    for role in ROLES:
        raw[role] = work / f"{role}.img"
        with open(raw[role], "wb") as out:
            subprocess.run(["xz", "-dc", dist / f"minilab-{role}-{DATE}.img.xz"], stdout=out, check=True)
    yield Release(dist, cluster_file, raw, release_key)
    for image in raw.values():
        image.unlink(missing_ok=True)


def test_files_of_the_release(release: Release) -> None:
    expected = {"SHA256SUMS", "SHA256SUMS.asc", "os_list.json"}
    for role in ROLES:
        stem = f"minilab-{role}-{DATE}"
        expected |= {f"{stem}.img.xz", f"{stem}.img.bmap", f"{stem}.manifest.json"}
    assert {p.name for p in release.dist.iterdir()} == expected
    for image in release.dist.glob("*.img.xz"):
        subprocess.run(["xz", "-t", image], check=True)


def test_signature_and_sums_verify_as_a_user_would(release: Release, tmp_path: Path) -> None:
    home = tmp_path / "user-gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--batch", "--homedir", str(home)]
    subprocess.run([*gpg, "--import", release.key.public_key], check=True, capture_output=True)
    try:
        verified = subprocess.run([*gpg, "--status-fd", "1", "--verify", "SHA256SUMS.asc", "SHA256SUMS"],
                                  cwd=release.dist, capture_output=True, text=True)
    finally:
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], check=False)
    assert verified.returncode == 0, verified.stderr
    assert f"VALIDSIG {release.key.fingerprint}" in verified.stdout
    assert (release.dist / "SHA256SUMS.asc").read_text().startswith("-----BEGIN PGP SIGNATURE-----")
    checked = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=release.dist, capture_output=True,
                             text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = {line.split()[1] for line in (release.dist / "SHA256SUMS").read_text().splitlines()}
    assert listed == {p.name for p in release.dist.iterdir()} - {"SHA256SUMS", "SHA256SUMS.asc"}


def test_os_list_describes_the_files(release: Release) -> None:
    entries = json.loads((release.dist / "os_list.json").read_text())["os_list"]
    assert [e["name"] for e in entries] == [f"minilab {role}" for role in ROLES]
    devices = {"controller": ["pi5-64bit"], "compute": ["pi5-64bit", "pi4-64bit"], "timeserver": ["pi4-64bit"]}
    for role, entry in zip(ROLES, entries, strict=True):
        name = f"minilab-{role}-{DATE}.img.xz"
        assert entry["url"] == (release.dist / name).as_uri()
        assert entry["image_download_size"] == (release.dist / name).stat().st_size
        assert entry["image_download_sha256"] == _sha256(release.dist / name)
        assert entry["extract_size"] == release.raw[role].stat().st_size
        assert entry["extract_sha256"] == _sha256(release.raw[role])
        assert entry["release_date"] == DATE
        assert entry["devices"] == devices[role]
        # Already customised: Imager must not offer to rewrite hostname, users or network.
        assert entry["init_format"] == "none"
    doc = json.loads((release.dist / "os_list.json").read_text())
    assert imager_schema.problems(doc) == [] and imager_schema.unmatched_devices(doc) == []


def _secrets(root: Path) -> list[str]:
    """Secrets under root; a private key counts unless a package ships that very file (md5sums)."""
    shipped = set()
    for listing in (root / "var/lib/dpkg/info").glob("*.md5sums"):
        shipped |= {tuple(line.split("  ", 1)) for line in listing.read_text().splitlines()}
    found = []
    for path in sorted(root.rglob("*")):
        rel = "/" + path.relative_to(root).as_posix()
        if path.name == "munge.key" or re.fullmatch(r"ssh_host_.*_key", path.name):
            found.append(rel)
        if not path.is_file() or path.is_symlink():
            continue
        if rel in ("/etc/shadow", "/etc/shadow-", "/etc/gshadow"):
            found += [f"{rel}:{line}" for line in path.read_text().splitlines()
                      if line.split(":")[1].lstrip("!") not in ("", "*", "x")]
        data = path.read_bytes() if path.stat().st_size < (64 << 20) else b""
        if PRIVATE_KEY.search(data) and (hashlib.md5(data).hexdigest(), rel[1:]) not in shipped:
            found.append(f"{rel}: private key")
    return found


def test_no_image_holds_a_secret(release: Release, tmp_path: Path) -> None:
    for role, image in release.raw.items():
        with mounted_root(image) as root:
            assert _secrets(root) == [], role
            assert (root / "etc/munge").is_dir()       # the place is there; the key is not
        boot = boot_files(image, tmp_path / role)
        assert _secrets(boot) == [], role
        assert {p.name for p in boot.iterdir()} >= {"config.txt", "cmdline.txt"}
        assert not (boot / "userconf.txt").exists()


def test_manifests_describe_the_images(release: Release, served_base: dict[str, str]) -> None:
    import requests

    base_sha256 = requests.get(served_base["sha256_url"], timeout=10).text.split()[0]
    for role, image in release.raw.items():
        manifest = json.loads((release.dist / f"minilab-{role}-{DATE}.manifest.json").read_text())
        assert manifest["role"] == role
        assert manifest["base_image"]["sha256"] == base_sha256
        assert manifest["base_image"]["signing_key_fingerprint"] == served_base["fingerprint"]
        assert manifest["profiles"][0] == "common"
        assert manifest["source_date_epoch"] == EPOCH
        assert manifest["image_sha256"] == _sha256(image)
        with mounted_root(image) as root:
            status = (root / "var/lib/dpkg/status").read_text()
            for package in ("slurmctld",) if role == "controller" else ("slurmd",):
                version = re.search(rf"^Package: {package}\n(?:.+\n)*?Version: (.+)$", status, re.MULTILINE)
                assert version and manifest["packages"][package] == version.group(1)
            for entry in manifest["files"]:
                if not entry.get("directory"):
                    assert _sha256(root / entry["path"].lstrip("/")) == entry["sha256"], entry["path"]
        # Configless: the controller carries slurm.conf, every slurmd names the server it fetches it from.
        slurm = "/etc/slurm/slurm.conf" if role == "controller" else "/etc/default/slurmd"
        assert any(f["path"] == slurm for f in manifest["files"]), role


def test_flashed_to_a_loop_device_reads_back_identical(release: Release, tmp_path: Path) -> None:
    image = release.dist / f"minilab-compute-{DATE}.img.xz"
    size = release.raw["compute"].stat().st_size
    with loop_card(tmp_path / "card", size + (64 << 20)) as card:
        proc = _cli("flash", image, card, "--yes")
        assert proc.returncode == 0, proc.stderr
        assert "bmaptool copy" in proc.stderr          # only the mapped blocks were written
        assert sha256_prefix(card, size) == _sha256(release.raw["compute"])


def test_verify_release(release: Release, tmp_path: Path) -> None:
    ok = _cli("verify-release", "--dist", release.dist, "--key-file", release.key.public_key,
              "--key", release.key.fingerprint)
    assert ok.returncode == 0, ok.stderr
    wrong = _cli("verify-release", "--dist", release.dist, "--key-file", release.key.public_key, "--key", "A" * 40,
                 "--quick")
    assert wrong.returncode == 1 and "not by the expected key" in wrong.stderr
    copy = tmp_path / "dist"
    shutil.copytree(release.dist, copy, copy_function=os.link)   # hard links: cheap, and nothing is modified
    manifest = next(copy.glob("*compute*.manifest.json"))
    text = manifest.read_text().replace('"role": "compute"', '"role": "controller"')
    manifest.unlink()
    manifest.write_text(text)
    bad = _cli("verify-release", "--dist", copy, "--key-file", release.key.public_key, "--quick")
    assert bad.returncode == 1
    assert f"{manifest.name}: SHA-256" in bad.stderr and "Traceback" not in bad.stderr


def test_reproducible_file_tree(release: Release, tmp_path: Path) -> None:
    """The compute image again, from a cold cache (role base rebuilt): the same files, modes, owners, contents."""
    cluster = load_cluster(release.cluster_file, profiles_dir=repo_root() / "profiles")
    job = plan_job(cluster, [("compute", None)], secrets=False, cache=tmp_path / "cold-cache")
    work = tmp_path / "again"
    work.mkdir()
    publish_images(job, work, epoch=EPOCH, date=DATE, fast=True, zstd=False, base_url="file:///")
    again = tmp_path / "again.img"
    with open(again, "wb") as out:
        subprocess.run(["xz", "-dc", work / f"minilab-compute-{DATE}.img.xz"], stdout=out, check=True)
    with mounted_root(release.raw["compute"]) as root:
        first = tree(root)
    with mounted_root(again) as root:
        second = tree(root)
    differing = sorted(p for p in first.keys() | second.keys() if first.get(p) != second.get(p))
    assert differing == [], [(p, first.get(p), second.get(p)) for p in differing[:20]]
