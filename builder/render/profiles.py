"""Profiles: what a role is, read from `profiles/<role>.yaml` and merged with what it includes.

Merge order is `common`, then every include depth-first in the order listed, then the role
itself; each profile appears once. Lists are concatenated in that order without duplicates,
`settings` are overlaid (the later profile wins), `grow_mib` adds up, a unit's last mention
decides whether it is enabled or disabled, and `remove_serial_console` is on if any profile
asks for it. `config_txt` and `cmdline` lines are Jinja templates over the merged `settings`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError

from builder.config.grammar import control_problem, shown
from builder.config.reader import Reader
from builder.config.roles import COMMON, ROLE_RE, available_roles, role_problem
from builder.errors import InputError
from builder.input_files import inside, read_yaml_file
from builder.render.error_labels import labelled
from builder.render.gpio import GpioClaim, check_gpio, claims_of_line
from builder.render.sandbox import problem as template_problem
from builder.render.sandbox import render, sandbox

BOARDS = ("pi4", "pi5")    # config.txt's model filters for the boards of BOARD_MODELS
PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
UNIT_RE = re.compile(r"[A-Za-z0-9:_.@\\-]{1,255}")
SETTING_RE = re.compile(r"[a-z_][a-z0-9_]{0,63}")
LIST_KEYS = ("packages", "enable", "disable", "overlays")


@dataclass(frozen=True)
class Extras:
    """The lists a profile adds only to role images (`role_image:`)."""

    packages: tuple[str, ...] = ()
    enable: tuple[str, ...] = ()
    disable: tuple[str, ...] = ()
    overlays: tuple[str, ...] = ()


@dataclass(frozen=True)
class PackageStep:
    """One profile of a role's merge order, as a layer of packages: what is installed up to it."""

    profile: str
    packages: tuple[str, ...]              # every package of the profiles up to and including this one
    grow_mib: int                          # this profile's own grow_mib


@dataclass(frozen=True)
class Profile:
    """One role, merged with `common` and its includes."""

    role: str
    file: str                              # the role's own profile, named in its folder: what messages blame
    sources: tuple[str, ...]               # profile names in merge order, e.g. common, compute, timeserver
    description: str = ""
    packages: tuple[str, ...] = ()
    enable: tuple[str, ...] = ()
    disable: tuple[str, ...] = ()
    overlays: tuple[str, ...] = ()
    node_overlays: tuple[str, ...] = ()    # rendered per node: into NODE= images, into the inventory of ROLE= ones
    role_image: Extras = field(default_factory=Extras)
    settings: Mapping[str, Any] = field(default_factory=dict)
    config_txt: tuple[str, ...] = ()
    config_txt_boards: tuple[tuple[str, tuple[str, ...]], ...] = ()   # (board, lines), for `[pi4]`/`[pi5]`
    cmdline: tuple[str, ...] = ()
    remove_serial_console: bool = False
    gpio: tuple[GpioClaim, ...] = ()       # every claim, from `gpio:` and from config.txt lines
    remove: tuple[str, ...] = ()
    grow_mib: int = 0
    package_steps: tuple[PackageStep, ...] = ()   # in merge order: the layers a role image is built from

    def runs(self, unit: str) -> bool:
        """Whether the role's images enable `unit` (role-image extras included)."""
        return unit_name(unit) in self.enable + self.role_image.enable


@dataclass
class _Raw:
    """One profile file as written, before merging."""

    name: str
    path: Path
    description: str
    include: list[str]
    lists: dict[str, list[str]]
    node_overlays: list[str]
    role_lists: dict[str, list[str]]
    settings: dict[str, Any]
    config_txt: list[str]
    config_txt_boards: dict[str, list[str]]
    cmdline: list[str]
    remove_serial_console: bool
    gpio: dict[int, str]
    remove: list[str]
    grow_mib: int


def load_profile(profiles_dir: Path, role: str, addons: tuple[str, ...] = ()) -> Profile:
    """Read `role` and everything it includes (and `common`), then `addons`, check it, and merge it."""
    profiles_dir = Path(profiles_dir)
    no_role = role_problem(profiles_dir, role)
    if no_role is not None:
        raise InputError(no_role[0], hint=no_role[1])
    order: list[_Raw] = []
    seen: set[str] = set()
    if _exists(profiles_dir / f"{COMMON}.yaml"):
        _collect(profiles_dir, COMMON, (), order, seen)
    _collect(profiles_dir, role, (), order, seen)
    for addon in addons:
        _collect(profiles_dir, addon, (), order, seen)
    return _merge(role, f"{profiles_dir.name}/{role}.yaml", order)


