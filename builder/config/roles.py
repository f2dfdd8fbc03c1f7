"""Which names are roles: one rule for the cluster file's loader and the profile loader.

A role is a profile `<profiles_dir>/<role>.yaml` with a name of ROLE_RE that is neither `common`
(a part of every role) nor an add-on (merged into a role by a cluster-file switch).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from builder.config.grammar import shown

COMMON = "common"
# Add-on profiles: merged into a role by a cluster-file switch (after the role's own), never roles themselves.
ADDONS = ("accounting", "access", "wireguard", "netboot-server")
ROLE_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def available_roles(profiles_dir: Path) -> list[str]:
    return sorted(p.stem for p in Path(profiles_dir).glob("*.yaml") if p.stem not in (COMMON, *ADDONS))


def role_problem(profiles_dir: Path, role: str) -> tuple[str, str] | None:
    """(problem, hint) when `role` is no role of `profiles_dir`, else None."""
    profiles_dir = Path(profiles_dir)
    if (ROLE_RE.fullmatch(role) and role not in (COMMON, *ADDONS)
            and os.path.lexists(profiles_dir / f"{role}.yaml")):   # what it is: reading it says
        return None
    return (f"role {shown(role)} has no profile {profiles_dir.name}/{role}.yaml",
            "use one of " + ", ".join(available_roles(profiles_dir)) + " or add that profile")
