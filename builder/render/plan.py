"""The render plan: exactly what one image gets, computed from the cluster, a role or node, and the data.

A NODE= image has its identity baked in: `node_overlays` are rendered for that node. A ROLE=
image fits every node of the role: `node_overlays` are rendered once per node into the
inventory, and the first-boot identity service (`role_image:` of the profiles) installs the
matching set on the board it finds itself on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from builder.config.grammar import shown
from builder.config.model import Cluster, Node, User
from builder.errors import InputError
from builder.render.access import ACCESS, WIREGUARD, access_addons, access_cmdline
from builder.render.cluster_secrets import munge_key
from builder.render.context import NFS_SERVER_UNIT, build_context
from builder.render.gpio import warn_pi5_power_button, with_button_hold
from builder.render.image_file import ImageFile
from builder.render.limits import RENDER_MEMORY, memory_budget
from builder.render.netboot_server import NETBOOT_SERVER, netboot_addons, netboot_server_files
from builder.render.overlays import Templates, render_overlay
from builder.render.platform import NO_BOOT_EDITS, Platform, check_platform_roles, on_boards, platform_of
from builder.render.profiles import Profile, load_profile
from builder.render.sudoers import sudoers_files

log = logging.getLogger("clusterbake")

BOOT_PREFIX = "/boot/firmware/"
MUNGE_KEY = "/etc/munge/munge.key"
USER_WIZARD = "userconfig.service"
CONSOLE_LOGIN = "getty@tty1.service"
RENAME_BANNER = "/etc/ssh/sshd_config.d/rename_user.conf"
PRESET_FILE = "/etc/systemd/system-preset/00-clusterbake.preset"
SLURMCTLD = "slurmctld.service"
ACCOUNTING = "accounting"       # the add-on profile `slurm.accounting: true` adds to the role running slurmctld
# The cluster-file key that switches each add-on profile on, for messages.
ADDON_KEYS = {ACCOUNTING: "slurm.accounting", ACCESS: "access", WIREGUARD: "access.wireguard",
              NETBOOT_SERVER: "nodes[].boot"}
TIME_SOURCE = "gpsd.service"    # what a role serving the cluster's time runs (see profiles/timeserver.yaml)


@dataclass(frozen=True)
class RenderPlan:
    role: str
    node: Node | None
    packages: tuple[str, ...]
    enable: tuple[str, ...]
    disable: tuple[str, ...]
    mask: tuple[str, ...]                       # never to start, whatever presets or packages say
    files: tuple[ImageFile, ...]                # sorted by path, so a directory comes before its contents
    remove: tuple[str, ...]                     # globs to delete from the image, before `files` are written
    config_txt_lines: tuple[str, ...]           # for apply_config_txt
    config_txt_boards: tuple[tuple[str, tuple[str, ...]], ...]   # (board, lines) of the boards this image runs on
    remove_serial_console: bool                 # for apply_cmdline
    cmdline_args: tuple[str, ...]               # for apply_cmdline(add=…)
    boot_files: tuple[tuple[str, bytes], ...]   # (name, data) for the FAT partition
    grow_mib: int
    profile: Profile
    platform: Platform                          # what the node runs on, and so what artefact it gets
    secrets: bool                               # the secrets policy: munge key and password hashes baked in
    users: tuple[User, ...] = field(repr=False)  # the cluster's accounts, password hashes only with `secrets`

    @property
    def target(self) -> str:
        """The node the image is for, else its role: what the image file is named after."""
        return self.node.name if self.node is not None else self.role

    @property
    def source(self) -> str:
        """What to blame in messages about the plan's content."""
        return self.profile.file


Target = tuple[str | None, str | None]     # (role, node): exactly one of the two


def plan_targets(cluster: Cluster, targets: Sequence[Target], *, secrets: bool, profiles_dir: Path,
                 overlays_dir: Path) -> tuple[Mapping[str, Profile], tuple[RenderPlan, ...]]:
    """The planning stage: the targets resolved, every role's profile loaded once, every check across
    the cluster run once, then each target rendered. Raises InputError for any bad input, before
    anything is built. Returns the profiles (read-only) and one plan per target, in order."""
    resolved = [_target(cluster, role, node) for role, node in targets]
    profiles = role_profiles(cluster, profiles_dir, roles=[role for role, _ in resolved])
    templates = Templates(overlays_dir)
    return profiles, tuple(render_target(cluster, profiles, templates, role, node, secrets=secrets)
                           for role, node in resolved)


