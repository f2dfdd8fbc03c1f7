"""`build --node head` for a Proxmox LXC node: a zstd tar of an amd64 root as `pct create` takes it.

Judged with tar, zstd and the template's own /etc/passwd, never with the builder's code: the
tree and numeric owners Proxmox will map into the unprivileged container, the files the Pis
share, no board parts, and the `pct create` line printed before the path.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from builder.paths import repo_root

pytestmark = [pytest.mark.slow, pytest.mark.root]

ROOT = repo_root()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("lxc")
    data = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    data["nodes"][0] = {"name": "head", "role": "controller", "ip": "10.0.0.10", "platform": "proxmox-lxc",
                        "cpus": 3, "memory_mb": 3072}
    data["users"].append({"name": "alice", "uid": 2001, "groups": ["sudo", "hpc"]})
    data["secrets_dir"] = str(folder / "secrets")
    cluster = folder / "cluster.yaml"
    cluster.write_text(yaml.safe_dump(data, sort_keys=False))
    result = subprocess.run([sys.executable, "-m", "builder", "--quiet", "build", "--cluster", str(cluster),
                             "--node", "head", "--out", str(folder / "out")],
                            capture_output=True, text=True, cwd=ROOT, timeout=3600, check=False)
    assert result.returncode == 0, result.stderr
    return folder / "out", result.stdout


def listing(template: Path) -> dict[str, tuple[str, str]]:
    """path -> (mode string, uid/gid) from `tar --numeric-owner -tvf`."""
    out = subprocess.run(["tar", "--numeric-owner", "-tvf", str(template)], capture_output=True, text=True,
                         check=True).stdout
    entries = {}
    for line in out.splitlines():
        mode, owner, _size, _date, _time, path = line.split(None, 5)
        entries[path.split(" -> ")[0].rstrip("/")] = (mode, owner)
    return entries


def member(template: Path, path: str) -> bytes:
    return subprocess.run(["tar", "-xOf", str(template), path], capture_output=True, check=True).stdout


def ids(passwd: bytes, name: str) -> str:
    fields = next(line.split(":") for line in passwd.decode().splitlines() if line.startswith(name + ":"))
    return f"{fields[2]}/{fields[3]}"


def test_the_template_and_the_pct_line(built: tuple[Path, str]) -> None:
    out, stdout = built
    template = out / "picluster-head.tar.zst"
    assert sorted(p.name for p in out.iterdir()) == [template.name]    # nothing partial beside it
    subprocess.run(["zstd", "-tq", str(template)], check=True)
    lines = stdout.strip().splitlines()
    assert lines[-1] == str(template)
    pct = lines[-2]
    assert pct.startswith("pct create $(pvesh get /cluster/nextid) local:vztmpl/picluster-head.tar.zst ")
    for part in ("--hostname head", "--ostype debian", "--unprivileged 1", "--features nesting=1",
                 "--net0 name=eth0,bridge=vmbr0,ip=10.0.0.10/24,gw=10.0.0.1", "--cores 3", "--memory 3072",
                 "--nameserver 10.0.0.1"):
        assert part in pct, part


def test_the_tree_and_its_numeric_owners(built: tuple[Path, str]) -> None:
    template = built[0] / "picluster-head.tar.zst"
    entries = listing(template)
    passwd = member(template, "./etc/passwd")
    munge = ids(passwd, "munge")
    slurm = ids(passwd, "slurm")
    assert ids(passwd, "hpc") == "2000/2000" and ids(passwd, "alice") == "2001/2001"
    assert entries["./etc/slurm/slurm.conf"] == ("-rw-r--r--", "0/0")
    assert entries["./etc/munge/munge.key"] == ("-r--------", munge)
    assert entries["./etc/hosts"] == ("-rw-r--r--", "0/0")
    assert entries["./home/hpc"][1] == "2000/2000" and entries["./home/alice"][1] == "2001/2001"
    assert entries["./home/hpc/.ssh"] == ("drwx------", "2000/2000")
    assert entries["./var/spool/slurmctld"] == ("drwx------", slurm)
    assert "./etc/systemd/system/multi-user.target.wants/slurmctld.service" in entries
    assert "./etc/systemd/system/multi-user.target.wants/munge.service" in entries
    assert not [p for p in entries if re.match(r"\./(boot/firmware/.|etc/NetworkManager/system-connections/.|"
                                               r"etc/cloud/.|etc/chrony/|etc/ssh/ssh_host_)", p)]
    assert "./usr/sbin/chronyd" not in entries and "./usr/sbin/slurmctld" in entries


def test_the_root_is_amd64_debian_trixie_with_the_pis_files(built: tuple[Path, str]) -> None:
    template = built[0] / "picluster-head.tar.zst"
    shell = member(template, "./usr/bin/dash")
    assert shell[:4] == b"\x7fELF" and int.from_bytes(shell[18:20], "little") == 0x3E
    assert b"VERSION_CODENAME=trixie" in member(template, "./usr/lib/os-release")
    conf = member(template, "./etc/slurm/slurm.conf").decode()
    assert "SlurmctldHost=head(10.0.0.10)" in conf and "NodeName=node[01-06]" in conf
    assert b"10.0.0.20\tgps\n" in member(template, "./etc/hosts")
    assert member(template, "./etc/hostname") == b"head\n"
    assert len(member(template, "./etc/munge/munge.key")) == 1024
    assert b"Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" in \
        member(template, "./etc/apt/sources.list.d/debian.sources")
    assert member(template, "./etc/machine-id") == b"uninitialized\n"
