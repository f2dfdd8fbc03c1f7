"""Key rotation: several pinned fingerprints, several signing_key sources, the real signer named.

The session's publication has two real gpg keys: the "old" one (`fingerprint`, signing-key.asc,
the .sig files) and the "new" one (`other_fingerprint`, other-key.asc, the .other-sig file).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from builder.acquire import fetch_base
from builder.acquire.signature import public_keys
from builder.config import load_cluster
from builder.demo.server import StaticServer, serve_directory
from builder.errors import ClusterbakeError, VerificationError
from builder.paths import repo_root
from tests.acquire.acquire_helpers import IMAGE, Served, as_written, verified_files
from tests.acquire.test_fetch import cluster_file

NEW_SIG = IMAGE + ".xz.other-sig"


@pytest.fixture
def keyserver(served: Served, tmp_path: Path) -> Iterator[StaticServer]:
    """A second server answering a keyserver's by-fingerprint lookup (the query is ignored) with the new key."""
    root = tmp_path / "keyserver"
    (root / "pks").mkdir(parents=True)
    (root / "pks" / "lookup").write_bytes((served.publication.root / "other-key.asc").read_bytes())
    with serve_directory(root) as server:
        yield server


def _both_keys(served: Served, tmp_path: Path) -> Path:
    """One key file holding the old and the new key, as a publisher may ship during a rotation."""
    root = served.publication.root
    both = tmp_path / "both-keys.asc"
    both.write_bytes((root / "signing-key.asc").read_bytes() + (root / "other-key.asc").read_bytes())
    assert [k.fingerprint for k in public_keys(both.read_bytes())] == \
        [served.publication.fingerprint, served.publication.other_fingerprint]
    return both


def test_a_rotation_window_accepts_images_signed_by_either_pinned_key(served: Served, cache: Path,
                                                                       tmp_path: Path) -> None:
    pub = served.publication
    both = str(_both_keys(served, tmp_path))
    window = (pub.fingerprint, pub.other_fingerprint)
    for signature, signer in ((IMAGE + ".xz.sig", pub.fingerprint), (NEW_SIG, pub.other_fingerprint)):
        store = cache / signer
        base = served.base(fingerprint=window, signature_url=served.server.url(signature), signing_key=both)
        assert fetch_base(base, cache=store).read_bytes() == pub.original
        sha256 = pub.sha256(IMAGE + ".xz")
        assert (store / "images" / f"{sha256}.trusted-by").read_text().strip() == signer
        # Only the key that signed is kept, alone, though the file held both.
        assert [k.fingerprint for k in public_keys((store / "keys" / f"{signer}.asc").read_bytes())] == [signer]
        assert sorted(p.name for p in (store / "keys").iterdir()) == [f"{signer}.asc"]


def test_a_key_file_with_old_and_new_keys_serves_a_pin_of_the_new_key_alone(served: Served, cache: Path,
                                                                           tmp_path: Path) -> None:
    pub = served.publication
    base = served.base(fingerprint=pub.other_fingerprint, signature_url=served.server.url(NEW_SIG),
                       signing_key=str(_both_keys(served, tmp_path)))
    assert fetch_base(base, cache=cache).read_bytes() == pub.original
    # ... and the old key, though in that file, is trusted for nothing once it is unpinned:
    old = served.base(fingerprint=pub.other_fingerprint, signing_key=str(_both_keys(served, tmp_path)))
    with pytest.raises(VerificationError, match=f"signature made by key {pub.fingerprint}, which base_image"):
        fetch_base(old, cache=tmp_path / "cache-old")
    assert verified_files(tmp_path / "cache-old") == []


def test_signing_key_sources_are_tried_in_order(served: Served, keyserver: StaticServer, cache: Path,
                                                tmp_path: Path) -> None:
    """404 first, then a file holding only the old key, then a keyserver URL with the new one."""
    pub = served.publication
    lookup = keyserver.url("pks/lookup") + f"?op=get&options=mr&search=0x{pub.other_fingerprint}"
    sources = (served.server.url("moved-key.asc"), served.server.url("signing-key.asc"), lookup)
    base = served.base(fingerprint=(pub.fingerprint, pub.other_fingerprint), signature_url=served.server.url(NEW_SIG),
                       signing_key=sources)
    assert fetch_base(base, cache=cache).read_bytes() == pub.original
    assert [r for r in served.server.requests if r[1].endswith(".asc")] == \
        [("GET", "moved-key.asc"), ("GET", "signing-key.asc")]
    assert keyserver.requests == [("GET", "pks/lookup")]
    # The key is now cached by its fingerprint: no source is asked again.
    served.server.reset_log()
    keyserver.reset_log()
    assert fetch_base(served.base(IMAGE + ".gz", fingerprint=base.fingerprint, signing_key=sources,
                                  signature_url=served.server.url(IMAGE + ".gz.sig")),
                      cache=cache).read_bytes() == pub.original
    assert ("GET", "signing-key.asc") in served.server.requests    # the old key was not cached: fetched now
    assert keyserver.requests == []


