"""Every way a fetch can go wrong: its own one-line message, its exit code, and a clean cache.

The failure cases run through the CLI's main() in this process (argument parsing, error
printing and exit code included) so that the network policy can be made impatient; one
case also runs as a real `python -m builder` subprocess.
"""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from builder.acquire import download, fetch_base
from builder.cli import main
from builder.config.model import BaseImage
from builder.errors import ClusterbakeError, EnvironmentProblem, InputError
from builder.paths import repo_root
from tests.acquire.acquire_helpers import IMAGE, Served, as_written, partial_files, verified_files
from tests.acquire.test_fetch import cluster_file


def closed_port_url(name: str) -> str:
    """A URL on 127.0.0.1 where nothing listens: the port was just released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


Case = Callable[[Served], BaseImage]

CASES: dict[str, tuple[Case, int, str]] = {
    "flipped byte": (
        lambda s: s.base("flipped.img.xz", sha256=s.publication.sha256(IMAGE + ".xz")),
        1, "the download is corrupt: its SHA-256"),
    "wrong sha256": (
        lambda s: s.base(sha256="ab" * 32),
        1, "so the expected hash is what is wrong"),
    "signature by another key": (
        lambda s: s.base(signature_url=s.server.url(IMAGE + ".xz.other-sig")),
        1, "signature made by key {other}, which base_image.fingerprint does not pin (it pins {pinned})"),
    "signature missing": (
        lambda s: s.base(signature_url=s.server.url("nowhere.sig")),
        1, "signature not found (HTTP 404 Not Found)"),
    "key is not the pinned one": (
        lambda s: s.base(signing_key=s.server.url("other-key.asc")),
        1, "holds key {other}, not the pinned key {pinned}; refusing to trust it"),
    "truncated xz": (
        lambda s: s.base("truncated.img.xz"),
        1, "the archive is corrupt or truncated"),
    "image 404": (
        lambda s: s.base("nowhere.img.xz", signature_url=s.server.url(IMAGE + ".xz.sig")),
        1, "base_image.url: http://127.0.0.1:{port}/nowhere.img.xz: the server answered HTTP 404 Not Found"),
    "image 500": (
        lambda s: s.base(),  # the test sets fail_status for it
        1, "server answered HTTP 500 Internal Server Error (gave up after 3 attempts)"),
    "connection refused": (
        lambda s: s.base(url=closed_port_url(IMAGE + ".xz")),
        2, "cannot download: connection refused (gave up after 3 attempts)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_failure_has_its_own_message_and_leaves_nothing_verified(
        served: Served, cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    make_base, exit_code, expected = CASES[case]
    base = make_base(served)
    if case == "image 500":
        served.server.fail_status[IMAGE + ".xz"] = 500
    cluster = cluster_file(tmp_path, as_written(base))

    code = main(["fetch", "--cluster", str(cluster), "--cache", str(cache)])

    out, err = capsys.readouterr()
    assert code == exit_code
    assert out == ""
    errors = [line for line in err.splitlines() if line.startswith("clusterbake: error: ")]
    assert len(errors) == 1, err
    assert "Traceback" not in err
    assert expected.format(other=served.publication.other_fingerprint, pinned=served.publication.fingerprint,
                           port=served.server.base_url.rsplit(":", 1)[1]) in errors[0]
    assert "(fix: " in errors[0]
    assert verified_files(cache) == []
    # A file that failed verification is not kept for resuming either.
    assert partial_files(cache) == []
    if case == "image 500":
        assert served.image_gets() == 3


def test_the_failure_messages_are_all_different(served: Served, cache: Path, tmp_path: Path) -> None:
    messages = set()
    for i, (case, (make_base, _, _)) in enumerate(CASES.items()):
        served.server.fail_status = {IMAGE + ".xz": 500} if case == "image 500" else {}
        with pytest.raises(ClusterbakeError) as caught:
            fetch_base(make_base(served), cache=cache / str(i))
        messages.add(caught.value.message.replace(served.server.base_url, "URL"))
    assert len(messages) == len(CASES)


def test_cli_subprocess_reports_one_line_and_exit_1(served: Served, cache: Path, tmp_path: Path) -> None:
    cluster = cluster_file(tmp_path, as_written(served.base(sha256="ab" * 32)))
    proc = subprocess.run([sys.executable, "-m", "builder", "fetch", "--cluster", str(cluster), "--cache", str(cache)],
                          cwd=repo_root(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.splitlines()[-1].startswith("clusterbake: error: base_image.url: ")
    assert "Traceback" not in proc.stderr
    assert verified_files(cache) == []


def test_a_cut_download_resumes_within_the_run(served: Served, cache: Path, tmp_path: Path) -> None:
    served.server.cut_after[IMAGE + ".xz"] = 100_000
    raw = fetch_base(served.base(), cache=cache)

    assert raw.read_bytes() == served.publication.original
    assert served.server.range_requests == [(IMAGE + ".xz", "bytes=100000-")]
    assert served.image_gets() == 2


def test_a_cut_download_resumes_on_the_next_run(served: Served, cache: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    served.server.cut_after[IMAGE + ".xz"] = 100_000
    monkeypatch.setattr(download, "POLICY", dataclasses.replace(download.POLICY, attempts=1))
    with pytest.raises(EnvironmentProblem, match="connection closed before the end of the file"):
        fetch_base(served.base(), cache=cache)
    # The good partial stays for resuming, but nothing looks verified.
    assert verified_files(cache) == []
    [partial] = (cache / "partial").iterdir()
    assert partial.stat().st_size == 100_000

    monkeypatch.undo()
    raw = fetch_base(served.base(), cache=cache)
    assert raw.read_bytes() == served.publication.original
    assert served.server.range_requests == [(IMAGE + ".xz", "bytes=100000-")]
    assert partial_files(cache) == []


def test_a_server_ignoring_range_restarts_cleanly(served: Served, cache: Path, tmp_path: Path) -> None:
    served.server.cut_after[IMAGE + ".xz"] = 100_000
    served.server.ignore_range = True
    raw = fetch_base(served.base(), cache=cache)

    assert raw.read_bytes() == served.publication.original
    assert served.server.range_requests == [(IMAGE + ".xz", "bytes=100000-")]  # asked, got a 200 instead
    assert served.image_gets() == 2


def test_a_partial_from_another_file_is_discarded_and_downloaded_afresh(
        served: Served, cache: Path, tmp_path: Path) -> None:
    sha256 = served.publication.sha256(IMAGE + ".xz")
    stale = cache / "partial" / f"{sha256}.img.xz.part"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"\xff" * 50_000)  # e.g. the first bytes of an older image at the same URL

    raw = fetch_base(served.base(), cache=cache)
    assert raw.read_bytes() == served.publication.original
    assert served.server.range_requests == [(IMAGE + ".xz", "bytes=50000-")]
    assert served.image_gets() == 2


def test_a_complete_partial_from_an_interrupted_run_is_verified_without_downloading_again(
        served: Served, cache: Path, tmp_path: Path) -> None:
    sha256 = served.publication.sha256(IMAGE + ".xz")
    complete = cache / "partial" / f"{sha256}.img.xz.part"
    complete.parent.mkdir(parents=True)
    complete.write_bytes((served.publication.root / (IMAGE + ".xz")).read_bytes())  # killed while verifying

    raw = fetch_base(served.base(), cache=cache)
    assert raw.read_bytes() == served.publication.original
    size = complete.stat().st_size if complete.exists() else (cache / "images" / f"{sha256}.img.xz").stat().st_size
    assert served.server.range_requests == [(IMAGE + ".xz", f"bytes={size}-")]  # answered 416: nothing left


def test_offline_with_a_cold_cache_fails_without_a_request(served: Served, cache: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    cluster = cluster_file(tmp_path, as_written(served.base()))
    assert main(["fetch", "--offline", "--cluster", str(cluster), "--cache", str(cache)]) == 1
    assert "not in the cache" in capsys.readouterr().err
    assert served.server.requests == []

    with pytest.raises(InputError, match=r"not in the cache.*; run without --offline"):
        fetch_base(served.base(sha256=None, sha256_url=served.server.url(IMAGE + ".xz.sha256")),
                   cache=cache, offline=True)
    assert served.server.requests == []


def test_offline_with_a_warm_cache_succeeds_without_a_request(served: Served, cache: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    cluster = cluster_file(tmp_path, as_written(served.base()))
    assert main(["fetch", "--cluster", str(cluster), "--cache", str(cache)]) == 0
    served.server.reset_log()
    capsys.readouterr()

    assert main(["fetch", "--offline", "--cluster", str(cluster), "--cache", str(cache)]) == 0
    raw = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert raw.read_bytes() == served.publication.original
    assert served.server.requests == []
