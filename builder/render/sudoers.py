"""Passwordless sudo for accounts that have no password: one `/etc/sudoers.d` rule per such user.

Release images give no account a password hash (SSH keys only), and a user without
`password_hash` has none either: membership of group `sudo` then lets nobody use sudo, since
sudo asks for a password that does not exist. `users[].sudo: nopasswd` writes a rule for that
user; the first user gets one by default when, in this image, it is in group `sudo` and has no
password. `sudo: password` writes none (sudo, through group `sudo`, asks for the password).
The file name follows Raspberry Pi OS's own `010_pi-nopasswd`.
"""

from __future__ import annotations

from builder.config.model import Cluster, User
from builder.render.image_file import ImageFile

SUDOERS_DIR = "/etc/sudoers.d"


def sudoers_path(user: str) -> str:
    return f"{SUDOERS_DIR}/010_{user}-nopasswd"


def sudoers_files(cluster: Cluster, *, secrets: bool) -> tuple[ImageFile, ...]:
    """The sudoers rules one image gets; `secrets=False` (release) images carry no password hashes."""
    return tuple(
        ImageFile(sudoers_path(user.name), f"{user.name} ALL=(ALL:ALL) NOPASSWD: ALL\n".encode(),
                  0o440, "root", "root", source=f"{cluster.source.name}: users[{i}].sudo")
        for i, user in enumerate(cluster.users) if passwordless_sudo(cluster, user, passwords=secrets))


def passwordless_sudo(cluster: Cluster, user: User, *, passwords: bool) -> bool:
    if user.sudo is not None:
        return user.sudo == "nopasswd"
    has_password = passwords and user.password_hash is not None
    return user.name == cluster.first_user and "sudo" in user.groups and not has_password
