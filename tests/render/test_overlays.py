"""Overlays: templated names, manifests and every way an overlay can be wrong, each one precise line."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from builder.config import Cluster
from builder.errors import InputError
from builder.render import RenderPlan, render_plan
from tests.render.render_support import OVERLAYS, PROFILES


def lab(tmp_path: Path, files: dict[str, str], manifest: str | None = None) -> tuple[Path, Path]:
    """The shipped data plus a role `extra` whose overlay `extra` holds `files`."""
    profiles, overlays = tmp_path / "profiles", tmp_path / "overlays"
    shutil.copytree(PROFILES, profiles)
    shutil.copytree(OVERLAYS, overlays)
    (profiles / "extra.yaml").write_text("include: [compute]\noverlays: [extra]\n")
    top = overlays / "extra"
    top.mkdir()
    for rel, body in files.items():
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        (top / rel).write_text(body)
    if manifest is not None:
        (top / "manifest.yaml").write_text(manifest)
    return profiles, overlays


def with_extra_node(cluster: Cluster, name: str) -> Cluster:
    """The cluster with node `name` given the test's role `extra`."""
    nodes = tuple(dataclasses.replace(n, role="extra") if n.name == name else n for n in cluster.nodes)
    return dataclasses.replace(cluster, nodes=nodes)


def render(cluster: Cluster, dirs: tuple[Path, Path], **kwargs: object) -> RenderPlan:
    if "node" not in kwargs:
        kwargs.setdefault("role", "extra")
    return render_plan(cluster, profiles_dir=dirs[0], overlays_dir=dirs[1], **kwargs)  # type: ignore[arg-type]


def failure(cluster: Cluster, dirs: tuple[Path, Path], **kwargs: object) -> str:
    with pytest.raises(InputError) as info:
        render(cluster, dirs, **kwargs)
    line = info.value.one_line()
    assert "\n" not in line
    return line


def test_names_modes_owners_loops_and_created_directories(tmp_path: Path, small: Cluster) -> None:
    dirs = lab(tmp_path, {
        "etc/{{ cluster.name }}.d/{{ role }}.conf.j2": "{{ nodes | length }} nodes\n",
        "etc/raw.txt": "{{ not rendered }}\n",
        "srv/{{ user.name }}/notes.j2": "{{ user.uid }}\n",
        "usr/local/bin/tool": "#!/bin/sh\n",
    }, manifest=(
        "files:\n"
        "  usr/local/bin/*: {mode: '0755'}\n"
        "  srv/*/notes: {owner: '{{ user.name }}', group: users, mode: '0640'}\n"
        "directories:\n"
        "  var/lib/extra: {owner: nobody, mode: '0750'}\n"
        "  srv/*: {owner: '{{ user.name }}', mode: '0700'}\n"
        "each:\n"
        "  'srv/{{ user.name }}': user in users\n"))
    p = render(small, dirs)
    files = {f.path: f for f in p.files}
    assert files["/etc/minilab.d/extra.conf"].data == b"4 nodes\n"
    assert files["/etc/raw.txt"].data == b"{{ not rendered }}\n"        # only *.j2 is a template
    assert files["/usr/local/bin/tool"].mode == 0o755
    assert (files["/srv/alice/notes"].data, files["/srv/alice/notes"].owner, files["/srv/alice/notes"].group,
            files["/srv/alice/notes"].mode) == (b"2001\n", "alice", "users", 0o640)
    assert files["/srv/bob/notes"].data == b"2002\n"
    assert files["/srv/bob"].directory and files["/srv/bob"].owner == "bob" and files["/srv/bob"].mode == 0o700
    created = files["/var/lib/extra"]       # git keeps no empty directory: the manifest makes it
    assert created.directory and (created.owner, created.group, created.mode) == ("nobody", "nobody", 0o750)
    assert "/etc" not in files and "/srv" not in files        # unmanaged parents are left to the engine
    assert files["/etc/raw.txt"].owner == "root" and files["/etc/raw.txt"].mode == 0o644
    assert "/manifest.yaml" not in files


def test_boot_partition_files_go_to_boot_files(tmp_path: Path, small: Cluster) -> None:
    p = render(small, lab(tmp_path, {"boot/firmware/hello.txt.j2": "{{ cluster.name }}\n"}))
    assert dict(p.boot_files)["hello.txt"] == b"minilab\n"
    assert not [f for f in p.files if f.path.startswith("/boot/")]


def test_a_later_overlay_replaces_an_earlier_ones_file(tmp_path: Path, small: Cluster) -> None:
    p = render(small, lab(tmp_path, {"etc/chrony/chrony.conf": "mine\n"}))
    assert [f.data for f in p.files if f.path == "/etc/chrony/chrony.conf"] == [b"mine\n"]


def test_undefined_variable_names_template_line_and_variable(tmp_path: Path, small: Cluster) -> None:
    dirs = lab(tmp_path, {"etc/a.conf.j2": "ok {{ cluster.name }}\nbad {{ nodez }}\n"})
    assert failure(small, dirs) == ("overlays/extra/etc/a.conf.j2: line 2: 'nodez' is undefined "
                                    "(fix: the variables templates may use are listed in overlays/README.md)")


