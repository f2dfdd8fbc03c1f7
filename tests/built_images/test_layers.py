"""Role bases as layers: one per profile that adds packages, shared by the roles that include it.

The quick tests read the layer recipes of the shipped profiles; the slow one checks, on the
images the build tests make anyway, that apt's lists stayed out of them and were fetched once.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest
import yaml

from builder.config import Cluster, load_cluster
from builder.layers import Layer, layer_path, missing_layers, role_layers
from builder.paths import repo_root
from builder.render import RenderPlan, render_plan
from tests.built_images.conftest import Lab

BASE = Path("/cache/base/0123abcd.img")   # only its name enters the keys


def _plan(cluster: Cluster, profiles: Path, role: str | None = None, node: str | None = None) -> RenderPlan:
    return render_plan(cluster, role=role, node=node, secrets=False, profiles_dir=profiles,
                       overlays_dir=repo_root() / "overlays")


@pytest.fixture
def reference(tmp_path: Path) -> Cluster:
    data = yaml.safe_load((repo_root() / "cluster.yaml").read_text())
    data["secrets_dir"] = str(tmp_path / "secrets")
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_cluster(path, profiles_dir=repo_root() / "profiles")


def _layers(cluster: Cluster, profiles: Path, role: str) -> tuple[Layer, ...]:
    return role_layers(BASE, _plan(cluster, profiles, role=role))


def test_roles_share_the_layers_of_the_profiles_they_share(reference: Cluster) -> None:
    profiles = repo_root() / "profiles"
    compute, timeserver, controller = (_layers(reference, profiles, r) for r in ("compute", "timeserver", "controller"))
    assert [layer.profile for layer in compute] == ["common", "compute"]
    assert [layer.profile for layer in timeserver] == ["common", "compute", "timeserver"]
    assert [layer.profile for layer in controller] == ["common", "login", "controller"]
    assert timeserver[:2] == compute
    assert controller[0] == compute[0]
    assert len({layer.key for layer in (*compute, *timeserver, *controller)}) == 5


def test_a_role_stack_is_at_most_three_layers_deep(reference: Cluster) -> None:
    """auxiliary = compute + timeserver + fileserver + monitor: one layer over compute's, not four."""
    profiles = repo_root() / "profiles"
    compute, auxiliary = (_layers(reference, profiles, r) for r in ("compute", "auxiliary"))
    assert [layer.profile for layer in auxiliary] == ["common", "compute", "auxiliary"]
    assert auxiliary[:2] == compute
    assert {"gpsd", "nfs-kernel-server", "prometheus"} <= set(auxiliary[2].new)
    plan = _plan(reference, profiles, role="auxiliary")
    assert auxiliary[2].grow_mib == plan.grow_mib - sum(layer.grow_mib for layer in compute)


def test_the_top_layer_holds_the_plan_and_has_its_size(reference: Cluster) -> None:
    profiles = repo_root() / "profiles"
    for role in ("compute", "timeserver", "controller", "auxiliary"):
        plan = _plan(reference, profiles, role=role)
        layers = role_layers(BASE, plan)
        assert layers[-1].packages == tuple(sorted(plan.packages))
        assert sum(layer.grow_mib for layer in layers) == plan.grow_mib
        for below, above in itertools.pairwise(layers):
            assert set(below.packages) < set(above.packages)
            assert above.new == tuple(sorted(set(above.packages) - set(below.packages)))


def test_a_node_image_of_a_role_uses_the_role_images_layers(reference: Cluster) -> None:
    """A role image adds packages only through role_image: (none shipped), so NODE= and ROLE= agree."""
    profiles = repo_root() / "profiles"
    assert role_layers(BASE, _plan(reference, profiles, node="node03")) == _layers(reference, profiles, "compute")


def test_adding_a_package_to_a_role_changes_only_its_layer_and_those_above(reference: Cluster,
                                                                          tmp_path: Path) -> None:
    profiles = repo_root() / "profiles"
    changed = tmp_path / "profiles"
    shutil.copytree(profiles, changed)
    compute_yaml = changed / "compute.yaml"
    data = yaml.safe_load(compute_yaml.read_text())
    data["packages"].append("tree")
    compute_yaml.write_text(yaml.safe_dump(data))
    before = {r: _layers(reference, profiles, r) for r in ("compute", "timeserver", "controller")}
    after = {r: _layers(reference, changed, r) for r in ("compute", "timeserver", "controller")}
    assert after["compute"][0] == before["compute"][0]                      # common: kept
    assert after["compute"][1].key != before["compute"][1].key              # compute: redone
    assert "tree" in after["compute"][1].new and "tree" not in before["compute"][1].new
    assert after["timeserver"][2].key != before["timeserver"][2].key        # built on compute: redone
    assert after["controller"] == before["controller"]                      # unrelated: kept


def test_a_profile_without_packages_only_grows_the_layer_below(reference: Cluster, tmp_path: Path) -> None:
    changed = tmp_path / "profiles"
    shutil.copytree(repo_root() / "profiles", changed)
    (changed / "quiet.yaml").write_text("include: [compute]\ngrow_mib: 10\n")
    data = yaml.safe_load(reference.source.read_text())
    data["nodes"][2]["role"] = "quiet"
    path = tmp_path / "quiet.yaml"
    path.write_text(yaml.safe_dump(data))
    cluster = load_cluster(path, profiles_dir=changed)
    quiet, compute = _layers(cluster, changed, "quiet"), _layers(cluster, changed, "compute")
    assert quiet[:2] == compute                      # no apt run of its own: compute's layers, grown
    assert (quiet[2].new, quiet[2].packages, quiet[2].grow_mib) == ((), compute[1].packages, 10)


@pytest.mark.slow
@pytest.mark.root
def test_role_images_carry_no_apt_lists(lab: Lab) -> None:
    """apt's lists are bind-mounted from the host cache during installs: none end up in an image."""
    for image in lab.all:
        assert [name for name in image.listdir("/var/lib/apt/lists") if "_dists_" in name] == [], image.path.name


def test_only_missing_layers_are_built_each_once_on_the_highest_cached_one(reference: Cluster,
                                                                          tmp_path: Path) -> None:
    profiles = repo_root() / "profiles"
    plans = [_plan(reference, profiles, role=r) for r in ("controller", "timeserver", "compute")]
    compute = role_layers(BASE, plans[2])
    cache = tmp_path / "cache"
    todo = missing_layers(BASE, plans, cache)
    assert [layer.profile for layer, _ in todo] == ["common", "login", "controller", "compute", "timeserver"]
    below = {layer.profile: image for layer, image in todo}
    assert below["common"] == BASE and below["timeserver"] == layer_path(cache, compute[1])
    layer_path(cache, compute[1]).parent.mkdir(parents=True)
    layer_path(cache, compute[1]).touch()     # compute's top layer cached: nothing below it is needed for it
    assert [layer.profile for layer, _ in missing_layers(BASE, plans[1:], cache)] == ["timeserver"]
