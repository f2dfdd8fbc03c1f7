"""The hostile inputs of round two (issue 23), by class: each fails on the code before it, and each
makes one mistake in an otherwise valid sandbox (see hostile_cases.py for the first round)."""

from __future__ import annotations

from typing import Any

from hostile_cases import at, both
from hostile_support import Case

# --- 2. networks that cannot be right ----------------------------------------------------------


def network(**values: Any) -> Any:
    def make(box: Any) -> None:
        box.data["network"].update(values)
    return make


NETWORKS: list[Case] = [
    Case("subnet-everyone", network(subnet="0.0.0.0/0", gateway="10.0.0.1"), "network.subnet"),
    Case("subnet-half-internet", network(subnet="0.0.0.0/1", gateway="10.0.0.1"), "network.subnet"),
    Case("subnet-loopback", network(subnet="127.0.0.0/24", gateway="127.0.0.1"), "network.subnet"),
    Case("subnet-multicast", network(subnet="224.0.0.0/24", gateway="224.0.0.1"), "network.subnet"),
    Case("subnet-link-local", network(subnet="169.254.0.0/24", gateway="169.254.0.1"), "network.subnet"),
    Case("subnet-reserved", network(subnet="240.0.0.0/24", gateway="240.0.0.1"), "network.subnet"),
    Case("subnet-this-network", network(subnet="0.0.0.0/24", gateway="0.0.0.1"), "network.subnet"),
    Case("subnet-slash-31", network(subnet="10.0.0.0/31", gateway="10.0.0.1"), "network.subnet"),
    Case("subnet-slash-32", network(subnet="10.0.0.1/32", gateway="10.0.0.1"), "network.subnet"),
    Case("gateway-network-address", network(gateway="10.0.0.0"), "network.gateway"),
    Case("gateway-broadcast-address", network(gateway="10.0.0.255"), "network.gateway"),
    Case("dns-unspecified", network(dns=["0.0.0.0"]), "network.dns[0]"),
    Case("dns-broadcast", network(dns=["10.0.0.1", "255.255.255.255"]), "network.dns[1]"),
    Case("dns-multicast", network(dns=["224.0.0.251"]), "network.dns[0]"),
    Case("dns-loopback", network(dns=["127.0.0.53"]), "network.dns[0]"),
    Case("dns-link-local", network(dns=["169.254.1.1"]), "network.dns[0]"),
]

ROUND2: list[Case] = [*NETWORKS]

_ = (at, both)   # the first round's helpers, used by the classes below
