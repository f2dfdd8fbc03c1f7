"""Test images for the engine: each layout built once per session, copied for each test that changes it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.image.imagetools import ImageFacts, build_test_image, copy_image, engine_leftovers


@pytest.fixture(scope="session")
def image_templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ImageFacts]:
    """One image per layout: MBR at 8192 (before 2025), MBR at 16384 (since 2025), GPT."""
    base = tmp_path_factory.mktemp("image-templates")
    return {
        "dos-8192": build_test_image(base / "dos-8192.img", first_sector=8192),
        "dos-16384": build_test_image(base / "dos-16384.img", first_sector=16384),
        "gpt": build_test_image(base / "gpt.img", label="gpt", first_sector=2048),
    }


@pytest.fixture
def make_image(image_templates: dict[str, ImageFacts], tmp_path: Path) -> Callable[[str], ImageFacts]:
    """A private copy of a template image, for a test that changes it."""
    def make(kind: str = "dos-16384") -> ImageFacts:
        return copy_image(image_templates[kind], tmp_path / f"{kind}.img")
    return make


@pytest.fixture
def image(make_image: Callable[[str], ImageFacts]) -> ImageFacts:
    return make_image("dos-16384")


@pytest.fixture(autouse=True)
def no_leaks(tmp_path: Path) -> Iterator[None]:
    """Every test leaves no loop device over its files, no mount, no scratch dir and no record."""
    yield
    assert engine_leftovers(os.getpid(), tmp_path) == []
