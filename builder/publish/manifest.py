"""The manifest of a release image: what it was built from and what it contains, enough to rebuild it.

Base image (URL, SHA-256 of the verified download, pinned signing key), the profiles merged
for the role, the clusterbake commit, the package versions installed in the image (read from
its dpkg status) and the SHA-256 of every file the render plan put into it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from builder.command import run
from builder.config.model import Cluster
from builder.image import OpenImage
from builder.paths import repo_root
from builder.render import RenderPlan

MANIFEST_VERSION = 1


def installed_packages(status: str) -> dict[str, str]:
    """package → version for every package dpkg's status file marks `install ok installed`.

    Multi-arch packages appear once per architecture; they are keyed `name:arch` then.
    """
    found: dict[str, str] = {}
    for stanza in status.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1] not in (" ", "\t") and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields.get("Status") != "install ok installed" or "Package" not in fields:
            continue
        name = fields["Package"]
        if fields.get("Multi-Arch") == "same":
            name = f"{name}:{fields.get('Architecture', '')}"
        found[name] = fields.get("Version", "")
    return dict(sorted(found.items()))


def image_packages(img: OpenImage) -> dict[str, str]:
    return installed_packages(img.read_file("/var/lib/dpkg/status").decode(errors="replace"))


def source_revision() -> dict[str, object]:
    """The clusterbake commit the release was made from, and whether the checkout had changes."""
    root = repo_root()
    head = run(["git", "-C", root, "rev-parse", "HEAD"], label="git", capture=True, check=False)
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    dirty = run(["git", "-C", root, "status", "--porcelain", "--", "builder", "profiles", "overlays"],
                label="git", capture=True, check=False)
    return {"commit": head.stdout.decode().strip(), "dirty": bool(dirty.stdout.strip())}


def image_manifest(img: OpenImage, plan: RenderPlan, cluster: Cluster, *, base: Path, image_name: str,
                   release_date: str, source_date_epoch: int, packages: Mapping[str, str]) -> dict[str, object]:
    files = []
    for f in plan.files:
        entry: dict[str, object] = {"path": f.path, "mode": f"{f.mode:04o}", "owner": f.owner, "group": f.group,
                                    "source": f.source}
        if f.directory:
            entry["directory"] = True
        else:
            entry["sha256"] = hashlib.sha256(img.read_file(f.path)).hexdigest()
        files.append(entry)
    boot_names = sorted({"config.txt", "cmdline.txt", *(name for name, _ in plan.boot_files)})
    boot = [{"path": name, "sha256": hashlib.sha256(img.boot.read(name)).hexdigest()} for name in boot_names]
    return {
        "manifest_version": MANIFEST_VERSION,
        "image": image_name,
        "cluster": cluster.name,
        "role": plan.role,
        "release_date": release_date,
        "source_date_epoch": source_date_epoch,
        "clusterbake": source_revision(),
        "base_image": {"url": cluster.base_image.url, "sha256": base.stem,
                       "signing_key_fingerprint": cluster.base_image.fingerprint},
        "profiles": list(plan.profile.sources),
        "requested_packages": list(plan.packages),
        "enabled_units": list(plan.enable),
        "disabled_units": list(plan.disable),
        "removed": list(plan.remove),
        "config_txt_lines": list(plan.config_txt_lines),
        "config_txt_boards": {board: list(lines) for board, lines in plan.config_txt_boards},
        "cmdline_args": list(plan.cmdline_args),
        "remove_serial_console": plan.remove_serial_console,
        "files": files,
        "boot_files": boot,
        "packages": dict(packages),
    }


def write_manifest(dest: Path, manifest: Mapping[str, object]) -> Path:
    dest.write_text(json.dumps(manifest, indent=2) + "\n")
    return dest
