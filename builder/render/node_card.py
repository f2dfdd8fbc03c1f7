"""A node card: the `node.txt` that makes a card flashed with a role image become one node, even a node
added to the cluster file after the image was built.

The role image's first-boot identity service (overlays/identity) picks its node from the inventory baked
into it. A node added later is not in that inventory; its card carries the node's whole identity instead:
the same entry a rebuilt role image's inventory would hold (its name and its node overlays' files, i.e.
hostname and NetworkManager keyfile with address/prefix, gateway and DNS), taken from the role's own
render plan, so there is no second way of rendering it. The first line is the node's name, so the card
is also a plain `node.txt` for images that know the node.
"""

from __future__ import annotations

import json
from pathlib import Path

from builder.config.grammar import shown
from builder.config.model import Cluster
from builder.errors import InputError
from builder.render.plan import render_plan

INVENTORY = "/etc/clusterbake/inventory.json"
CARD_KEYS = ("cluster", "role", "name", "files")


def node_card(cluster: Cluster, name: str, *, profiles_dir: Path, overlays_dir: Path) -> str:
    """The text of `node.txt` for `name`. Raises InputError for a node the cluster file does not have."""
    try:
        node = cluster.node(name)
    except KeyError:
        raise InputError(f"{cluster.source.name}: nodes: no node named {shown(name)}",
                         hint="add it to nodes: first, or use one of " + ", ".join(n.name for n in cluster.nodes)) \
            from None
    # No secrets: the card sits on the FAT boot partition, readable by anyone holding it.
    plan = render_plan(cluster, role=node.role, secrets=False, profiles_dir=profiles_dir, overlays_dir=overlays_dir)
    inventory = next((f for f in plan.files if f.path == INVENTORY), None)
    if inventory is None:
        raise InputError(f"{plan.source}: role {node.role!r} has no first-boot identity service ({INVENTORY})",
                         hint=f"make image NODE={node.name} bakes this node's identity instead")
    entry = next(n for n in json.loads(inventory.data)["nodes"] if n["name"] == node.name)
    card = {"cluster": cluster.name, "role": node.role, "name": node.name, "files": entry["files"]}
    dns = f", DNS {', '.join(str(d) for d in cluster.network.dns)}" if cluster.network.dns else ""
    return "\n".join([
        node.name,
        f"# clusterbake node card: {node.name} of {cluster.name} (role {node.role}), "
        f"{node.ip}/{cluster.network.subnet.prefixlen} via {cluster.network.gateway}{dns}.",
        f"# Put this file as node.txt next to clusterbake.txt on the boot partition of a card flashed with the "
        f"{node.role} image;",
        "# at its first boot the card becomes this node, whether or not the image was built before the node was",
        f"# added. Made by `clusterbake node-card {node.name}`; the line below is the node's identity (JSON),",
        "# checked by the identity service before it writes anything: make a new card rather than edit it.",
        json.dumps(card, separators=(",", ":"), sort_keys=True),
        "",
    ])
