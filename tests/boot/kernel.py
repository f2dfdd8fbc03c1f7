"""The boot test's kernel and initramfs: a cached test fixture, never part of a product image.

A Raspberry Pi boots its own kernel from the boot partition; QEMU's `virt` machine needs a
generic arm64 one. So, once per recipe:
  1. apt (in a private state folder, arm64, Debian trixie) fetches `linux-image-arm64`'s kernel
     package and `busybox-static`; apt checks the signed InRelease against Debian's archive
     keyring and each .deb against the signed Packages index;
  2. dpkg-deb unpacks both here, natively (no chroot, no qemu-user);
  3. the initramfs gets busybox, the modules of `departures.MODULES` with their dependencies
     (read from each module's own `depends=`, decompressed, in load order) and `init.sh`.
Cached as  ~/.cache/clusterbake/boot-kernel/<recipe key>/{vmlinuz,initrd.img,kernel.txt}.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from builder.cache import install, locked, recipe_key, staging_dir
from tests.boot import departures

MIRROR = "http://deb.debian.org/debian"
SUITE = "trixie"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
INIT = Path(__file__).with_name("init.sh")
RECIPE_VERSION = 1


@dataclass(frozen=True)
class BootKernel:
    vmlinuz: Path
    initrd: Path
    release: str        # e.g. 6.12.117+deb13-arm64


def recipe() -> dict[str, object]:
    return {
        "version": RECIPE_VERSION,
        "mirror": MIRROR,
        "suite": SUITE,
        "packages": ["linux-image-arm64", "busybox-static"],
        "modules": list(departures.MODULES),
        "init": hashlib.sha256(INIT.read_bytes()).hexdigest(),
    }


def boot_kernel(cache: Path) -> BootKernel:
    """The cached kernel and initramfs for this recipe, made first if missing (~20 s)."""
    folder = cache / "boot-kernel"
    dest = folder / recipe_key(recipe())
    with locked(folder / ".lock"):
        if not (dest / "kernel.txt").exists():
            with staging_dir(folder) as work:
                _make(work / "out", work)
                install(work / "out", dest)
    return BootKernel(dest / "vmlinuz", dest / "initrd.img", (dest / "kernel.txt").read_text().strip())


def _sh(*argv: str | os.PathLike[str], cwd: Path | None = None) -> str:
    proc = subprocess.run([os.fspath(a) for a in argv], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} {' '.join(map(str, argv[1:4]))}…: exit {proc.returncode}: "
                           f"{proc.stderr.strip()[-1500:]}")
    return proc.stdout


def _apt(state: Path, *args: str) -> str:
    options = [f"-oDir={state}", f"-oDir::State::status={state}/status", "-oAPT::Architecture=arm64",
               "-oAPT::Architectures=arm64", "-oDir::Etc::trusted=/dev/null",
               f"-oDir::Etc::trustedparts={state}/trusted.d", "-oAPT::Sandbox::User=root", "-q"]
    tool = "apt-cache" if args[0] in ("depends", "show") else "apt-get"
    return _sh(tool, *options, *args, cwd=state / "debs")


def _download(work: Path) -> list[Path]:
    state = work / "apt"
    for sub in ("etc/apt/sources.list.d", "etc/apt/preferences.d", "etc/apt/apt.conf.d", "trusted.d",
                "var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "debs"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "status").touch()
    (state / "etc/apt/sources.list").write_text(
        f"deb [arch=arm64 signed-by={KEYRING}] {MIRROR} {SUITE} main\n")
    _apt(state, "update")
    # The metapackage only depends on the versioned kernel package, which holds the files.
    depends = _apt(state, "depends", "linux-image-arm64")
    kernel = re.search(r"Depends: (linux-image-\S+-arm64)", depends)
    if not kernel:
        raise RuntimeError(f"linux-image-arm64 names no kernel package: {depends!r}")
    _apt(state, "download", kernel.group(1), "busybox-static")
    return sorted((state / "debs").glob("*.deb"))


def _make(out: Path, work: Path) -> None:
    tree = work / "tree"
    for deb in _download(work):
        _sh("dpkg-deb", "-x", deb, tree)
    modules_dir = next((tree / "usr/lib/modules").iterdir())
    out.mkdir()
    shutil.copyfile(next((tree / "boot").glob("vmlinuz-*")), out / "vmlinuz")

    initramfs = work / "initramfs"
    for sub in ("bin", "dev", "proc", "sys", "root", "modules"):
        (initramfs / sub).mkdir(parents=True)
    shutil.copyfile(tree / "usr/bin/busybox", initramfs / "bin/busybox")
    os.chmod(initramfs / "bin/busybox", 0o755)
    shutil.copyfile(INIT, initramfs / "init")
    os.chmod(initramfs / "init", 0o755)
    order = _load_order(modules_dir, departures.MODULES)
    for name, path in order:
        data = lzma.decompress(path.read_bytes()) if path.suffix == ".xz" else path.read_bytes()
        (initramfs / "modules" / f"{name}.ko").write_bytes(data)
    (initramfs / "modules/load").write_text("".join(f"{name}\n" for name, _ in order))

    files = sorted(str(p.relative_to(initramfs)) for p in initramfs.rglob("*"))
    archive = subprocess.run(["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"], cwd=initramfs,
                             input="\n".join([".", *files]).encode(), capture_output=True, check=True).stdout
    (out / "initrd.img").write_bytes(gzip.compress(archive, compresslevel=6))
    (out / "kernel.txt").write_text(modules_dir.name + "\n")


def _load_order(modules_dir: Path, wanted: tuple[str, ...]) -> list[tuple[str, Path]]:
    """The wanted modules and everything they depend on, each after its dependencies."""
    files = {_module_name(p): p for p in modules_dir.rglob("*.ko*")}
    order: list[tuple[str, Path]] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in seen:
            return
        seen.add(name)
        if name not in files:
            raise RuntimeError(f"kernel {modules_dir.name} has no module {name}")
        path = files[name]
        data = lzma.decompress(path.read_bytes()) if path.suffix == ".xz" else path.read_bytes()
        found = re.search(rb"\0depends=([^\0]*)\0", data)
        for dep in (found.group(1).decode().split(",") if found and found.group(1) else []):
            visit(dep)
        order.append((name, path))

    for module in wanted:
        visit(module)
    return order


def _module_name(path: Path) -> str:
    return path.name.split(".ko")[0].replace("-", "_")
