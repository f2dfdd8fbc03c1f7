"""Small generated disk images shaped like Raspberry Pi OS, and independent tools to inspect them.

The root filesystem holds a host-architecture /bin/sh (dash and its libraries copied from the
host): it makes the chroot mechanics testable without qemu; the arm64 path is tested against
the stand-in image.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

REFERENCE_CONFIG = Path(__file__).resolve().parents[2] / "builder" / "demo" / "raspios-config.txt"
REPO = Path(__file__).resolve().parents[2]
MIB = 1 << 20
BOOT_MIB = 40
ROOT_MIB = 48
MUNGE_ID = 990  # the host has no munge, or another id: ownership must come from the image
HOST_BINARIES = ("/bin/dash", "/usr/bin/true", "/usr/bin/sleep")
STATE_DIR = Path("/run/clusterbake")


@dataclass(frozen=True)
class ImageFacts:
    """What a test image was made with, to compare against what the engine reads."""

    path: Path
    label: str
    disk_id: str
    first_sector: int
    boot_partuuid: str
    root_partuuid: str

    @property
    def boot_offset(self) -> int:
        return self.first_sector * 512

    @property
    def root_offset(self) -> int:
        return (self.first_sector + BOOT_MIB * MIB // 512) * 512


def sh(*argv: str | os.PathLike[str], input: bytes | None = None) -> str:
    """Run a tool the test uses to judge the result (not the engine's runner)."""
    proc = subprocess.run([os.fspath(a) for a in argv], input=input, capture_output=True, check=False)
    assert proc.returncode == 0, f"{argv}: exit {proc.returncode}: {proc.stderr.decode(errors='replace')}"
    return proc.stdout.decode(errors="replace")


def _host_libraries(binary: str) -> list[Path]:
    text = sh("ldd", binary)
    return [Path(p) for p in re.findall(r"(/\S+)", text) if Path(p).exists()]


def _in_usr(path: Path) -> Path:
    """Where a host path lives in a merged-/usr tree (/lib64/x → usr/lib64/x)."""
    parts = path.parts[1:]
    return Path(*parts) if parts[0] == "usr" else Path("usr", *parts)


def _root_tree(tree: Path, fstab: str) -> None:
    for link, target in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
        (tree / target).mkdir(parents=True, exist_ok=True)
        (tree / link).symlink_to(target)
    etc = tree / "etc"
    etc.mkdir()
    (etc / "fstab").write_text(fstab)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                f"munge:x:{MUNGE_ID}:{MUNGE_ID}:MUNGE:/nonexistent:/usr/sbin/nologin\n")
    (etc / "group").write_text(f"root:x:0:\nmunge:x:{MUNGE_ID}:\n")
    (etc / "os-release").write_text('PRETTY_NAME="Test"\nID=debian\nVERSION_CODENAME=testsuite\n')
    (etc / "hostname").write_text("raspberrypi\n")
    # Like a systemd-resolved image: a dangling relative link that must come back exactly.
    (etc / "resolv.conf").symlink_to("../run/systemd/resolve/stub-resolv.conf")
    for directory in ("boot/firmware", "proc", "sys", "dev", "run", "tmp", "root", "var/cache/apt/archives"):
        (tree / directory).mkdir(parents=True, exist_ok=True)
    srv = tree / "srv"
    srv.mkdir()
    (srv / "etc-link").symlink_to("/etc")  # absolute: means the image's /etc
    (srv / "escape").symlink_to("../../../../..")  # relative, climbing out of the image
    (srv / "self").symlink_to("/srv/self")  # a loop
    for binary in HOST_BINARIES:
        for source in [Path(binary), *_host_libraries(binary)]:
            dest = tree / _in_usr(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source.resolve(), dest)
    (tree / "usr/bin/sh").symlink_to("dash")


