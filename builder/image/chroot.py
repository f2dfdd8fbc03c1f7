"""Running commands inside the image: a chroot with the kernel filesystems bound in.

An arm64 image runs on an x86 host through qemu-user-static registered in binfmt_misc with
the fix-binary (F) flag: the kernel keeps the interpreter open, so the image needs no copy of
qemu. While the chroot exists no service may start (policy-rc.d exits 101), the image resolves
names with the host's resolv.conf (its own is restored exactly, link or file, in `finally`),
and apt's downloads (and its package lists, when given) live in host caches shared by later
builds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import stat
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from builder.command import run
from builder.errors import EnvironmentProblem, InputError
from builder.image import safe_paths
from builder.image.boot import BootPartition, boot_copy
from builder.image.checkpoints import checkpoint
from builder.image.mounts import mounted
from builder.process.procfs import kill_processes_in
from builder.process.record import scratch_dir
from builder.process.signals import signals_held
from builder.progress import step

log = logging.getLogger("clusterbake.image")

BINFMT = Path("/proc/sys/fs/binfmt_misc")
# ELF e_machine → Debian architecture, and the qemu binfmt entry that runs it.
ELF_MACHINES = {0xB7: "arm64", 0x28: "armhf", 0x3E: "amd64", 0x03: "i386"}
QEMU_ENTRIES = {"arm64": "qemu-aarch64", "armhf": "qemu-arm"}
HOST_ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf", "i686": "i386"}
POLICY_RC_D = b"#!/bin/sh\n# clusterbake: no service starts while the image is being built.\nexit 101\n"
CHROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
    "DEBCONF_NONINTERACTIVE_SEEN": "true",
}
# The CPU qemu-user emulates (QEMU_CPU), per architecture. qemu's default for arm64, "max", has
# pointer authentication computed with the QARMA5 cipher, and Debian's arm64 binaries sign and
# check return addresses in every function call (branch protection): the image's python3
# compiling cloud-init's modules took 21 s as "max" and 2.8 s as "cortex-a76", the Pi 5's core
# (the Pi 4's Cortex-A72 has no pointer authentication either). What a build writes does not
# depend on it. Natively run binaries ignore the variable.
EMULATED_CPUS = {"arm64": "cortex-a76"}


def emulation_env(arch: str) -> dict[str, str]:
    """The environment that makes qemu-user emulate a fast CPU for `arch` (empty when it has no choice)."""
    return {"QEMU_CPU": EMULATED_CPUS[arch]} if arch in EMULATED_CPUS else {}


# The address space each process in the chroot may map (RLIMIT_AS, inherited by its children), so
# that a maintainer script running away gets ENOMEM instead of the host's memory. Under qemu-user
# it bounds the emulator's own bookkeeping too: qemu 7.2 keeps a descriptor per page of every
# guest mapping, and mariadb-server's postinst bootstrap reserves 8 TiB for InnoDB's buffer pool
# (innodb_buffer_pool_size_max), which qemu filled page by page to 18 GB. MariaDB fits that
# reservation under RLIMIT_AS, so its bootstrap completes within this limit. apt and dpkg use a
# few hundred MB; a 32-bit guest's qemu reserves 4 GiB, which fits beneath.
CHROOT_ADDRESS_SPACE = 6 << 30


@dataclass(frozen=True)
class Chroot:
    root: Path
    arch: str

    def run(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, input: bytes | None = None,
            capture: bool = False, check: bool = True,
            timeout: float | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run argv inside the image (a clean environment plus `env`)."""
        full_env = {**CHROOT_ENV, **emulation_env(self.arch), "TERM": os.environ.get("TERM", "dumb"), **(env or {})}
        return run(["prlimit", f"--as={CHROOT_ADDRESS_SPACE}", "chroot", str(self.root), *argv],
                   label=f"chroot {Path(argv[0]).name}",
                   env=full_env, input=input, capture=capture, check=check, timeout=timeout)

    def output(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> str:
        return self.run(argv, env=env, capture=True).stdout.decode()


def image_arch(root: Path) -> str:
    """The Debian architecture of the image, from the ELF header of its /bin/sh."""
    try:
        header = safe_paths.read_file(root, "/bin/sh")[:20]
    except InputError as exc:
        raise InputError("the image has no /bin/sh, so no command can run inside it",
                         hint="use a Raspberry Pi OS (or Debian) root filesystem") from exc
    machine = int.from_bytes(header[18:20], "little") if header[:4] == b"\x7fELF" else -1
    if machine not in ELF_MACHINES:
        raise InputError(f"the image's /bin/sh is not an ELF binary of a known architecture (machine {machine})")
    return ELF_MACHINES[machine]


def ensure_emulation(arch: str) -> None:
    """Make sure the kernel can run `arch` binaries: natively, or through qemu-user with flag F."""
    host = HOST_ARCHES.get(platform.machine(), platform.machine())
    if arch == host:
        return
    name = QEMU_ENTRIES.get(arch)
    if name is None:
        raise EnvironmentProblem(f"cannot run {arch} binaries on this {host} host")
    if not (BINFMT / "status").exists():
        # binfmt_misc is a host facility shared by every process: mounted once, left mounted.
        log.info("mounting binfmt_misc on %s", BINFMT)
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT], label="mount")
    entry = BINFMT / name
    conf = Path(f"/usr/lib/binfmt.d/{name}.conf")
    if not entry.exists():
        if not conf.is_file():
            raise EnvironmentProblem(f"no binfmt_misc registration for {name} ({conf} is missing)",
                                     hint="apt-get install qemu-user-static")
        line = next(ln for ln in conf.read_text().splitlines() if ln.startswith(":"))
        log.info("registering %s in binfmt_misc from %s", name, conf)
        (BINFMT / "register").write_text(line)
    fields = dict(ln.split(" ", 1) for ln in entry.read_text().splitlines() if " " in ln)
    state = entry.read_text().splitlines()[0]
    if state != "enabled":
        raise EnvironmentProblem(f"binfmt_misc entry {name} is disabled", hint=f"echo 1 > {entry}")
    if "F" not in fields.get("flags:", ""):
        raise EnvironmentProblem(
            f"binfmt_misc entry {name} lacks the fix-binary (F) flag, so {arch} programs would need qemu "
            "inside the image",
            hint=f"echo -1 > {entry} && cat {conf} > {BINFMT}/register")
    interpreter = fields.get("interpreter", "")
    if not Path(interpreter).exists():
        raise EnvironmentProblem(f"binfmt_misc entry {name} names {interpreter}, which does not exist",
                                 hint="apt-get install --reinstall qemu-user-static")