def render_plan(cluster: Cluster, *, role: str | None = None, node: str | None = None, secrets: bool = True,
                profiles_dir: Path, overlays_dir: Path) -> RenderPlan:
    """Everything one image gets: the planning stage for a job of one target."""
    _, (plan,) = plan_targets(cluster, [(role, node)], secrets=secrets, profiles_dir=profiles_dir,
                              overlays_dir=overlays_dir)
    return plan


@contextlib.contextmanager
def _bounded(cluster: Cluster) -> Iterator[None]:
    """Templates are code: what they may take is bounded (render/limits.py); running out is bad input."""
    try:
        with memory_budget():
            yield
    except MemoryError:
        raise InputError(f"{cluster.source.name}: rendering the plan needs more memory than a render may use "
                         f"({RENDER_MEMORY >> 20} MiB)", hint="look for a template building a huge value") from None


def _target(cluster: Cluster, role: str | None, node: str | None) -> tuple[str, Node | None]:
    if (role is None) == (node is None):
        raise InputError("give exactly one of a role and a node", hint="make image ROLE=compute or NODE=node01")
    if node is not None:
        target = _node(cluster, node)
        return target.role, target
    return str(role), None


def role_profiles(cluster: Cluster, profiles_dir: Path, roles: Sequence[str] = ()) -> Mapping[str, Profile]:
    """Every role's profile of the cluster (and of `roles`), with the add-ons the cluster file
    switches on for it, each loaded once; then the checks across the cluster, once."""
    with _bounded(cluster):
        profiles = {r: _role_profile(cluster, profiles_dir, r) for r in dict.fromkeys((*cluster.roles, *roles))}
    _check_cluster_roles(cluster, profiles)
    _check_fileserver_role(cluster, profiles)
    check_platform_roles(cluster, profiles)
    return MappingProxyType(profiles)


def render_target(cluster: Cluster, profiles: Mapping[str, Profile], templates: Templates, role: str,
                  target: Node | None, *, secrets: bool) -> RenderPlan:
    """One target's plan from profiles already loaded and checked: rendering only."""
    with _bounded(cluster):
        return _render_target(cluster, profiles, templates, role, target, secrets=secrets)


def _render_target(cluster: Cluster, profiles: Mapping[str, Profile], templates: Templates, role: str,
                   target: Node | None, *, secrets: bool) -> RenderPlan:
    profile = profiles[role]
    platform = platform_of(target)
    members = (target,) if target is not None else _role_image_members(cluster, role)
    if not members:
        log.warning("no node of %s has role %s: the image will boot on DHCP with a serial-derived name",
                    cluster.source.name, role)
    warn_pi5_power_button(profile.gpio, members)

    context = build_context(cluster, profiles, role=role, node=target, secrets=secrets)
    overlays = profile.overlays
    packages, enable, disable = profile.packages, profile.enable, profile.disable
    if target is None:
        context["inventory"] = _inventory(cluster, dict(context), profile, templates, members)
        extra = profile.role_image
        overlays = _add(overlays, extra.overlays)
        packages = _add(packages, extra.packages)
        enable = _add(tuple(u for u in enable if u not in extra.disable), extra.enable)
        disable = _add(tuple(u for u in disable if u not in extra.enable), extra.disable)
    else:
        overlays = _add(overlays, profile.node_overlays)
    mask: tuple[str, ...] = ()
    remove = profile.remove
    if cluster.first_user is not None:
        # The state userconf-pi's `cancel-rename` leaves: a login prompt on tty1, no console
        # wizard (it would block the boot asking for a user the cluster file already names),
        # no SSH banner saying no user is set up. Masked, so no first-boot preset revives it.
        enable = _add(tuple(u for u in enable if u != USER_WIZARD), (CONSOLE_LOGIN,))
        disable = _add(disable, (USER_WIZARD,))
        mask = (USER_WIZARD,)
        remove = _add(remove, (RENAME_BANNER,))
    overlays, packages = platform.overlays(overlays), platform.packages(packages)
    enable, disable, mask = platform.units(enable), platform.units(disable), platform.units(mask)

    rendered: dict[str, ImageFile] = {}
    for name in overlays:
        for file in render_overlay(templates, name, context, wanted_by=profile.file):
            if file.path in rendered:
                # A later overlay replaces an earlier one's file: how `time-server` overrides `time-client`.
                log.debug("%s replaces %s", file.source, rendered[file.path].source)
            rendered[file.path] = file
    rendered = {path: file for path, file in rendered.items() if platform.keeps(file)}
    rendered[PRESET_FILE] = _presets(enable, (*disable, *mask), profile.file)
    rendered.update((f.path, f) for f in sudoers_files(cluster, secrets=secrets))
    rendered.update((f.path, f) for f in netboot_server_files(cluster, role))
    if "munge" in packages:
        if secrets:
            rendered[MUNGE_KEY] = ImageFile(MUNGE_KEY, munge_key(cluster.secrets_dir), 0o400, "munge", "munge",
                                            source=str(cluster.secrets_dir / "munge.key"))
        else:
            # munge's postinst makes a random key; a release image must not carry one.
            remove = _add(remove, (MUNGE_KEY,))
    boot = tuple((f.path[len(BOOT_PREFIX):], f.data) for f in rendered.values()
                 if f.path.startswith(BOOT_PREFIX) and not f.directory)
    files = tuple(sorted((f for f in rendered.values() if not f.path.startswith(BOOT_PREFIX)),
                         key=lambda f: f.path))
    plan = RenderPlan(
        role=role,
        node=target,
        packages=packages,
        enable=enable,
        disable=disable,
        mask=mask,
        files=files,
        remove=remove,
        config_txt_lines=with_button_hold(profile.config_txt, cluster.power_button_hold_ms),
        config_txt_boards=tuple((board, with_button_hold(lines, cluster.power_button_hold_ms))
                                for board, lines in _boards_lines(profile, members)),
        remove_serial_console=profile.remove_serial_console,
        cmdline_args=_add(profile.cmdline, access_cmdline(cluster, role)),
        boot_files=tuple(sorted(boot)),
        grow_mib=profile.grow_mib,
        profile=profile,
        platform=platform,
        secrets=secrets,
        users=cluster.users if secrets else tuple(replace(u, password_hash=None) for u in cluster.users),
    )
    return plan if platform.boot_partition else replace(plan, **NO_BOOT_EDITS)


