"""What `status` and `apply` run on a node, as root: read its state, or bring its files to a plan.

Sent to the node as the text of `python3 -c` (Raspberry Pi OS has python3), so it uses the standard
library only and imports nothing of clusterbake. The request comes as JSON on stdin, the answer
goes as JSON to stdout. Every path is taken under ROOT (`/` on a node; a directory in the tests),
and owners are looked up in ROOT's own /etc/passwd and /etc/group, as the image build does.

    probe   {"paths": [...]} -> {"files": {path: {...}}, "users": {name: uid}, "packages": [...],
                                 "enabled": [...], "image": first line of clusterbake.txt}
    write   {"files": [{path, data, mode, owner, group, directory}], "users": [...],
             "packages": [...], "enable": [...], "commands": [[argv], ...]} -> {"done": [...]}
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BOOT_NOTE = "boot/firmware/clusterbake.txt"


def _ids(root: Path, table: str) -> dict[str, int]:
    found: dict[str, int] = {}
    path = root / "etc" / table
    if path.is_file():
        for line in path.read_text().splitlines():
            fields = line.split(":")
            if len(fields) > 3 and fields[2].isdigit():
                found.setdefault(fields[0], int(fields[2]))
    return found


def _names(ids: dict[str, int]) -> dict[int, str]:
    return {number: name for name, number in reversed(list(ids.items()))}


def _inside(root: Path, path: str) -> Path:
    """`path` under root, refusing a link anywhere on the way (a node's file must not lead us out)."""
    target = root / path.lstrip("/")
    current = root
    for part in Path(path.lstrip("/")).parts:
        current = current / part
        if current.is_symlink():
            raise ValueError(f"{path}: {current} is a symbolic link")
    return target


def probe(root: Path, request: dict[str, Any]) -> dict[str, Any]:
    users, groups = _ids(root, "passwd"), _ids(root, "group")
    user_names, group_names = _names(users), _names(groups)
    files: dict[str, Any] = {}
    for path in request["paths"]:
        try:
            target = _inside(root, path)
            info = target.lstat()
        except (OSError, ValueError):
            files[path] = None
            continue
        entry = {"mode": info.st_mode & 0o7777, "owner": user_names.get(info.st_uid, str(info.st_uid)),
                 "group": group_names.get(info.st_gid, str(info.st_gid)), "directory": target.is_dir()}
        if target.is_file():
            entry["data"] = base64.b64encode(target.read_bytes()).decode()
        files[path] = entry
    packages = []
    status = root / "var/lib/dpkg/status"
    if status.is_file():
        name = ""
        for line in status.read_text(errors="replace").splitlines():
            if line.startswith("Package: "):
                name = line.split(": ", 1)[1]
            elif line.startswith("Status: ") and line.endswith(" installed") and " ok " in line:
                packages.append(name)
    enabled: set[str] = set()
    for wants in [*(root / "etc/systemd/system").glob("*.wants"), *(root / "etc/systemd/system").glob("*.requires")]:
        enabled.update(entry.name for entry in wants.iterdir())
    note = root / BOOT_NOTE
    image = note.read_text(errors="replace").splitlines()[0] if note.is_file() and note.stat().st_size else ""
    return {"files": files, "users": users, "packages": sorted(packages), "enabled": sorted(enabled),
            "image": image}


def _write_file(root: Path, item: dict[str, Any], users: dict[str, int], groups: dict[str, int]) -> None:
    target = _inside(root, item["path"])
    uid, gid = users[item["owner"]], groups[item["group"]]
    if item["directory"]:
        target.mkdir(parents=True, exist_ok=True)
        os.chown(target, uid, gid, follow_symlinks=False)
        os.chmod(target, item["mode"])
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    # A temporary file beside the target, owner and mode set before it is renamed over the old one:
    # a reader sees the old file or the new one, never half of it or one with the wrong mode.
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.clusterbake-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(base64.b64decode(item["data"]))
            out.flush()
            os.fchown(out.fileno(), uid, gid)
            os.fchmod(out.fileno(), item["mode"])
            os.fsync(out.fileno())
        os.rename(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write(root: Path, request: dict[str, Any]) -> dict[str, Any]:
    done: list[str] = []
    if root != Path("/"):
        # A tree that is not the running system (the tests): its users (`useradd --root` works inside
        # the tree) and files only; nothing that would install, enable or restart anything on the
        # machine running the agent.
        done += [f"not run: {' '.join(argv)}" for argv in request.get("commands", [])]
        request = {key: request.get(key, []) for key in ("remove_users", "remove_files", "users", "files")}
    for name in request.get("remove_users", []):
        # Never the account apply logged in as (sudo says which); the home stays (no --remove).
        if name == os.environ.get("SUDO_USER"):
            raise ValueError(f"user {name}: not removed: apply logs in as that user")
        subprocess.run(["userdel", "--root", str(root), name], check=True, capture_output=True)
        done.append(f"removed user {name}")
    for path in request.get("remove_files", []):
        target = _inside(root, path)
        if target.is_file():
            target.unlink()
            done.append(f"removed {path}")
    for user in request.get("users", []):
        # Homes on the file server's NFS export are made there (root cannot write them through root_squash).
        home = "--create-home" if user["home"] else "--no-create-home"
        subprocess.run(["useradd", "--root", str(root), "--uid", str(user["uid"]), "--user-group", home,
                        "--shell", user["shell"], user["name"]], check=True, capture_output=True)
        done.append(f"user {user['name']}")
    if request.get("packages"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *request["packages"]],
                       check=True, capture_output=True, env=env)
        done.append("packages " + " ".join(request["packages"]))
    users, groups = _ids(root, "passwd"), _ids(root, "group")
    for item in request.get("files", []):
        _write_file(root, item, users, groups)
        done.append(item["path"])
    for unit in request.get("enable", []):
        # Started now as well: a service the plan turned on (the diskless nodes' dnsmasq) serves at once.
        subprocess.run(["systemctl", "enable", "--now", unit], check=True, capture_output=True)
        done.append(f"enable {unit}")
    for argv in request.get("commands", []):
        subprocess.run(argv, check=True, capture_output=True)
        done.append(" ".join(argv))
    return {"done": done}


def main(argv: list[str]) -> int:
    verb, root = argv[1], Path(argv[2] if len(argv) > 2 else "/")
    request = json.loads(sys.stdin.read())
    try:
        answer = probe(root, request) if verb == "probe" else write(root, request)
    except subprocess.CalledProcessError as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else str(exc.stderr)
        answer = {"error": f"{' '.join(exc.cmd)}: exit {exc.returncode}: {stderr.strip()[-400:]}"}
    except (OSError, ValueError, KeyError) as exc:
        answer = {"error": f"{type(exc).__name__}: {exc}"}
    json.dump(answer, sys.stdout)
    return 0 if "error" not in answer else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
