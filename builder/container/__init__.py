"""Proxmox LXC container templates: a node whose platform is `proxmox-lxc` (see builder.render.platform).

base (debootstrap, Debian trixie amd64) → role root (the plan's packages, cached by recipe) →
template (accounts, rendered files, services) written as out/<cluster>-<node>.tar.zst.
"""

from builder.container.pct import pct_create_command, pct_instructions
from builder.container.template import build_container

__all__ = ["build_container", "pct_create_command", "pct_instructions"]