def build_test_image(path: Path, *, label: str = "dos", first_sector: int = 16384, boot_mountpoint: str =
                     "/boot/firmware") -> ImageFacts:
    """A Raspberry-Pi-OS-shaped disk image: p1 FAT32 'bootfs', p2 ext4 'rootfs', fstab by PARTUUID."""
    work = path.parent / f"{path.name}.parts"
    work.mkdir()
    rng = random.Random()
    if label == "dos":
        disk_id = f"{rng.getrandbits(32):08x}"
        boot_partuuid, root_partuuid = f"{disk_id}-01", f"{disk_id}-02"
    else:
        disk_id = str(uuid.uuid4())
        boot_partuuid, root_partuuid = str(uuid.uuid4()), str(uuid.uuid4())
    fstab = (f"proc /proc proc defaults 0 0\n"
             f"PARTUUID={boot_partuuid}  {boot_mountpoint}  vfat    defaults          0       2\n"
             f"PARTUUID={root_partuuid}  /               ext4    defaults,noatime  0       1\n")
    tree = work / "root"
    tree.mkdir()
    _root_tree(tree, fstab)
    root_fs = work / "root.ext4"
    sh("mkfs.ext4", "-q", "-F", "-b", "4096", "-L", "rootfs", "-d", tree, root_fs, f"{ROOT_MIB}M")
    boot_fs = work / "boot.fat"
    with boot_fs.open("wb") as f:
        f.truncate(BOOT_MIB * MIB)
    sh("mkfs.vfat", "-F", "32", "-s", "1", "-S", "512", "-n", "bootfs", boot_fs)
    (work / "cmdline.txt").write_text(f"console=serial0,115200 console=tty1 root=PARTUUID={root_partuuid} "
                                      "rootfstype=ext4 fsck.repair=yes rootwait resize\n")
    shutil.copy(REFERENCE_CONFIG, work / "config.txt")
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    subprocess.run(["mcopy", "-i", boot_fs, work / "cmdline.txt", work / "config.txt", "::/"], env=env, check=True)
    subprocess.run(["mmd", "-i", boot_fs, "::/overlays"], env=env, check=True)
    tail = MIB if label == "gpt" else 0
    total = first_sector * 512 + (BOOT_MIB + ROOT_MIB) * MIB + tail
    with path.open("wb") as f:
        f.truncate(total)
    for part, offset in ((boot_fs, first_sector * 512), (root_fs, first_sector * 512 + BOOT_MIB * MIB)):
        sh("dd", f"if={part}", f"of={path}", "bs=1M", f"seek={offset // MIB}", "conv=notrunc,sparse", "status=none")
    boot_sectors, root_sectors = BOOT_MIB * MIB // 512, ROOT_MIB * MIB // 512
    if label == "dos":
        script = (f"label: dos\nlabel-id: 0x{disk_id}\n"
                  f"start={first_sector}, size={boot_sectors}, type=c\n"
                  f"start={first_sector + boot_sectors}, size={root_sectors}, type=83\n")
    else:
        script = (f"label: gpt\nlabel-id: {disk_id}\n"
                  f"start={first_sector}, size={boot_sectors}, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, "
                  f"uuid={boot_partuuid}\n"
                  f"start={first_sector + boot_sectors}, size={root_sectors}, "
                  f"type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid={root_partuuid}\n")
    sh("sfdisk", "--quiet", "--wipe", "never", "--wipe-partitions", "never", path, input=script.encode())
    shutil.rmtree(work)
    return ImageFacts(path=path, label=label, disk_id=disk_id, first_sector=first_sector,
                      boot_partuuid=boot_partuuid, root_partuuid=root_partuuid)


def copy_image(facts: ImageFacts, dest: Path) -> ImageFacts:
    sh("cp", "--reflink=auto", "--sparse=always", facts.path, dest)
    return ImageFacts(path=dest, label=facts.label, disk_id=facts.disk_id, first_sector=facts.first_sector,
                      boot_partuuid=facts.boot_partuuid, root_partuuid=facts.root_partuuid)


def loops_backed_by(directory: Path) -> list[str]:
    """Loop devices whose backing file lies in `directory`, as losetup reports them."""
    data = json.loads(sh("losetup", "--list", "--json", "--output", "NAME,BACK-FILE") or '{"loopdevices": []}')
    return [f"{d['name']} {d['back-file']}" for d in data.get("loopdevices", [])
            if (d.get("back-file") or "").startswith(str(directory))]


def engine_mounts(pid: int) -> list[str]:
    """Mounts the engine made for process `pid` (its scratch directories carry the pid)."""
    marker = re.compile(rf"^{re.escape(str(STATE_DIR))}/[a-z]+-{pid}-\d+(/|$)")
    return [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
            if marker.match(line.split()[1])]


def engine_leftovers(pid: int, directory: Path) -> list[str]:
    scratch = [str(p) for p in STATE_DIR.glob(f"*-{pid}-*")] if STATE_DIR.is_dir() else []
    record = [str(STATE_DIR / f"{pid}.json")] if (STATE_DIR / f"{pid}.json").exists() else []
    return loops_backed_by(directory) + engine_mounts(pid) + scratch + record


def debugfs(image: ImageFacts | Path, offset: int, request: str) -> str:
    path = image.path if isinstance(image, ImageFacts) else image
    return sh("debugfs", "-R", request, f"{path}?offset={offset}")
