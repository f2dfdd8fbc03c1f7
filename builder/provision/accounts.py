"""Cluster users: the same UID, GID and groups on every image, so files and jobs agree across nodes."""

from __future__ import annotations

from builder.config.model import Cluster
from builder.errors import InputError
from builder.image import Chroot, OpenImage


def _entries(img: OpenImage, path: str) -> dict[str, list[str]]:
    text = img.read_file(path).decode()
    return {line.split(":", 1)[0]: line.split(":") for line in text.splitlines() if line and not line.startswith("#")}


def create_users(img: OpenImage, chroot: Chroot, cluster: Cluster, *, passwords: bool = True) -> None:
    """Create the cluster's users and groups with their fixed ids; refuse an id the image already uses.

    `passwords=False` (release images) leaves every account without a password hash: SSH keys only.
    """
    if not cluster.users:
        return
    passwd = _entries(img, "/etc/passwd")
    groups = _entries(img, "/etc/group")
    for user in cluster.users:
        _check_free(cluster, user.name, "uid", user.uid, passwd)
        if user.name not in groups:
            _check_free(cluster, user.name, "gid", user.gid, groups)
            chroot.run(["groupadd", "--gid", str(user.gid), user.name])
        missing = [g for g in user.groups if g not in groups and g not in (u.name for u in cluster.users)]
        if missing:
            raise InputError(
                f"{cluster.source.name}: users: {user.name}: group(s) {', '.join(missing)} do not exist in the image",
                hint="use groups the base image has (e.g. sudo, adm) or remove them")
        argv = ["useradd", "--uid", str(user.uid), "--gid", str(user.gid), "--create-home",
                "--shell", user.shell]
        if user.groups:
            argv += ["--groups", ",".join(user.groups)]
        if user.password_hash and passwords:
            argv += ["--password", user.password_hash]
        chroot.run([*argv, user.name])


def _check_free(cluster: Cluster, name: str, kind: str, number: int, table: dict[str, list[str]]) -> None:
    column = 2
    for other, fields in table.items():
        if len(fields) > column and fields[column] == str(number) and other != name:
            raise InputError(
                f"{cluster.source.name}: users: {name}: {kind} {number} is already used by '{other}' in the base image",
                hint=f"choose another {kind} (>= 2000 avoids Debian's system and first-user ranges)")