def test_undefined_attribute_in_an_included_template_names_that_template(tmp_path: Path, small: Cluster) -> None:
    dirs = lab(tmp_path, {"etc/a.j2": "{% include 'extra/parts/b.txt' %}", "parts/b.txt": "\n\n{{ node.nmae }}\n"})
    assert failure(with_extra_node(small, "c1"), dirs, node="c1").startswith(
        "overlays/extra/parts/b.txt: line 3: 'dict object' has no attribute 'nmae'")


def test_template_syntax_error(tmp_path: Path, small: Cluster) -> None:
    dirs = lab(tmp_path, {"etc/a.j2": "x\n{% if %}\n"})
    assert failure(small, dirs).startswith("overlays/extra/etc/a.j2: line 2: Expected an expression")


def test_node_only_variable_in_a_role_image(tmp_path: Path, small: Cluster) -> None:
    dirs = lab(tmp_path, {"etc/a.j2": "{{ node.name }}\n"})
    assert "overlays/extra/etc/a.j2: line 1: 'None' has no attribute 'name'" in failure(small, dirs)
    assert b"c1\n" in [f.data for f in render(with_extra_node(small, "c1"), dirs, node="c1").files]


@pytest.mark.parametrize("evil", ["..", "/etc/passwd", "", "a/../..", "."])
def test_templated_name_cannot_leave_the_image_root(tmp_path: Path, small: Cluster, evil: str) -> None:
    dirs = lab(tmp_path, {"etc/{{ settings.evil }}/x": "x\n"})
    (dirs[0] / "extra.yaml").write_text(f"overlays: [extra]\nsettings: {{evil: '{evil}'}}\n")
    assert failure(small, dirs) == (
        f"overlays/extra/etc/{{{{ settings.evil }}}}/x: the name renders to {evil!r}, which is not one path "
        "component (fix: a templated name must give a plain file name inside the image root)")


def test_templated_name_syntax_error(tmp_path: Path, small: Cluster) -> None:
    dirs = lab(tmp_path, {"etc/{{ node.name ]}": "x\n"})
    assert failure(small, dirs).startswith("overlays/extra/etc/{{ node.name ]}: unexpected ']'")


def test_symlink_pointing_outside_the_overlay_is_refused(tmp_path: Path, small: Cluster) -> None:
    dirs = lab(tmp_path, {"etc/ok": "x\n"})
    os.symlink("/etc/hostname", dirs[1] / "extra" / "etc" / "evil")
    assert failure(small, dirs) == ("overlays/extra/etc/evil: symlink points outside the overlay (to /etc/hostname) "
                                    "(fix: copy the file into the overlay instead)")
    (dirs[1] / "extra" / "etc" / "evil").unlink()
    os.symlink("../../base/etc/hosts.j2", dirs[1] / "extra" / "etc" / "sneaky")
    assert "overlays/extra/etc/sneaky: symlink points outside the overlay" in failure(small, dirs)
    (dirs[1] / "extra" / "etc" / "sneaky").unlink()
    os.symlink("gone", dirs[1] / "extra" / "etc" / "dangling")
    assert "overlays/extra/etc/dangling: symlink points nowhere (to gone)" in failure(small, dirs)


def test_symlink_inside_the_overlay_is_copied(tmp_path: Path, small: Cluster) -> None:
    dirs = lab(tmp_path, {"etc/real": "x\n"})
    os.symlink("real", dirs[1] / "extra" / "etc" / "alias")
    files = {f.path: f.data for f in render(small, dirs).files}
    assert files["/etc/alias"] == files["/etc/real"] == b"x\n"


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ("files:\n  etc/*: {mode: 0600}\n", "overlays/extra/manifest.yaml: files.etc/*.mode: 384 is not an octal mode "
                                            "in quotes (fix: write it as a string"),
        ("files:\n  etc/*: {mdoe: '0600'}\n", "overlays/extra/manifest.yaml: files.etc/*.mdoe: unknown key "
                                              "(fix: did you mean 'mode'?)"),
        ("owners: {}\n", "overlays/extra/manifest.yaml: owners: unknown key"),
        ("each:\n  etc: users\n", "overlays/extra/manifest.yaml: each.etc: 'users' is not 'VARIABLE in LIST'"),
        ("each:\n  etc: x in cluster.name\n", "overlays/extra/etc/a: each: 'cluster.name' is not a list"),
        ("files:\n  etc/*: {owner: 'Root!'}\n", "overlays/extra/manifest.yaml: owner 'Root!' (for etc/a) is not a "
                                                "user name"),
    ],
)
def test_bad_manifest(tmp_path: Path, small: Cluster, manifest: str, expected: str) -> None:
    assert expected in failure(small, lab(tmp_path, {"etc/a": "x\n"}, manifest=manifest))


def test_missing_overlay_directory_names_the_profile(tmp_path: Path, small: Cluster) -> None:
    dirs = lab(tmp_path, {})
    (dirs[0] / "extra.yaml").write_text("overlays: [nothere]\n")
    assert failure(small, dirs) == ("profiles/extra.yaml: overlays: no overlay directory overlays/nothere "
                                    "(fix: create overlays/nothere/ or remove it from the list)")
