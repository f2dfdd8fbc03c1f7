"""Each VM's disk: a sparse copy of the built image, so the artefact itself is never touched.

What goes onto the copy is what a user puts onto the card they flash (files on the FAT boot
partition, written with mtools), or a listed departure / a deliberate breakage of the root
filesystem, written with debugfs (`IMAGE?offset=N`): no loop device and no mount, so nothing
can be left attached or copied into another process's mount namespace.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from tests.built_images.image_reader import ImageReader


def sparse_copy(image: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "--sparse=always", "--reflink=auto", image, dest], check=True, capture_output=True)
    return dest


def put_boot_file(disk: Path, name: str, data: bytes) -> None:
    """Write `name` to the boot partition, as a user does on the card before its first boot."""
    with tempfile.NamedTemporaryFile() as tmp:
        tmp.write(data)
        tmp.flush()
        _sh("mcopy", "-o", "-i", f"{disk}@@{ImageReader(disk).boot_offset}", tmp.name, f"::/{name}")


def replace_root_file(disk: Path, path: str, data: bytes, *, mode: int | None = None,
                      uid: int | None = None, gid: int | None = None) -> None:
    """Replace a file of the root filesystem, keeping its mode and owner unless given."""
    reader = ImageReader(disk)
    old = reader.stat(path)
    assert old is not None and old.type == "regular", f"{disk.name}: {path} is not a regular file"
    mode = old.mode if mode is None else mode
    uid = old.uid if uid is None else uid
    gid = old.gid if gid is None else gid
    with tempfile.NamedTemporaryFile() as tmp:
        tmp.write(data)
        tmp.flush()
        requests = [f"rm {path}", f"write {tmp.name} {path}", f"set_inode_field {path} mode 0{0o100000 | mode:o}",
                    f"set_inode_field {path} uid {uid}", f"set_inode_field {path} gid {gid}"]
        _sh("debugfs", "-w", "-f", "-", f"{disk}?offset={reader.root_offset}", input="\n".join(requests) + "\n")
    new = ImageReader(disk).stat(path)
    assert new is not None and (new.mode, new.uid, new.gid, new.size) == (mode, uid, gid, len(data)), \
        f"{disk.name}: debugfs did not write {path} as asked: {new}"


def copy_out(disk: Path, path: str, dest: Path) -> Path:
    """A folder of the root filesystem copied out (e.g. the guest's journal after it powered off)."""
    dest.mkdir(parents=True, exist_ok=True)
    _sh("debugfs", "-R", f"rdump {path} {dest}", f"{disk}?offset={ImageReader(disk).root_offset}")
    return dest / Path(path).name


def _sh(*argv: str | os.PathLike[str], input: str | None = None) -> None:
    proc = subprocess.run([os.fspath(a) for a in argv], input=input, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{argv[0]}: exit {proc.returncode}: {proc.stderr.strip()[-800:]}"
