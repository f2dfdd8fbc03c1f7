"""A DHCP client of one DISCOVER, as the Raspberry Pi bootloader sends it: run inside a test's network namespace.

`python -m tests.netboot.dhcp_probe --interface eth0 --mac 2c:cf:67:00:00:01` sends a DHCPDISCOVER with
that client hardware address, the broadcast flag and the PXE vendor class, waits for an OFFER
addressed to it and prints it as JSON (`{"offer": null}` when none came in time). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import time

MAGIC = b"\x63\x82\x53\x63"
# What the Pi 4/5 bootloader sends as its vendor class (option 60): a PXE client of the ARM architecture.
PXE_VENDOR_CLASS = b"PXEClient:Arch:00000:UNDI:002001"


def discover(mac: bytes, xid: int) -> bytes:
    header = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000, b"\0" * 4, b"\0" * 4,
                         b"\0" * 4, b"\0" * 4, mac.ljust(16, b"\0"), b"", b"")
    # A PXE client also names its architecture (93: 0), its network interface (94: UNDI 2.1) and a
    # machine UUID (97); dnsmasq's pxe-service answers only such a client.
    options = bytes([53, 1, 1]) + bytes([60, len(PXE_VENDOR_CLASS)]) + PXE_VENDOR_CLASS \
        + bytes([93, 2, 0, 0]) + bytes([94, 3, 1, 2, 1]) + bytes([97, 17, 0]) + mac.ljust(16, b"\0") \
        + bytes([55, 6, 1, 3, 43, 60, 66, 67]) + b"\xff"
    return header + MAGIC + options


def parse(packet: bytes) -> dict[str, object]:
    yiaddr, siaddr = socket.inet_ntoa(packet[16:20]), socket.inet_ntoa(packet[20:24])
    options: dict[int, bytes] = {}
    i = 240
    while i < len(packet) and packet[i] != 255:
        if packet[i] == 0:
            i += 1
            continue
        code, length = packet[i], packet[i + 1]
        options[code] = packet[i + 2:i + 2 + length]
        i += 2 + length
    return {"type": options.get(53, b"\0")[0], "yiaddr": yiaddr, "siaddr": siaddr,
            "vendor": options.get(43, b"").decode("latin-1"),
            "router": socket.inet_ntoa(options[3][:4]) if 3 in options else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--interface", required=True)
    parser.add_argument("--mac", required=True)
    parser.add_argument("--wait", type=float, default=3.0)
    args = parser.parse_args()
    mac = bytes.fromhex(args.mac.replace(":", ""))
    xid = int.from_bytes(os.urandom(4), "big")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, args.interface.encode())
        sock.bind(("0.0.0.0", 68))
        sock.sendto(discover(mac, xid), ("255.255.255.255", 67))
        deadline = time.monotonic() + args.wait
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                packet = sock.recv(4096)
            except TimeoutError:
                break
            if len(packet) > 240 and packet[4:8] == xid.to_bytes(4, "big") and packet[28:34] == mac:
                print(json.dumps({"offer": parse(packet)}))
                return
    print(json.dumps({"offer": None}))


if __name__ == "__main__":
    main()
