"""Read the image's own systemd units, so the cluster test starts what a booting node would.

Nothing here runs systemd: it reads `/etc/systemd/system/*.wants/` and `*.requires/` for what is enabled and the
unit files (with their drop-ins) for how a service starts — ExecStartPre/ExecStart, User,
Group, EnvironmentFile, RuntimeDirectory and path conditions — and turns that into argv lists.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

UNIT_DIRS = ("etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system")
WANTS_DIRS = ("etc/systemd/system",)


@dataclass
class Unit:
    name: str
    exec_start_pre: list[list[str]] = field(default_factory=list)
    exec_start: list[list[str]] = field(default_factory=list)
    user: str | None = None
    group: str | None = None
    runtime_directories: list[str] = field(default_factory=list)
    runtime_mode: str = "0755"
    environment: dict[str, str] = field(default_factory=dict)
    conditions: list[str] = field(default_factory=list)  # ConditionPathExists values, "!" negates
    service_type: str = "simple"


def enabled_units(root: Path) -> set[str]:
    """Units that some unit wants or requires (`systemctl enable`'s links): what systemd would start at boot."""
    found: set[str] = set()
    for base in WANTS_DIRS:
        for wants in [*(root / base).glob("*.wants"), *(root / base).glob("*.requires")]:
            found.update(entry.name for entry in wants.iterdir())
    return found


def _read_unit_text(root: Path, name: str) -> list[str]:
    """The unit file followed by its drop-ins, in the order systemd applies them."""
    texts = []
    for base in UNIT_DIRS:
        path = root / base / name
        if path.is_file() or path.is_symlink():
            real = _inside(root, path)
            if real.is_file():
                texts.append(real.read_text())
                break
    else:
        raise FileNotFoundError(f"no unit {name} in the image")
    dropins: dict[str, Path] = {}
    for base in reversed(UNIT_DIRS):
        folder = root / base / f"{name}.d"
        if folder.is_dir():
            for conf in folder.glob("*.conf"):
                dropins[conf.name] = conf
    texts.extend(dropins[key].read_text() for key in sorted(dropins))
    return texts


def _inside(root: Path, path: Path) -> Path:
    """Follow a symlink the way the node would: absolute targets are inside the node's root."""
    seen = 0
    while path.is_symlink() and seen < 16:
        target = os.readlink(path)
        path = root / target.lstrip("/") if target.startswith("/") else path.parent / target
        seen += 1
    return path


def read_unit(root: Path, name: str) -> Unit:
    unit = Unit(name=name)
    env_files: list[str] = []
    for text in _read_unit_text(root, name):
        for raw in _logical_lines(text):
            key, _, value = raw.partition("=")
            key, value = key.strip(), value.strip()
            if key == "ExecStart" and not value:
                unit.exec_start.clear()  # an empty assignment resets the list (drop-in idiom)
            elif key == "ExecStartPre" and not value:
                unit.exec_start_pre.clear()
            elif key in ("ExecStart", "ExecStartPre"):
                argv = shlex.split(value.lstrip("-@!+:"))
                (unit.exec_start if key == "ExecStart" else unit.exec_start_pre).append(argv)
            elif key == "User":
                unit.user = value
            elif key == "Group":
                unit.group = value
            elif key == "RuntimeDirectory":
                unit.runtime_directories.extend(value.split())
            elif key == "RuntimeDirectoryMode":
                unit.runtime_mode = value
            elif key == "EnvironmentFile":
                env_files.append(value)
            elif key == "Environment":
                for item in shlex.split(value):
                    k, _, v = item.partition("=")
                    unit.environment[k] = v
            elif key == "ConditionPathExists":
                unit.conditions.append(value)
            elif key == "Type":
                unit.service_type = value
    for spec in env_files:
        optional = spec.startswith("-")
        path = _inside(root, root / spec.lstrip("-").lstrip("/"))
        if not path.is_file():
            if optional:
                continue
            raise FileNotFoundError(f"{name}: EnvironmentFile {spec} is missing")
        unit.environment.update(_parse_env(path.read_text()))
    return unit


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith(("#", ";", "["))):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    return lines


def _parse_env(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        parts = shlex.split(value) if value else [""]
        env[key.strip().removeprefix("export ").strip()] = " ".join(parts)
    return env


def expand(argv: list[str], env: dict[str, str]) -> list[str]:
    """systemd's $VAR (split into words) and ${VAR} (one word) in ExecStart lines."""
    out: list[str] = []
    for word in argv:
        whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if whole:
            out.extend(env.get(whole.group(1), "").split())
            continue
        out.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""), word))
    return out


def conditions_hold(root: Path, unit: Unit) -> bool:
    """systemd's rule: every plain condition holds and, if there are triggering ones (`|`), at least one of them."""
    triggering = []
    for condition in unit.conditions:
        trigger = condition.startswith("|")
        condition = condition.removeprefix("|")
        negate = condition.startswith("!")
        holds = (root / condition.lstrip("!").lstrip("/")).exists() != negate
        if trigger:
            triggering.append(holds)
        elif not holds:
            return False
    return not triggering or any(triggering)
