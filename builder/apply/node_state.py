"""What a running node has, as the node agent reported it (`node_agent.probe`)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FileState:
    mode: int
    owner: str
    group: str
    directory: bool
    data: bytes | None = None     # None for a directory or anything that is no regular file


@dataclass(frozen=True)
class NodeState:
    files: Mapping[str, FileState | None]     # every path of the plan; None: absent
    users: Mapping[str, int]                  # name -> uid, from the node's /etc/passwd
    packages: frozenset[str]                  # installed Debian packages
    enabled: frozenset[str]                   # units some target wants or requires
    image: str                                # the first line of /boot/firmware/clusterbake.txt


def state_from_probe(answer: Mapping[str, Any]) -> NodeState:
    files: dict[str, FileState | None] = {}
    for path, entry in answer["files"].items():
        files[path] = None if entry is None else FileState(
            mode=int(entry["mode"]), owner=str(entry["owner"]), group=str(entry["group"]),
            directory=bool(entry["directory"]),
            data=base64.b64decode(entry["data"]) if "data" in entry else None)
    return NodeState(files=files, users={str(k): int(v) for k, v in answer["users"].items()},
                     packages=frozenset(answer["packages"]), enabled=frozenset(answer["enabled"]),
                     image=str(answer.get("image", "")))