def _role_profile(cluster: Cluster, profiles_dir: Path, role: str) -> Profile:
    """A role's profile with the add-ons the cluster file switches on for it: with `slurm.accounting`,
    `accounting` for the role running slurmctld; with `access:`, `access` (and `wireguard`) for the door's;
    with diskless nodes, `netboot-server` for the file server's."""
    profile = load_profile(profiles_dir, role)
    addons = (*access_addons(cluster, role), *netboot_addons(cluster, role))
    if cluster.slurm_accounting and profile.runs(SLURMCTLD):
        addons = (ACCOUNTING, *addons)
    if not addons:
        return profile
    for addon in addons:
        if not os.path.lexists(profiles_dir / f"{addon}.yaml"):
            raise InputError(f"{cluster.source.name}: {ADDON_KEYS[addon]}: needs the profile "
                             f"{profiles_dir.name}/{addon}.yaml, which is missing",
                             hint=f"restore {addon}.yaml from clusterbake's profiles/, or remove {ADDON_KEYS[addon]}:")
    return load_profile(profiles_dir, role, addons=addons)


def _role_image_members(cluster: Cluster, role: str) -> tuple[Node, ...]:
    """The boards a role image is for; a role whose nodes are all containers has no SD card image."""
    nodes = cluster.nodes_with_role(role)
    boards = on_boards(nodes)
    if nodes and not boards:
        raise InputError(f"{cluster.source.name}: nodes: every node of role {role!r} is a container "
                         f"({', '.join(n.name for n in nodes)}), which a role image (an SD card) cannot serve",
                         hint=f"build the container's template by node: make image NODE={nodes[0].name}")
    return boards


def _node(cluster: Cluster, name: str) -> Node:
    try:
        return cluster.node(name)
    except KeyError:
        raise InputError(f"{cluster.source.name}: nodes: no node named {shown(name)}",
                         hint="use one of " + ", ".join(n.name for n in cluster.nodes)) from None


def _check_cluster_roles(cluster: Cluster, profiles: Mapping[str, Profile]) -> None:
    """What the cluster file and the profiles say together: one slurmctld, a time server that serves time."""
    file = cluster.source.name
    controller = cluster.node(cluster.slurm_controller)
    if not profiles[controller.role].runs(SLURMCTLD):
        raise InputError(
            f"{file}: slurm.controller: {controller.name!r} has role {controller.role!r}, "
            f"whose profile does not enable slurmctld.service",
            hint="name a node whose role runs slurmctld (e.g. the controller)")
    for i, node in enumerate(cluster.nodes):
        if node.name != controller.name and profiles[node.role].runs(SLURMCTLD):
            raise InputError(
                f"{file}: nodes[{i}].role: {node.name!r} would run a second slurmctld (role {node.role!r}); "
                f"slurm.controller is {controller.name!r}",
                hint="give the cluster one node whose role runs slurmctld")
    server = cluster.node(cluster.time_server)
    if not profiles[server.role].runs(TIME_SOURCE):
        raise InputError(
            f"{file}: time.server: {server.name!r} has role {server.role!r}, whose profile does not enable "
            f"{TIME_SOURCE}: it serves no time", hint="name the node with the GPS receiver (e.g. role timeserver)")
    if not any(profiles[n.role].runs("slurmd.service") for n in cluster.nodes):
        log.warning("%s: no node runs slurmd: the partition %s has no nodes to run jobs on", file,
                    cluster.slurm_partition)