def _collect(profiles_dir: Path, name: str, chain: tuple[str, ...], order: list[_Raw], seen: set[str]) -> None:
    """Depth-first: includes before the profile that includes them; each profile once."""
    if name in chain:
        cycle = " -> ".join((*chain[chain.index(name):], name))
        raise InputError(f"{profiles_dir.name}/{chain[-1]}.yaml: include: include cycle {cycle}",
                         hint="remove one of these includes")
    if name in seen:
        return
    raw = _read(profiles_dir / f"{name}.yaml", name)
    for included in raw.include:
        if included == COMMON:
            continue  # every profile has it already
        if not _exists(profiles_dir / f"{included}.yaml"):
            where = f"{profiles_dir.name}/{name}.yaml"
            raise InputError(f"{where}: include: no profile {profiles_dir.name}/{included}.yaml",
                             hint="use one of " + ", ".join(available_roles(profiles_dir)))
        _collect(profiles_dir, included, (*chain, name), order, seen)
    seen.add(name)
    order.append(raw)


def _exists(path: Path) -> bool:
    """Whether the profile is there, whatever it is: reading it then says if it is no regular file."""
    return os.path.lexists(path)


def _read(path: Path, name: str) -> _Raw:
    label = f"{path.parent.name}/{path.name}"
    real = inside(path.parent.resolve(), path, label)   # a profile linking to a file elsewhere is not read
    with labelled(path, label):
        return _read_profile(path, real, name)


def _read_profile(path: Path, real: Path, name: str) -> _Raw:
    data = read_yaml_file(real, path.name, nofollow=True)
    top = Reader({} if data is None else data, path)
    raw = _Raw(
        name=name,
        path=path,
        description=top.text("description", ""),
        include=_names(top, "include", ROLE_RE, "a profile name"),
        lists={key: _list(top, key) for key in LIST_KEYS},
        node_overlays=_names(top, "node_overlays", ROLE_RE, "an overlay name"),
        role_lists={},
        settings=_settings(top),
        config_txt=_strings(top, "config_txt"),
        config_txt_boards=_board_lines(top),
        cmdline=_strings(top, "cmdline"),
        remove_serial_console=top.flag("remove_serial_console", False),
        gpio=_gpio(top),
        remove=_strings(top, "remove"),
        grow_mib=top.integer("grow_mib", 0),
    )
    extra = top.sub("role_image", {})
    raw.role_lists = {key: _list(extra, key) for key in LIST_KEYS}
    extra.done()
    for where, remove in enumerate(raw.remove):
        if not remove.startswith("/") or ".." in remove.split("/"):
            top.fail(f"{shown(remove)} is not an absolute path inside the image", key=f"remove[{where}]")
    top.done()
    for lists, prefix in ((raw.lists, ""), (raw.role_lists, "role_image.")):
        both = set(lists["enable"]) & set(lists["disable"])
        if both:
            top.fail(f"{', '.join(sorted(both))} is both enabled and disabled", path=f"{prefix}enable",
                     hint="keep it in one of the two lists")
    return raw


def _list(r: Reader, key: str) -> list[str]:
    if key == "packages":
        return _names(r, key, PACKAGE_RE, "a Debian package name")
    if key == "overlays":
        return _names(r, key, ROLE_RE, "an overlay name")
    return [unit_name(u) for u in _names(r, key, UNIT_RE, "a systemd unit name")]


def _names(r: Reader, key: str, pattern: re.Pattern[str], expected: str) -> list[str]:
    values = r.items(key, [])
    for i, value in enumerate(values):
        if not isinstance(value, str) or not pattern.fullmatch(value):
            r.fail(f"{shown(value)} is not {expected}", key=f"{key}[{i}]")
    return list(values)


def _strings(r: Reader, key: str) -> list[str]:
    values = r.items(key, [])
    for i, value in enumerate(values):
        if not isinstance(value, str) or control_problem(value):
            r.fail(f"{shown(value)} is not one line of text without control characters", key=f"{key}[{i}]")
    return list(values)


def _board_lines(r: Reader) -> dict[str, list[str]]:
    boards = r.sub("config_txt_boards", {})
    lines = {board: _strings(boards, board) for board in BOARDS}
    boards.done()
    return {board: values for board, values in lines.items() if values}


def _settings(r: Reader) -> dict[str, Any]:
    settings = r.sub("settings", {})
    values = dict(settings.data)
    for key, value in values.items():
        if not isinstance(key, str) or not SETTING_RE.fullmatch(key):
            settings.fail("is not a setting name of [a-z_][a-z0-9_]*", key=shown(key))
        scalars = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str | int | float | bool) for v in scalars):
            settings.fail(f"{shown(value)} is not a string, number, true/false or a list of them", key=key)
        for v in scalars:
            if isinstance(v, str) and control_problem(v):
                settings.fail(f"{shown(v)} {control_problem(v)}", key=key,
                              hint="settings land in configuration files: one line each")
    return values


def _gpio(r: Reader) -> dict[int, str]:
    gpio = r.sub("gpio", {})
    claims: dict[int, str] = {}
    for pin, purpose in gpio.data.items():
        if isinstance(pin, bool) or not isinstance(pin, int) or not 0 <= pin <= 27:
            gpio.fail("is not a GPIO number 0-27 (BCM numbering, not the physical pin)", key=str(pin))
        if not isinstance(purpose, str) or not purpose:
            gpio.fail(f"{shown(purpose)} is not a description of what uses the pin", key=str(pin))
        claims[pin] = purpose
    return claims


