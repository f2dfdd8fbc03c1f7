"""What `access:` means for the images: the door's add-on profiles, its template values, the Wi-Fi passphrase.

The door's role gets the add-on profile `access` (nftables, dnsmasq, the uplink's keyfile,
forwarding), and `wireguard` too when the cluster file has peers; every other role gets nothing
but the door as its gateway and DNS, which the cluster file already says (network.gateway/dns).
Add-ons are merged per role, so the door's role must be the door's alone.
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from builder.config.access import WIFI_PSK, WIREGUARD_INTERFACE
from builder.config.model import Cluster
from builder.errors import InputError
from builder.input_files import read_bytes

ACCESS = "access"           # the add-on profile of the door's role
WIREGUARD = "wireguard"     # its second add-on, with access.wireguard
PSK_MAX_BYTES = 256


def access_addons(cluster: Cluster, role: str) -> tuple[str, ...]:
    """The add-on profiles `access:` merges into `role`: none unless it is the door's role."""
    access = cluster.access
    if access is None or cluster.node(access.node).role != role:
        return ()
    others = [n.name for n in cluster.nodes_with_role(role) if n.name != access.node]
    if others:
        raise InputError(
            f"{cluster.source.name}: access.node: {access.node}'s role {role!r} is also the role of "
            f"{', '.join(others)}, which would become doors too (the door's setup is built into its role's image)",
            hint=f"give {access.node} a role of its own (a profile that includes {role}), or choose another door")
    return (ACCESS, WIREGUARD) if access.wireguard is not None else (ACCESS,)


def access_cmdline(cluster: Cluster, role: str) -> tuple[str, ...]:
    """A Wi-Fi uplink's regulatory domain, as Raspberry Pi OS sets it (raspi-config writes the same)."""
    access = cluster.access
    if access is None or access.uplink.wifi is None or cluster.node(access.node).role != role:
        return ()
    return (f"cfg80211.ieee80211_regdom={access.uplink.wifi.country}",)


def access_values(cluster: Cluster, role: str, by_name: Mapping[str, dict[str, Any]], *,
                  secrets: bool) -> dict[str, Any] | None:
    """`access` for templates: None without `access:`; the Wi-Fi `psk` only in the door's image built with secrets."""
    access = cluster.access
    if access is None:
        return None
    uplink = access.uplink
    door = by_name[access.node]
    wifi = None
    if uplink.wifi is not None:
        psk = wifi_psk(cluster.secrets_dir) if secrets and door["role"] == role else None
        wifi = {"country": uplink.wifi.country, "ssid": uplink.wifi.ssid, "psk": psk}
    wireguard = None
    if access.wireguard is not None:
        wg = access.wireguard
        wireguard = {"interface": WIREGUARD_INTERFACE, "address": str(wg.address), "subnet": str(wg.subnet),
                     "port": wg.port,
                     "peers": [{"name": p.name, "public_key": p.public_key, "address": str(p.address)}
                               for p in wg.peers]}
    return {
        "node": door,
        "uplink": {
            "interface": uplink.interface,
            # NetworkManager wants a stable id per connection; derived, so rebuilds keep it.
            "uuid": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"uplink.{access.node}.{cluster.name}.clusterbake")),
            "mac": uplink.mac,
            "address": str(uplink.address) if uplink.address else None,
            "gateway": str(uplink.gateway) if uplink.gateway else None,
            "dns": [str(d) for d in uplink.dns],
            "wifi": wifi,
        },
        "wireguard": wireguard,
    }


def wifi_psk(secrets_dir: Path) -> str:
    """The uplink's Wi-Fi passphrase from `<secrets_dir>/wifi.psk`: 8-63 printable ASCII characters, or 64 hex digits.

    Made by the user, never by us; private like the munge key. Messages never quote it.
    """
    path = Path(secrets_dir) / WIFI_PSK
    put = f"put the Wi-Fi passphrase alone in {path} (chmod 600)"
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: is missing: access.uplink.wifi needs the network's passphrase", hint=put) from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path}: is not a regular file", hint=put)
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise InputError(f"{path}: is readable by others (mode {stat.S_IMODE(info.st_mode):04o})",
                         hint=f"chmod 600 {path}")
    text = read_bytes(path, str(path), PSK_MAX_BYTES).decode(errors="replace").removesuffix("\n")
    hex_key = len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text)
    if not hex_key and not (8 <= len(text) <= 63 and all(" " <= c <= "~" for c in text)):
        raise InputError(f"{path}: is not a WPA passphrase (8 to 63 printable ASCII characters, or 64 hex digits)",
                         hint=put)
    return text
