"""Every way the boot test departs from a real Raspberry Pi booting the image — all of them, here.

The images boot under their own systemd as PID 1; what differs is the machine around them:

1. The board: QEMU's `virt` machine (Cortex-A72, one vCPU, virtio disk and network, PL031
   clock, PL061 GPIO) instead of a Pi. Its firmware, `config.txt` and device tree are not used:
   QEMU loads Debian's generic arm64 kernel (`kernel.py`) directly.
2. Kernel modules: that kernel has the drivers as modules and the image carries none for it, so
   a small busybox initramfs loads `MODULES` (and their dependencies) and mounts the root named
   by the image's `root=PARTUUID=…`, read-only as the Pi's kernel does, then starts the image's
   init. A Pi boots without an initramfs. `evdev` and `gpio_keys` carry the power key: QEMU's
   `system_powerdown` raises KEY_POWER through a GPIO key, as `dtoverlay=gpio-shutdown` does.
3. The kernel command line: the image's own `cmdline.txt`, plus `CMDLINE_EXTRA`: the serial
   console the harness records (ttyAMA0, last so it is /dev/console) and `net.ifnames=0`
   (virtio-net would otherwise be `enp0s1`; a Pi's Ethernet is `eth0`).
4. No GPS receiver or PPS pulse on the time server: chronyd exits when a `refclock PPS` device
   is missing, so its `refclock` lines are removed from the time server's disk copy
   (`DROP_REFCLOCKS`), and it serves the cluster from its `local stratum` fallback. `apply` (day
   two) renders the time server's plan from a copy of `overlays/` whose chrony template has lost
   the same lines (`overlays_without_refclocks`): it would otherwise put them back and restart chronyd
   into that exit.

5. Time: under emulation on a shared 2-core host a VM runs many times slower than a Pi, so
   systemd's default 90 s for a device to appear and for a unit to start are raised to
   `TIMEOUT_SEC` on the command line (`CMDLINE_EXTRA`). Measured: with four VMs and other builds
   on the host, udev had not yet announced the boot partition after 90 s, and the node went into
   emergency mode — a timing artefact, not what a Pi does.

6. The power button's hold time: on a Pi, `dtoverlay=gpio-shutdown,debounce=N` in `config.txt` sets the
   button's gpio-keys `debounce-interval` to N ms in the device tree the firmware hands the kernel. The
   VM boots with QEMU's own `virt` device tree, dumped once per VM (`-machine dumpdtb`) and given the
   same `debounce-interval` on its `/gpio-keys/poweroff` node, read from the image's `config.txt`
   (`button_hold_ms`), with `fdtput`; Linux's gpio-keys then debounces the key exactly as on the Pi.
   QEMU's power key is a GPIO line that `system_powerdown` raises for 100 ms and each further
   `system_powerdown` keeps raised another 100 ms: one is a short press, one every 40 ms a held one.

7. Diskless nodes (issue 26, `test_boot_netboot.py`): a Pi's bootloader fetches its firmware, kernel
   and initramfs by TFTP and boots them; QEMU cannot run the EEPROM's TFTP client, and a Pi's kernel does
   not boot on `virt`. The test fetches the node's `config.txt` and `cmdline.txt` from the file server's
   TFTP by the node's folder, as the bootloader does, and this machine's kernel and initramfs, which it
   put in that folder beside the Pi's (`vmlinuz-virt`, `initrd-virt.img`). The initramfs then does what
   Raspberry Pi OS's (initramfs-tools: klibc's `ipconfig` and `nfsmount`) does with `root=/dev/nfs`: the
   address by DHCP from the file server's dnsmasq (busybox `udhcpc`), the root over NFSv3, read-only,
   without locking, then the image's own `init=` (the netboot init). `overlay` is among `MODULES`.
8. The file server's card is bigger than its image: Raspberry Pi OS's first boot grows the root to fill
   the card, the stand-in has no such script, so the file server's disk copy is grown by
   `FILE_SERVER_GROWTH` before its first boot (`clusterbake netboot --push` puts the compute root there).

Not departures (a user does the same to the card they flash): `node.txt` and `munge.key` on the
boot partition, and the NIC's MAC address taken from the inventory's `mac`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.built_images.image_reader import config_sections

MODULES = (
    "virtio_blk", "virtio_net", "virtio_rng",
    "ext4", "crc32c_generic", "vfat", "nls_cp437", "nls_ascii", "nls_utf8",
    "evdev", "gpio_keys",
    "autofs4", "configfs",
    # Mounted at boot by units of the image (proc-sys-fs-binfmt_misc.mount, nfs-common's
    # run-rpc_pipefs.mount): a Pi loads them from its /lib/modules, this kernel's are not there.
    "binfmt_misc", "sunrpc",
    # The file server's kernel NFS server and every other node's client (likewise).
    "nfsd", "nfsv4",
    # A diskless node's root over NFSv3 and its RAM overlay on it (netboot-init, item 7).
    "nfsv3", "overlay",
)

TIMEOUT_SEC = 420
FILE_SERVER_GROWTH = 3 << 30     # item 8
CMDLINE_EXTRA = ("net.ifnames=0", f"systemd.default_device_timeout_sec={TIMEOUT_SEC}",
                 f"systemd.default_timeout_start_sec={TIMEOUT_SEC}", "console=ttyAMA0,115200")

# The roles whose chrony.conf loses its refclock lines (item 4), and the template it is rendered from.
DROP_REFCLOCKS = ("timeserver", "auxiliary")
CHRONY_TEMPLATE = "time-server/etc/chrony/chrony.conf.j2"


OVERLAY_DEFAULT_DEBOUNCE_MS = 100   # gpio-shutdown without `debounce=` (its README)


def button_hold_ms(config_txt: str) -> int | None:
    """The `debounce` of the image's gpio-shutdown line for all boards (item 6); None: no button."""
    for section, line in config_sections(config_txt):
        if section == "[all]" and line.startswith("dtoverlay=gpio-shutdown"):
            params = dict(p.split("=", 1) for p in line.split(",")[1:] if "=" in p)
            return int(params.get("debounce", OVERLAY_DEFAULT_DEBOUNCE_MS))
    return None


def kernel_cmdline(image_cmdline: str) -> str:
    """The image's cmdline.txt with the VM's additions (item 3)."""
    return " ".join([*image_cmdline.split(), *CMDLINE_EXTRA])


def without_refclocks(chrony_conf: str) -> str:
    return "".join(line for line in chrony_conf.splitlines(keepends=True)
                   if not line.lstrip().startswith("refclock"))


def overlays_without_refclocks(overlays: Path, dest: Path) -> Path:
    """A copy of `overlays` whose time server's chrony template has no refclock lines (item 4), for the
    plans `apply` makes ($CLUSTERBAKE_OVERLAYS)."""
    shutil.copytree(overlays, dest, symlinks=True)
    template = dest / CHRONY_TEMPLATE
    template.write_text(without_refclocks(template.read_text()))
    return dest