def unit_name(unit: str) -> str:
    """`ssh` and `ssh.service` are the same unit; spell it the long way everywhere."""
    return unit if "." in unit else f"{unit}.service"


def _merge(role: str, file: str, order: list[_Raw]) -> Profile:
    settings: dict[str, Any] = {}
    for raw in order:
        settings.update(raw.settings)
    lists = {key: _union(raw.lists[key] for raw in order) for key in ("packages", "overlays")}
    enable, disable = _units(order, lambda raw: raw.lists)
    role_enable, role_disable = _units(order, lambda raw: raw.role_lists)
    config_txt: list[str] = []
    cmdline: list[str] = []
    claims: list[GpioClaim] = []
    for raw in order:
        for key, target in (("config_txt", config_txt), ("cmdline", cmdline)):
            for i, template in enumerate(getattr(raw, key)):
                line = _expand(raw, f"{key}[{i}]", template, settings)
                if line and line not in target:
                    target.append(line)
                    if key == "config_txt":
                        claims.extend(claims_of_line(line, raw.name))
        claims.extend(GpioClaim(pin, purpose, raw.name) for pin, purpose in raw.gpio.items())
    by_board: dict[str, list[str]] = {}
    board_claims: dict[str, list[GpioClaim]] = {board: [] for board in BOARDS}
    for raw in order:
        for board, templates in raw.config_txt_boards.items():
            target = by_board.setdefault(board, [])
            for i, template in enumerate(templates):
                line = _expand(raw, f"config_txt_boards.{board}[{i}]", template, settings)
                if line and line not in target:
                    target.append(line)
                    board_claims[board].extend(claims_of_line(line, raw.name))
    # A board's own lines share the header with the lines for all boards, not with the other board's.
    for board in BOARDS:
        check_gpio(role, [*claims, *board_claims[board]])
    return Profile(
        role=role,
        file=file,
        sources=tuple(raw.name for raw in order),
        description=order[-1].description,
        packages=lists["packages"],
        enable=enable,
        disable=disable,
        overlays=lists["overlays"],
        node_overlays=_union(raw.node_overlays for raw in order),
        role_image=Extras(
            packages=_union(raw.role_lists["packages"] for raw in order),
            enable=role_enable,
            disable=role_disable,
            overlays=_union(raw.role_lists["overlays"] for raw in order),
        ),
        settings=settings,
        config_txt=tuple(config_txt),
        config_txt_boards=tuple((board, tuple(by_board[board])) for board in BOARDS if by_board.get(board)),
        cmdline=tuple(cmdline),
        remove_serial_console=any(raw.remove_serial_console for raw in order),
        gpio=tuple(claims) + tuple(c for board in BOARDS for c in board_claims[board]),
        remove=_union(raw.remove for raw in order),
        grow_mib=sum(raw.grow_mib for raw in order),
        package_steps=_package_steps(order),
    )


def _package_steps(order: list[_Raw]) -> tuple[PackageStep, ...]:
    steps: list[PackageStep] = []
    for raw in order:
        so_far = steps[-1].packages if steps else ()
        steps.append(PackageStep(raw.name, _union((so_far, raw.lists["packages"])), raw.grow_mib))
    return tuple(steps)


def _union(lists: Iterable[Iterable[str]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(item for items in lists for item in items))


def _units(order: list[_Raw], pick: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A unit's last mention wins: `timeserver` may enable what `common` disables."""
    state: dict[str, bool] = {}
    for raw in order:
        lists = pick(raw)
        for unit in lists["enable"]:
            state.pop(unit, None)
            state[unit] = True
        for unit in lists["disable"]:
            state.pop(unit, None)
            state[unit] = False
    return (tuple(u for u, on in state.items() if on), tuple(u for u, on in state.items() if not on))


def _expand(raw: _Raw, key: str, template: str, settings: Mapping[str, Any]) -> str:
    try:
        line = render(sandbox().from_string(template), {"settings": settings}).strip()
    except Exception as exc:    # whatever the template raised: one line (see Templates in overlays.py)
        hint = "use {{ settings.NAME }} with a NAME from some profile's settings:"
        if not isinstance(exc, jinja2.TemplateError) or isinstance(exc, SecurityError):
            hint = "templates run in a sandbox, bounded in size, memory and time: " + hint
        raise InputError(f"{raw.path.parent.name}/{raw.path.name}: {key}: {template_problem(exc)}", hint=hint) from None
    problem = control_problem(line)
    if problem is not None:
        raise InputError(f"{raw.path.parent.name}/{raw.path.name}: {key}: renders to {shown(line)}, which {problem}",
                         hint="config.txt and cmdline.txt take one line per entry")
    return line
