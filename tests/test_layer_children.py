"""A layer built in a child process fails as it would in this one: the error's kind and hint cross over."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder import errors
from builder.build import plan_job
from builder.config import load_cluster
from builder.layers import Layer, _Worker, build_layers
from builder.paths import repo_root

ROOT = repo_root()
LAYER = Layer(profile="compute", packages=("slurmd",), new=("slurmd",), grow_mib=0, key="0123456789abcdef")


def refuse_as_input(below: Path, layer: Layer, cache: Path) -> Path:
    """What a child runs instead of building the layer (module level: a spawned child imports it)."""
    raise errors.InputError("profiles/compute.yaml: packages[0]: 'slurmd' is refused", hint="remove it")


def refuse_as_verification(below: Path, layer: Layer, cache: Path) -> Path:
    raise errors.VerificationError("Packages: SHA-256 mismatch", hint="try again later")


@pytest.mark.parametrize(("build", "kind", "hint"), [
    (refuse_as_input, errors.InputError, "remove it"),
    (refuse_as_verification, errors.VerificationError, "try again later"),
])
def test_a_childs_error_keeps_its_class_and_hint(tmp_path: Path, build: object, kind: type, hint: str) -> None:
    worker = _Worker(tmp_path / "below.img", LAYER, tmp_path / "cache", build=build)  # type: ignore[arg-type]
    with pytest.raises(errors.ClusterbakeError) as info:
        worker.result()
    assert type(info.value) is kind
    assert info.value.hint == hint
    assert info.value.message.startswith("layer 'compute': ") and "(fix:" not in info.value.message


def test_building_layers_side_by_side_fails_with_the_childs_own_error(tmp_path: Path) -> None:
    """A cache that cannot be created: the child's EnvironmentProblem and its hint, as a build of one layer gives."""
    job = plan_job(load_cluster(ROOT / "cluster.yaml"), [("compute", None), ("controller", None)], secrets=False)
    (tmp_path / "file").write_text("")
    with pytest.raises(errors.EnvironmentProblem) as info:
        build_layers(tmp_path / "base.img", job.plans, tmp_path / "file" / "cache", limit=2)
    assert info.value.hint == "set CLUSTERBAKE_CACHE (or --cache) to a writable directory"
    assert "cannot create the cache directory" in info.value.message