def test_when_no_source_has_the_pinned_signer_each_source_says_why(served: Served, cache: Path,
                                                                   tmp_path: Path) -> None:
    pub = served.publication
    base = served.base(fingerprint=(pub.fingerprint, pub.other_fingerprint), signature_url=served.server.url(NEW_SIG),
                       signing_key=(served.server.url("moved-key.asc"), served.server.url("signing-key.asc")))
    with pytest.raises(ClusterbakeError) as caught:
        fetch_base(base, cache=cache)
    message = caught.value.message
    assert message.startswith(f"base_image.signing_key: none of its 2 sources gave the pinned key "
                              f"{pub.other_fingerprint} that made the signature: "), message
    assert "signing_key[0]: " in message and "HTTP 404" in message
    assert f"signing_key[1]: {served.server.url('signing-key.asc')}: holds key {pub.fingerprint}, but not" in message
    assert verified_files(cache) == []


def test_a_good_signature_by_an_unpinned_key_names_that_key_and_the_fix(served: Served, cache: Path,
                                                                         tmp_path: Path) -> None:
    """What a user of an old cluster file meets after the publisher rotated its key: one line, exit 1."""
    pub = served.publication
    base = served.base(signature_url=served.server.url(NEW_SIG), signing_key=str(_both_keys(served, tmp_path)))
    cluster = cluster_file(tmp_path, as_written(base))
    proc = subprocess.run([sys.executable, "-m", "builder", "fetch", "--cluster", str(cluster), "--cache", str(cache)],
                          cwd=repo_root(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("clusterbake: error: ")]
    assert len(errors) == 1, proc.stderr
    assert f"signature made by key {pub.other_fingerprint}, which base_image.fingerprint does not pin " \
           f"(it pins {pub.fingerprint})" in errors[0]
    assert f"(fix: if the publisher has rotated its signing key, check {pub.other_fingerprint}" in errors[0]
    assert "add it to base_image.fingerprint" in errors[0]
    # Refused before the image was downloaded.
    assert served.image_gets() == 0 and verified_files(cache) == []


def test_an_image_admitted_by_the_old_key_stays_cached_while_the_old_key_is_pinned(served: Served, cache: Path,
                                                                                   tmp_path: Path) -> None:
    pub = served.publication
    fetch_base(served.base(), cache=cache)
    window = served.base(fingerprint=(pub.other_fingerprint, pub.fingerprint))
    served.server.reset_log()
    fetch_base(window, cache=cache, offline=True)
    assert served.server.requests == []
    with pytest.raises(ClusterbakeError, match="was verified with key"):
        fetch_base(served.base(fingerprint=pub.other_fingerprint), cache=cache, offline=True)


def test_the_cluster_file_takes_one_or_several_fingerprints_and_key_sources(tmp_path: Path) -> None:
    data = yaml.safe_load((repo_root() / "cluster.yaml").read_text())
    old, new = "54C3DD610D9D1B4AF82A37758738CD6B956F460C", "F4AADD86C4687D69AE04543E796C114AD12B2292"
    data["base_image"].update(fingerprint=[old, "f4aa dd86 c468 7d69 ae04 543e 796c 114a d12b 2292"],
                              signing_key=["https://example.org/key.asc", "keys/raspberrypi.asc"])
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(data))
    base = load_cluster(path).base_image
    assert base.fingerprints == (old, new)
    assert base.signing_keys == ("https://example.org/key.asc", "keys/raspberrypi.asc")
    for value, expected in (([], "base_image.fingerprint: [] is not a 40-digit OpenPGP fingerprint or a list"),
                            ([new, "1234"], "base_image.fingerprint[1]: '1234' is not a 40-digit"),
                            ([new, new], f"base_image.fingerprint[1]: {new} is listed twice")):
        data["base_image"]["fingerprint"] = value
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(ClusterbakeError, match=expected.replace("[", r"\[").replace("]", r"\]")):
            load_cluster(path)
    data["base_image"].update(fingerprint=new, signing_key=["https://example.org/key.asc", 7])
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ClusterbakeError, match=r"base_image\.signing_key\[1\]: 7 is not a URL or path"):
        load_cluster(path)
