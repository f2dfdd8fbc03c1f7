"""Reading the expected SHA-256 from a sha256sum-format list, as published beside an image."""

from __future__ import annotations

import pytest

from builder.acquire.checksum import expected_sha256
from builder.config.sources import Source
from builder.errors import InputError

SOURCE = Source("base_image.sha256_url", "https://example.invalid/x.img.xz.sha256",
                url="https://example.invalid/x.img.xz.sha256")
A, B = "a" * 64, "B" * 64


@pytest.mark.parametrize("listing", [
    f"{A}  x.img.xz\n",
    f"{A} *x.img.xz\n",
    f"# made by sha256sum\n{B}  other.img.xz\n{A}  ./dir/x.img.xz\n",
    f"{A}\n",
])
def test_the_line_for_the_image_is_found(listing: str) -> None:
    assert expected_sha256(listing, "x.img.xz", SOURCE) == A


@pytest.mark.parametrize(("listing", "message"), [
    (f"{B}  other.img.xz\n", "lists no SHA-256 for x.img.xz (it lists other.img.xz)"),
    ("<html>404</html>\n", "not in sha256sum format"),
    ("", "lists no SHA-256 for x.img.xz (it lists nothing)"),
])
def test_a_listing_without_the_image_is_refused(listing: str, message: str) -> None:
    with pytest.raises(InputError, match=r"^base_image\.sha256_url: https://example") as exc:
        expected_sha256(listing, "x.img.xz", SOURCE)
    assert message in exc.value.message