def _check_fileserver_role(cluster: Cluster, profiles: Mapping[str, Profile]) -> None:
    """One NFS server, the one `fileserver.node` names: another would export its own empty /home
    and mount nothing. (Without `fileserver:` an NFS server's role exports nothing: homes stay local.)"""
    if cluster.fileserver is None:
        return
    server = cluster.node(cluster.fileserver.node)
    if not profiles[server.role].runs(NFS_SERVER_UNIT):
        raise InputError(
            f"{cluster.source.name}: fileserver.node: {server.name!r} has role {server.role!r}, "
            f"whose profile does not enable {NFS_SERVER_UNIT}",
            hint="give that node a role that includes fileserver (e.g. auxiliary)")
    for i, node in enumerate(cluster.nodes):
        if node.name != server.name and profiles[node.role].runs(NFS_SERVER_UNIT):
            raise InputError(
                f"{cluster.source.name}: nodes[{i}].role: {node.name!r} would run a second NFS server (role "
                f"{node.role!r} enables {NFS_SERVER_UNIT}), exporting its own empty directories; "
                f"fileserver.node is {server.name!r}",
                hint="give this node a role without fileserver (e.g. compute or timeserver)")


def _inventory(cluster: Cluster, shared: Mapping[str, Any], profile: Profile, templates: Templates,
               members: tuple[Node, ...]) -> dict[str, Any]:
    """What the first-boot identity service needs: each candidate node and its pre-rendered files.
    `shared` is the role image's own context (no node): only `node` changes from one node to the next."""
    nodes = []
    by_name = {n["name"]: n for n in shared["nodes"]}
    for member in members:
        scope = {**shared, "node": by_name[member.name]}
        files = [file for name in profile.node_overlays
                 for file in render_overlay(templates, name, scope, wanted_by=profile.file)]
        for file in files:
            if file.directory or file.path.startswith(BOOT_PREFIX):
                raise InputError(f"{file.source}: node overlays may only hold files of the root file system",
                                 hint="move it to an overlay listed under overlays:")
        nodes.append({
            "name": member.name,
            "serial": member.serial,
            "mac": member.mac,
            "files": [{"path": f.path, "mode": f.mode, "owner": f.owner, "group": f.group, "text": f.data.decode()}
                      for f in files],
        })
    return {"cluster": cluster.name, "role": profile.role, "nodes": nodes,
            "json": json.dumps({"cluster": cluster.name, "role": profile.role, "nodes": nodes}, indent=2)}


def _presets(enable: tuple[str, ...], disable: tuple[str, ...], source: str) -> ImageFile:
    """A preset file that agrees with the role: systemd applies presets at a first boot
    (machine-id `uninitialized`), and Debian's own presets would enable e.g. timesyncd again.
    Presets in /etc come before those in /usr/lib, and the first matching line wins."""
    lines = ["# clusterbake: what this role runs and what it must not; read at first boot (systemd.preset(5))."]
    for unit in enable:
        # A template's instance is named after the template: `enable getty@.service tty1`.
        instance = re.fullmatch(r"(.+)@(.+)\.([a-z]+)", unit)
        lines.append(f"enable {instance[1]}@.{instance[3]} {instance[2]}" if instance else f"enable {unit}")
    lines += [f"disable {unit}" for unit in dict.fromkeys(disable) if unit not in enable]
    return ImageFile(PRESET_FILE, ("\n".join(lines) + "\n").encode(), source=source)


def _boards_lines(profile: Profile, members: tuple[Node, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Each board's own config.txt lines, for the boards among the image's nodes (every board when it has
    none yet); a role image whose nodes mix Pi 4 and Pi 5 gets both, each under its `[pi4]`/`[pi5]` filter."""
    boards = {node.board for node in members}
    return tuple((board, lines) for board, lines in profile.config_txt_boards if not boards or board in boards)


def _add(first: tuple[str, ...], more: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*first, *more)))
