"""Fetching a good image: every format, every kind of location, and a warm cache that stays quiet."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from builder.acquire import fetch_base
from builder.paths import repo_root
from tests.acquire.acquire_helpers import IMAGE, Served, as_written, partial_files, verified_files


@pytest.mark.parametrize("suffix", [".xz", ".gz", ".zst", ""])
def test_each_format_gives_the_original_bytes(served: Served, cache: Path, tmp_path: Path, suffix: str) -> None:
    name = IMAGE + suffix
    raw = fetch_base(served.base(name), cache=cache)

    sha256 = served.publication.sha256(name)
    assert raw == cache / "images" / f"{sha256}.img"
    assert raw.read_bytes() == served.publication.original
    expected = {f"{sha256}.img", f"{sha256}.trusted-by"} | ({f"{sha256}.img{suffix}"} if suffix else set())
    assert set(verified_files(cache)) == expected
    assert (cache / "images" / f"{sha256}.trusted-by").read_text().strip() == served.publication.fingerprint
    assert partial_files(cache) == []
    assert served.image_gets(name) == 1


def test_warm_cache_makes_no_request_at_all(served: Served, cache: Path, tmp_path: Path) -> None:
    base = served.base()
    first = fetch_base(base, cache=cache)
    served.server.reset_log()

    assert fetch_base(base, cache=cache) == first
    assert served.server.requests == []


def test_warm_archive_without_raw_is_decompressed_again_offline(served: Served, cache: Path, tmp_path: Path) -> None:
    base = served.base()
    raw = fetch_base(base, cache=cache)
    raw.unlink()  # e.g. the user freed space
    served.server.reset_log()

    assert fetch_base(base, cache=cache, offline=True) == raw
    assert raw.read_bytes() == served.publication.original
    assert served.server.requests == []


def test_sha256_url_is_the_only_request_of_a_warm_fetch(served: Served, cache: Path, tmp_path: Path) -> None:
    base = served.base(sha256=None, sha256_url=served.server.url(IMAGE + ".xz.sha256"))
    raw = fetch_base(base, cache=cache)
    assert raw.read_bytes() == served.publication.original
    served.server.reset_log()

    assert fetch_base(base, cache=cache) == raw
    assert served.server.requests == [("GET", IMAGE + ".xz.sha256")]
    # ... and offline it comes from the cached listing, without any request.
    served.server.reset_log()
    assert fetch_base(base, cache=cache, offline=True) == raw
    assert served.server.requests == []


def test_armoured_signature_works_too(served: Served, cache: Path, tmp_path: Path) -> None:
    base = served.base(signature_url=served.server.url(IMAGE + ".xz.asc"))
    assert fetch_base(base, cache=cache).read_bytes() == served.publication.original


def test_key_is_fetched_once_and_cached_by_fingerprint(served: Served, cache: Path, tmp_path: Path) -> None:
    fetch_base(served.base(IMAGE + ".xz"), cache=cache)
    assert (cache / "keys" / f"{served.publication.fingerprint}.asc").is_file()
    served.server.reset_log()

    fetch_base(served.base(IMAGE + ".gz"), cache=cache)
    assert ("GET", "signing-key.asc") not in served.server.requests
    assert served.image_gets(IMAGE + ".gz") == 1


def test_a_replaced_cached_key_is_dropped_and_fetched_again(served: Served, cache: Path, tmp_path: Path) -> None:
    fetch_base(served.base(IMAGE + ".xz"), cache=cache)
    cached_key = cache / "keys" / f"{served.publication.fingerprint}.asc"
    cached_key.write_bytes((served.publication.root / "other-key.asc").read_bytes())

    raw = fetch_base(served.base(IMAGE + ".gz"), cache=cache)
    assert raw.read_bytes() == served.publication.original
    assert cached_key.read_bytes() == (served.publication.root / "signing-key.asc").read_bytes()


def test_file_urls_and_relative_paths_need_no_server(served: Served, cache: Path) -> None:
    root = served.publication.root
    by_file_url = served.base(
        url=(root / (IMAGE + ".xz")).as_uri(), signature_url=(root / (IMAGE + ".xz.sig")).as_uri(),
        signing_key=(root / "signing-key.asc").as_uri(), cluster_dir=Path("/nonexistent"))
    raw = fetch_base(by_file_url, cache=cache / "a")
    assert raw.read_bytes() == served.publication.original

    by_path = served.base(url=IMAGE + ".zst", sha256=served.publication.sha256(IMAGE + ".zst"),
                          signature_url=IMAGE + ".zst.sig", signing_key="signing-key.asc", cluster_dir=root)
    raw = fetch_base(by_path, cache=cache / "b")
    assert raw.read_bytes() == served.publication.original
    assert served.server.requests == []


def test_a_changed_trust_anchor_invalidates_the_cache(served: Served, cache: Path, tmp_path: Path) -> None:
    base = served.base()
    raw = fetch_base(base, cache=cache)
    record = cache / "images" / f"{served.publication.sha256(IMAGE + '.xz')}.trusted-by"
    record.write_text(served.publication.other_fingerprint + "\n")  # as if pinned differently back then

    from builder.errors import InputError
    with pytest.raises(InputError, match="verified with key"):
        fetch_base(base, cache=cache, offline=True)
    served.server.reset_log()
    assert fetch_base(base, cache=cache) == raw
    assert served.image_gets() == 1
    assert record.read_text().strip() == served.publication.fingerprint


def cluster_file(tmp_path: Path, base: dict[str, str | None]) -> Path:
    """The reference cluster file with its base_image replaced."""
    data = yaml.safe_load((repo_root() / "cluster.yaml").read_text())
    data["base_image"] = {k: v for k, v in base.items() if v is not None}
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_cli_prints_the_raw_path_last_and_concurrent_fetches_share_one_download(
        served: Served, cache: Path, tmp_path: Path) -> None:
    cluster = cluster_file(tmp_path, as_written(served.base()))
    argv = [sys.executable, "-m", "builder", "fetch", "--cluster", str(cluster), "--cache", str(cache)]
    procs = [subprocess.Popen(argv, cwd=repo_root(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [proc.communicate(timeout=60) for proc in procs]

    for proc, (stdout, stderr) in zip(procs, results, strict=True):
        assert proc.returncode == 0, stderr
        raw = Path(stdout.strip().splitlines()[-1])
        assert raw.parent == cache / "images"
        assert raw.read_bytes() == served.publication.original
    # One process downloaded while the other waited on the lock, then found it cached.
    assert served.image_gets() == 1
    sha256 = served.publication.sha256(IMAGE + ".xz")
    assert verified_files(cache) == [f"{sha256}.img", f"{sha256}.img.xz", f"{sha256}.trusted-by"]
