"""What makes a subnet, a gateway or a name server one a cluster can use.

The subnet lands in NFS exports (`/home 10.0.0.0/24(rw,…)`) and chrony's `allow`: a subnet of
"everyone" (`0.0.0.0/0`), of the machine itself (loopback), of a multicast group or of link-local
self-assigned addresses would open both to what is not the cluster, or route nowhere. Each
function returns None or a (problem, fix) pair; the caller names the key.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

MIN_PREFIX = 8      # the widest cluster subnet: a /8 holds 16 million addresses
MAX_PREFIX = 30     # the narrowest with a network, a broadcast, a gateway and one node

_SPECIAL_SUBNETS = (
    (IPv4Network("0.0.0.0/8"), "is 'this network' (0.0.0.0/8), which no host may use"),
    (IPv4Network("127.0.0.0/8"), "is loopback: the addresses of every machine itself"),
    (IPv4Network("169.254.0.0/16"), "is link-local: self-assigned addresses, not routed, not for fixed IPs"),
    (IPv4Network("224.0.0.0/4"), "is multicast: group addresses, never a host's"),
    (IPv4Network("240.0.0.0/4"), "is reserved (240.0.0.0/4 and the broadcast address): no host may use it"),
)
SUBNET_FIX = "use a private subnet, e.g. 10.0.0.0/24 or 192.168.1.0/24"


def subnet_problem(subnet: IPv4Network) -> tuple[str, str] | None:
    if subnet.prefixlen < MIN_PREFIX:
        return (f"is /{subnet.prefixlen}: wider than /{MIN_PREFIX}, it would export /home and serve time "
                "to much of the Internet", SUBNET_FIX)
    if subnet.prefixlen > MAX_PREFIX:
        return (f"is /{subnet.prefixlen}: it has no room for a gateway and nodes besides its network and "
                f"broadcast addresses (at most /{MAX_PREFIX})", SUBNET_FIX)
    for special, problem in _SPECIAL_SUBNETS:
        if subnet.overlaps(special):
            return problem, SUBNET_FIX
    return None


def gateway_problem(gateway: IPv4Address, subnet: IPv4Network) -> tuple[str, str] | None:
    if gateway not in subnet:
        return f"is outside network.subnet {subnet}", f"the router's address in {subnet}"
    if gateway in (subnet.network_address, subnet.broadcast_address):
        return (f"is the {'network' if gateway == subnet.network_address else 'broadcast'} address of {subnet}, "
                "not a router's", f"the router's own address, e.g. {subnet.network_address + 1}")
    return None


def dns_problem(server: IPv4Address) -> tuple[str, str] | None:
    for special, problem in _SPECIAL_SUBNETS:
        if server in special:
            if special.network_address == IPv4Address("127.0.0.0"):
                problem += "; the nodes run no name server of their own"
            return problem, "the address of a name server the nodes can reach, e.g. the router's"
    return None
