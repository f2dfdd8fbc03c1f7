"""The rules of Raspberry Pi Imager's published os_list.json schema, written out as checks.

From rpi-imager's doc/json-schema/os-list-schema.json (draft-07): the top level holds only
`imager` and `os_list` (os_list required); an OS entry requires name, description, icon, url,
extract_size, extract_sha256, image_download_size and release_date, with the sizes integers and
the rest strings; `init_format` and `website` are strings; `imager`'s keys are strings. That
schema predates Imager 2.x's `imager.devices` list, whose entries are checked here as Imager's
own list carries them: name, tags (strings), icon, description, matching_type (inclusive or
exclusive), default (bool), capabilities (strings). Values Imager gives meaning to are checked
too: init_format one of none/systemd/cloudinit/cloudinit-rpi, extract_sha256 64 hex digits,
release_date YYYY-MM-DD. Returns every problem found, as "path: problem".
"""

from __future__ import annotations

import re
from typing import Any

IMAGER_STRINGS = {"latest_version", "url", "default_os", "embedded_default_os", "embedded_default_destination"}
OS_REQUIRED = {"name": str, "description": str, "icon": str, "url": str, "extract_size": int,
               "extract_sha256": str, "image_download_size": int, "release_date": str}
OS_OPTIONAL = {"init_format": str, "website": str, "devices": list, "capabilities": list, "architecture": str,
               "image_download_sha256": str, "bmap_url": str}
DEVICE_KEYS = {"name": str, "tags": list, "icon": str, "description": str, "matching_type": str, "default": bool,
               "capabilities": list}
INIT_FORMATS = {"none", "systemd", "cloudinit", "cloudinit-rpi"}


def _is(value: Any, kind: type) -> bool:
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def problems(doc: Any) -> list[str]:
    found: list[str] = []
    if not isinstance(doc, dict):
        return ["(top level): not an object"]
    found += [f"{key}: not allowed at the top level" for key in doc if key not in ("imager", "os_list")]
    if not isinstance(doc.get("os_list"), list):
        found.append("os_list: required, an array")
    imager = doc.get("imager", {})
    if not isinstance(imager, dict):
        found.append("imager: not an object")
        imager = {}
    for key, value in imager.items():
        if key == "devices":
            if not isinstance(value, list):
                found.append("imager.devices: not an array")
                continue
            for i, device in enumerate(value):
                found += _device(f"imager.devices[{i}]", device)
        elif key not in IMAGER_STRINGS:
            found.append(f"imager.{key}: not allowed")
        elif not isinstance(value, str):
            found.append(f"imager.{key}: not a string")
    for i, entry in enumerate(doc.get("os_list") or []):
        found += _os_entry(f"os_list[{i}]", entry)
    return found


def _device(where: str, device: Any) -> list[str]:
    if not isinstance(device, dict):
        return [f"{where}: not an object"]
    found = [f"{where}.{key}: unknown device key" for key in device if key not in DEVICE_KEYS]
    found += [f"{where}.{key}: required" for key in ("name", "tags") if key not in device]
    found += [f"{where}.{key}: not a {kind.__name__}" for key, kind in DEVICE_KEYS.items()
              if key in device and not _is(device[key], kind)]
    if not all(isinstance(t, str) for t in device.get("tags", [])):
        found.append(f"{where}.tags: not all strings")
    if device.get("matching_type", "inclusive") not in ("inclusive", "exclusive"):
        found.append(f"{where}.matching_type: {device['matching_type']!r} is not inclusive or exclusive")
    return found


def _os_entry(where: str, entry: Any) -> list[str]:
    if not isinstance(entry, dict):
        return [f"{where}: not an object"]
    found = [f"{where}.{key}: required" for key in OS_REQUIRED if key not in entry]
    found += [f"{where}.{key}: not a {kind.__name__}" for key, kind in {**OS_REQUIRED, **OS_OPTIONAL}.items()
              if key in entry and not _is(entry[key], kind)]
    if not re.fullmatch(r"[0-9a-f]{64}", str(entry.get("extract_sha256", ""))):
        found.append(f"{where}.extract_sha256: not 64 lower-case hex digits")
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(entry.get("release_date", ""))):
        found.append(f"{where}.release_date: not YYYY-MM-DD")
    if "init_format" in entry and entry["init_format"] not in INIT_FORMATS:
        found.append(f"{where}.init_format: {entry['init_format']!r} is not one of {sorted(INIT_FORMATS)}")
    if not all(isinstance(t, str) for t in entry.get("devices", [])):
        found.append(f"{where}.devices: not all strings")
    return found


def unmatched_devices(doc: dict[str, Any]) -> list[str]:
    """Tags an image lists that no board of the device step offers (Imager would never show it), and
    boards offered that no image runs on."""
    offered = {tag for device in doc.get("imager", {}).get("devices", []) for tag in device.get("tags", [])}
    listed = {tag for entry in doc["os_list"] for tag in entry.get("devices", [])}
    return [f"image tag {t} has no device" for t in sorted(listed - offered)] + \
        [f"device tag {t} has no image" for t in sorted(offered - listed)]