def _dir_in(root: Path, path: str) -> Path:
    """A directory inside the image to mount on, resolved safely and created when missing."""
    return safe_paths.make_dir(root, path, mode=0o755, uid=0, gid=0)


@contextlib.contextmanager
def swapped_file(root: Path, path: str, replacement: bytes, mode: int) -> Iterator[None]:
    """Put `replacement` at `path` for the block; restore exactly what was there (file, link or nothing)."""
    host = safe_paths.resolve(root, path, follow_final=False)
    saved_link: str | None = None
    saved_file: tuple[bytes, os.stat_result] | None = None
    with signals_held():
        with contextlib.suppress(FileNotFoundError):
            info = os.lstat(host)
            if stat.S_ISLNK(info.st_mode):
                saved_link = os.readlink(host)
            elif stat.S_ISREG(info.st_mode):
                saved_file = (host.read_bytes(), info)
            else:
                raise InputError(f"{path}: is neither a file nor a link in the image; not replacing it")
        safe_paths.remove(root, path)
        safe_paths.write_file(root, path, replacement, mode=mode, uid=0, gid=0)
    try:
        yield
    finally:
        with signals_held():
            safe_paths.remove(root, path)
            if saved_link is not None:
                safe_paths.symlink(root, path, saved_link)
            elif saved_file is not None:
                data, info = saved_file
                written = safe_paths.write_file(root, path, data, mode=stat.S_IMODE(info.st_mode),
                                                uid=info.st_uid, gid=info.st_gid)
                os.utime(written, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)


def _os_release(root: Path) -> dict[str, str]:
    try:
        text = safe_paths.read_file(root, "/etc/os-release").decode(errors="replace")
    except InputError:
        return {}
    return {k: v.strip('"') for k, _, v in (ln.partition("=") for ln in text.splitlines()) if k}


@contextlib.contextmanager
def enter_chroot(root: Path, boot: BootPartition | None, *, boot_mountpoint: str = "/boot/firmware",
                 apt_cache: Path | None = None, apt_lists: Path | None = None) -> Iterator[Chroot]:
    """Prepare `root` for running commands; tear everything down in reverse order afterwards."""
    with contextlib.ExitStack() as stack:
        with step("prepare the chroot"):
            arch = image_arch(root)
            ensure_emulation(arch)
            stack.enter_context(mounted("proc", _dir_in(root, "/proc"), fstype="proc",
                                        options=("nosuid", "nodev", "noexec")))
            stack.enter_context(mounted("/sys", _dir_in(root, "/sys"), bind=True))
            stack.enter_context(mounted("/dev", _dir_in(root, "/dev"), bind=True))
            stack.enter_context(mounted("/dev/pts", _dir_in(root, "/dev/pts"), bind=True))
            # A fresh /run, not the host's: maintainer scripts that see /run/systemd/system would
            # think systemd is running in the image and try to talk to it.
            stack.enter_context(mounted("tmpfs", _dir_in(root, "/run"), fstype="tmpfs",
                                        options=("nosuid", "nodev", "mode=0755")))
            if apt_cache is not None and os.path.isdir(safe_paths.resolve(root, "/var/cache/apt")):
                suite = _os_release(root).get("VERSION_CODENAME", "unknown")
                cache = apt_cache / f"{arch}-{suite}"
                try:
                    (cache / "partial").mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise EnvironmentProblem(f"{cache}: cannot create the apt cache: {exc.strerror}",
                                             hint="point --cache at a writable directory") from None
                stack.enter_context(mounted(cache, _dir_in(root, "/var/cache/apt/archives"), bind=True))
            if apt_lists is not None:
                # The image's own lists directory is hidden, not written: the lists stay on the host.
                stack.enter_context(mounted(apt_lists, _dir_in(root, "/var/lib/apt/lists"), bind=True))
            if boot is not None:  # a container's root has no boot partition
                copy = stack.enter_context(boot_copy(boot, stack.enter_context(scratch_dir("boot"))))
                stack.enter_context(mounted(copy, _dir_in(root, boot_mountpoint), bind=True))
            host_resolv = Path("/etc/resolv.conf")
            stack.enter_context(swapped_file(root, "/etc/resolv.conf",
                                             host_resolv.read_bytes() if host_resolv.exists() else b"", 0o644))
            stack.enter_context(swapped_file(root, "/usr/sbin/policy-rc.d", POLICY_RC_D, 0o755))
            # Runs first on the way out: daemons a maintainer script started anyway hold the mounts.
            stack.callback(kill_processes_in, root)
        checkpoint("chroot-entered")
        yield Chroot(root=root, arch=arch)

