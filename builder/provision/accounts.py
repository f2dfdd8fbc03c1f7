"""Cluster users: the same UID, GID and groups on every image, so files and jobs agree across nodes."""

from __future__ import annotations

from collections.abc import Sequence

from builder.config.model import User
from builder.errors import InputError
from builder.image import Chroot
from builder.image.image_root import ImageRoot
from builder.render import ImageFile
from builder.render.sudoers import SUDOERS_DIR


def _entries(img: ImageRoot, path: str) -> dict[str, list[str]]:
    text = img.read_file(path).decode()
    return {line.split(":", 1)[0]: line.split(":") for line in text.splitlines() if line and not line.startswith("#")}


def create_users(img: ImageRoot, chroot: Chroot, users: Sequence[User], *, cluster_file: str) -> None:
    """Create the cluster's users and groups with their fixed ids; refuse an id the image already uses.

    Everything is checked before anything is changed; groups come before users (a user may be
    in another cluster user's group). Password hashes go to `chpasswd -e` on stdin, never on a
    command line, where logs, error messages and /proc would show them. A release plan's users
    have no password hash: SSH keys only. `cluster_file` names the file messages blame.
    """
    if not users:
        return
    passwd = _entries(img, "/etc/passwd")
    groups = _entries(img, "/etc/group")
    known_groups = set(groups) | {u.name for u in users}
    for i, user in enumerate(users):
        where = f"{cluster_file}: users[{i}]"
        if user.name in passwd:
            raise InputError(f"{where}.name: user {user.name!r} already exists in the base image",
                             hint="choose another name; the base image's accounts are not changed")
        _check_free(where, "uid", user.uid, passwd)
        if user.name not in groups:
            _check_free(where, "gid", user.gid, groups)
        missing = [g for g in user.groups if g not in known_groups]
        if missing:
            raise InputError(f"{where}.groups: {', '.join(missing)} do not exist in the image",
                             hint="use groups the base image has (e.g. sudo, adm) or remove them")
    created: set[int] = set()
    for user in users:
        if user.name not in groups and user.gid not in created:
            chroot.run(["groupadd", "--gid", str(user.gid), user.name])
            created.add(user.gid)
    for user in users:
        argv = ["useradd", "--uid", str(user.uid), "--gid", str(user.gid), "--create-home", "--shell", user.shell]
        if user.groups:
            argv += ["--groups", ",".join(user.groups)]
        chroot.run([*argv, user.name])
    hashes = "".join(f"{u.name}:{u.password_hash}\n" for u in users if u.password_hash)
    if hashes:
        chroot.run(["chpasswd", "--encrypted"], input=hashes.encode())


def _check_free(where: str, kind: str, number: int, table: dict[str, list[str]]) -> None:
    for other, fields in table.items():
        if len(fields) > 2 and fields[2] == str(number):
            raise InputError(f"{where}.{kind}: {number} is already used by '{other}' in the base image",
                             hint=f"choose another {kind} (>= 2000 avoids Debian's system and first-user ranges)")


def check_sudoers(img: ImageRoot, chroot: Chroot, files: Sequence[ImageFile]) -> None:
    """Every sudoers rule written must pass the image's own `visudo -cf`.

    sudo refuses to run at all when a file under /etc/sudoers.d does not parse, which would lock
    every user of a key-only image out of root.
    """
    rules = [f for f in files if f.path.startswith(f"{SUDOERS_DIR}/") and not f.directory]
    if not rules:
        return
    if not img.exists("/usr/sbin/visudo"):
        raise InputError(f"{rules[0].source}: the image has no sudo (no /usr/sbin/visudo) for {rules[0].path}",
                         hint="add sudo to the role's packages, or set the user's sudo: password")
    for rule in rules:
        proc = chroot.run(["visudo", "-cf", rule.path], capture=True, check=False)
        if proc.returncode != 0:
            said = (proc.stdout + proc.stderr).decode(errors="replace").strip().splitlines()
            raise InputError(f"{rule.source}: visudo rejects {rule.path}: {said[-1] if said else proc.returncode}",
                             hint="fix the rule's syntax (visudo -cf FILE)")
