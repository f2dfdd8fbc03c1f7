"""How a running node differs from its plan: files, users, packages, units. Pure: no node is contacted.

A file that holds a secret (the munge key, slurmdbd's password, a private key) is reported as
"changed", never printed; password hashes are never compared at all.
"""

from __future__ import annotations

import difflib
import fnmatch
import posixpath
import re
from dataclasses import dataclass

from builder.apply.desired import NodePlan
from builder.apply.node_state import FileState, NodeState
from builder.publish.secret_scan import DB_PASSWORD, PRIVATE_KEY, SECRET_NAMES
from builder.render import ImageFile


@dataclass(frozen=True)
class FileDrift:
    want: ImageFile
    have: FileState | None
    reasons: tuple[str, ...]       # "missing", "content", "owner root:root", "mode 0644"

    @property
    def path(self) -> str:
        return self.want.path


@dataclass(frozen=True)
class NodeDrift:
    node: str
    files: tuple[FileDrift, ...]
    users: tuple[str, ...]           # users to add (uid conflicts are in `problems`)
    packages: tuple[str, ...]        # packages to install
    units: tuple[str, ...]           # units to enable
    problems: tuple[str, ...]        # what apply cannot fix in place
    remove_users: tuple[str, ...] = ()   # accounts clusterbake made that have left the cluster file

    @property
    def empty(self) -> bool:
        return not (self.files or self.users or self.packages or self.units or self.remove_users)

    def summary(self) -> str:
        parts = [f"{len(items)} {label}" for items, label in ((self.files, "files"), (self.users, "users"),
                                                              (self.remove_users, "users to remove"),
                                                              (self.packages, "packages"), (self.units, "units"))
                 if items]
        if self.problems:
            parts.append("needs a new image")
        return ", ".join(parts) if parts else "up to date"


def is_secret(file: ImageFile) -> bool:
    name = posixpath.basename(file.path)
    return (any(fnmatch.fnmatchcase(name, pattern) for pattern in SECRET_NAMES)
            or bool(DB_PASSWORD.search(file.data)) or bool(PRIVATE_KEY.search(file.data)))


def _file_drift(want: ImageFile, have: FileState | None) -> FileDrift | None:
    if have is None:
        return FileDrift(want, None, ("missing",))
    reasons = []
    if have.directory != want.directory:
        reasons.append("a directory" if have.directory else "not a directory")
    elif not want.directory and have.data != want.data:
        reasons.append("content")
    if (have.owner, have.group) != (want.owner, want.group):
        reasons.append(f"owner {have.owner}:{have.group}, the plan says {want.owner}:{want.group}")
    if have.mode != want.mode:
        reasons.append(f"mode {have.mode:04o}, the plan says {want.mode:04o}")
    return FileDrift(want, have, tuple(reasons)) if reasons else None


# Where a node keeps the accounts clusterbake made (overlays/users): only those are ever removed.
USERS_RECORD = "/etc/clusterbake/users"
NEVER_REMOVED = frozenset({"root", "pi"})
FIRST_CLUSTER_UID = 1000


# The first line of the boot partition's clusterbake.txt: "... for cluster lab, role compute[, node …]."
BUILT_ROLE = re.compile(r", role ([A-Za-z0-9_-]+)[,.]")


def needs_new_image(plan: NodePlan, state: NodeState) -> tuple[str, ...]:
    """What apply cannot change in place: the node's image was baked for another role (its packages,
    partition growth and boot partition are the role's), or an account has another uid there."""
    problems = []
    built = BUILT_ROLE.search(state.image)
    if built and built.group(1) != plan.role:
        problems.append(f"its image was baked for role {built.group(1)}, the cluster file says {plan.role}")
    problems += [f"user {u.name} has uid {state.users[u.name]} there, the cluster file says {u.uid}"
                 for u in plan.users if u.name in state.users and state.users[u.name] != u.uid]
    return tuple(problems)


def recorded_users(state: NodeState) -> dict[str, int]:
    """The accounts clusterbake made on the node, as its record says (USERS_RECORD): name -> uid."""
    record = state.files.get(USERS_RECORD)
    if record is None or record.data is None:
        return {}
    users = {}
    for line in record.data.decode(errors="replace").splitlines():
        fields = line.split()
        if len(fields) == 2 and not line.startswith("#") and fields[1].isdigit():
            users[fields[0]] = int(fields[1])
    return users


def users_to_remove(plan: NodePlan, state: NodeState) -> tuple[str, ...]:
    """Accounts to remove: recorded by clusterbake on the node, gone from the cluster file, and still the
    account it made (same uid). Never root, the image's own `pi` or any other system account."""
    planned = {u.name for u in plan.users}
    return tuple(sorted(name for name, uid in recorded_users(state).items()
                        if name not in planned and name not in NEVER_REMOVED and uid >= FIRST_CLUSTER_UID
                        and state.users.get(name) == uid))


def node_drift(plan: NodePlan, state: NodeState) -> NodeDrift:
    files = tuple(d for f in plan.files if (d := _file_drift(f, state.files.get(f.path))) is not None)
    problems = needs_new_image(plan, state)
    return NodeDrift(
        node=plan.node.name, files=files,
        users=tuple(u.name for u in plan.users if u.name not in state.users),
        packages=tuple(p for p in plan.packages if p not in state.packages),
        units=tuple(u for u in plan.enabled if u not in state.enabled),
        problems=problems, remove_users=users_to_remove(plan, state))


def file_diff(node: str, drift: FileDrift) -> str:
    """What `apply` would change in one file, for people: a unified diff, or why not one."""
    want, have = drift.want, drift.have
    head = f"{node}:{want.path}: {', '.join(drift.reasons)}"
    if "content" not in drift.reasons and have is not None:
        return head
    if is_secret(want):
        return f"{head} (secret: changed, not shown)"
    if want.directory:
        return head
    old = have.data if have is not None and have.data is not None else b""
    try:
        old_lines, new_lines = old.decode().splitlines(keepends=True), want.data.decode().splitlines(keepends=True)
    except UnicodeDecodeError:
        return f"{head} (binary, {len(old)} -> {len(want.data)} bytes)"
    diff = difflib.unified_diff(old_lines, new_lines, fromfile=f"{node}:{want.path}",
                                tofile=f"plan:{want.path} ({want.source or 'rendered'})")
    return head + "\n" + "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                                 for line in diff).rstrip("\n")
