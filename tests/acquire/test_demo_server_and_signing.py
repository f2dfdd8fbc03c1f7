"""The stand-ins the acquisition tests stand on: the fault-injecting server and the signing key.

Checked with independent clients: raw http.client for the server, the gpg command line
for signatures, ps for leftover agents.
"""

from __future__ import annotations

import http.client
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from builder.demo.server import StaticServer, serve_directory
from builder.openpgp import create_signing_key, export_public_key, sign_detached, temporary_keyring

BODY = bytes(range(256)) * 40


def get(server: StaticServer, name: str, headers: dict[str, str] | None = None,
        method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    host, port = server.base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request(method, "/" + name, headers=headers or {})
        response = conn.getresponse()
        try:
            body = response.read()
        except http.client.IncompleteRead as exc:
            body = exc.partial
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


@pytest.fixture
def server(tmp_path: Path) -> StaticServer:
    (tmp_path / "file.bin").write_bytes(BODY)
    (tmp_path.parent / "secret").write_text("outside the served root")
    with serve_directory(tmp_path) as server:
        yield server  # type: ignore[misc]


def test_get_head_and_range(server: StaticServer) -> None:
    assert server.url("file.bin") == server.base_url + "/file.bin"
    assert get(server, "file.bin")[::2] == (200, BODY)
    status, headers, body = get(server, "file.bin", method="HEAD")
    assert (status, headers["content-length"], body) == (200, str(len(BODY)), b"")
    status, headers, body = get(server, "file.bin", {"Range": "bytes=1000-"})
    assert (status, headers["content-range"], body) == (206, f"bytes 1000-{len(BODY) - 1}/{len(BODY)}", BODY[1000:])
    status, headers, _ = get(server, "file.bin", {"Range": f"bytes={len(BODY)}-"})
    assert (status, headers["content-range"]) == (416, f"bytes */{len(BODY)}")
    assert server.requests == [("GET", "file.bin"), ("HEAD", "file.bin"), ("GET", "file.bin"), ("GET", "file.bin")]
    assert server.range_requests == [("file.bin", "bytes=1000-"), ("file.bin", f"bytes={len(BODY)}-")]


def test_missing_and_outside_files_are_404(server: StaticServer) -> None:
    assert get(server, "nothing")[0] == 404
    assert get(server, "../secret")[0] == 404
    assert get(server, "%2e%2e/secret")[0] == 404


def test_fault_knobs(server: StaticServer) -> None:
    server.fail_status["file.bin"] = 503
    assert get(server, "file.bin")[0] == 503
    server.fail_status.clear()

    server.cut_after["file.bin"] = 100
    status, headers, body = get(server, "file.bin")
    assert (status, headers["content-length"], body) == (200, str(len(BODY)), BODY[:100])
    assert get(server, "file.bin")[2] == BODY  # the cut happens once

    server.ignore_range = True
    status, _, body = get(server, "file.bin", {"Range": "bytes=1000-"})
    assert (status, body) == (200, BODY)


def test_the_port_is_released_on_exit(tmp_path: Path) -> None:
    with serve_directory(tmp_path) as server:
        port = int(server.base_url.rsplit(":", 1)[1])
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))


def gpg_agents(home: Path) -> list[str]:
    """Live agents serving `home` (an exiting one has lost its command line, so never matches)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended while we looked
            continue
        if "gpg-agent" in args and str(home) in args:
            found.append(args)
    return found


def test_signing_key_signatures_verify_with_gpg_and_leave_no_agent(tmp_path: Path) -> None:
    data = tmp_path / "data.img.xz"
    data.write_bytes(BODY)
    with temporary_keyring() as home:
        fingerprint = create_signing_key(home / "key", "Demo Signer")
        assert stat.S_IMODE((home / "key").stat().st_mode) == 0o700
        export_public_key(home / "key", fingerprint, tmp_path / "key.asc")
        sign_detached(home / "key", fingerprint, data, tmp_path / "data.sig")
        sign_detached(home / "key", fingerprint, data, tmp_path / "data.asc", armor=True)
        assert gpg_agents(home) == []
    assert len(fingerprint) == 40 and fingerprint == fingerprint.upper()
    assert (tmp_path / "key.asc").read_text().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert (tmp_path / "data.asc").read_text().startswith("-----BEGIN PGP SIGNATURE-----")
    assert not (tmp_path / "data.sig").read_bytes().startswith(b"-----")

    # Verified by plain gpg in a keyring that holds only the exported public key.
    with temporary_keyring() as verifier:
        gpg = ["gpg", "--homedir", str(verifier), "--batch", "--status-fd", "1"]
        subprocess.run([*gpg, "--import", str(tmp_path / "key.asc")], check=True, capture_output=True)
        for sig in ("data.sig", "data.asc"):
            result = subprocess.run([*gpg, "--verify", str(tmp_path / sig), str(data)], capture_output=True, text=True)
            assert f"VALIDSIG {fingerprint}" in result.stdout, result.stderr
        data.write_bytes(BODY + b"!")
        result = subprocess.run([*gpg, "--verify", str(tmp_path / "data.sig"), str(data)],
                                capture_output=True, text=True)
        assert result.returncode != 0 and "BADSIG" in result.stdout


def test_a_keyring_deep_in_a_long_cache_path_still_signs(tmp_path: Path) -> None:
    """The bench's cache (2026-12-04) put the demo key 95 bytes deep: its agent's socket did not fit in a
    Unix socket's 107 bytes and gpg failed "to start agent"."""
    data = tmp_path / "data.img.xz"
    data.write_bytes(BODY)
    home = tmp_path / ("deep-" + "c" * max(1, 120 - len(str(tmp_path)))) / "demo-key"
    assert len(str(home)) > 110
    fingerprint = create_signing_key(home, "Demo Signer")
    sign_detached(home, fingerprint, data, tmp_path / "data.sig")
    assert (tmp_path / "data.sig").stat().st_size > 0
    assert gpg_agents(home) == [] and not list(home.glob("S.gpg-agent*"))
