"""QEMU virtual machines on a private LAN, and everything needed to take them down again.

The LAN is a network namespace this run creates (`cbboot-<pid>-<random>`): a bridge holding
the inventory's gateway address, and one tap device per VM. QEMU and ssh enter only that
network namespace (`nsenter --net`), so no traffic leaves it and no mount namespace is made
(a mount namespace copies every mount of the moment and can hold a loop device of someone
else's). Each QEMU process is named `cbboot-<pid>-<node>` and killed by its PID on the way
out; a run killed by SIGKILL leaves those names behind for the next run's `sweep_leftovers`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "cbboot-"
# ssh's own failures before the command ran (exit 255 with one of these): worth another try when
# four VMs share two cores and a guest's sshd answers late. A command that ran is never retried.
SSH_NOT_CONNECTED = ("Connection timed out", "Connection refused", "Connection reset", "kex_exchange_identification",
                     "Connection closed by")
SSH_TRIES = 4
SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=15")


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True)


def _run_pid(name: str) -> int | None:
    """The pid of the test run that made a `cbboot-<pid>-…` name."""
    pid = name[len(PREFIX):].split("-", 1)[0]
    return int(pid) if name.startswith(PREFIX) and pid.isdigit() else None


def sweep_leftovers() -> list[str]:
    """Kill the QEMU processes and delete the namespaces of runs that are dead (SIGKILLed)."""
    done = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:
            continue
        if b"-name" in argv[:-1]:
            name = argv[argv.index(b"-name") + 1].decode(errors="replace")
            owner = _run_pid(name)
            if owner is not None and not Path(f"/proc/{owner}").exists():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), signal.SIGKILL)
                done.append(f"killed QEMU {entry.name} ({name})")
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    for name in (line.split()[0] for line in listing.splitlines() if line.startswith(PREFIX)):
        owner = _run_pid(name)
        if owner is not None and not Path(f"/proc/{owner}").exists():
            time.sleep(0.5)  # the QEMU just killed still holds its tap
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
            done.append(f"deleted network namespace {name}")
    return done


@dataclass
class Lan:
    netns: str
    taps: int = 0

    def command(self, argv: Sequence[str]) -> list[str]:
        """argv run inside the LAN's network namespace (and no other namespace)."""
        return ["nsenter", f"--net=/run/netns/{self.netns}", "--", *argv]

    def add_tap(self) -> str:
        self.taps += 1
        tap = f"tap{self.taps}"
        _ip("-n", self.netns, "tuntap", "add", "dev", tap, "mode", "tap")
        _ip("-n", self.netns, "link", "set", tap, "master", "br0", "up")
        return tap


@contextlib.contextmanager
def private_lan(gateway: str, prefix: int) -> Iterator[Lan]:
    """A bridge in a new network namespace; the host side of the test talks from `gateway`."""
    name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(2)}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "link", "add", "br0", "type", "bridge")
        _ip("-n", name, "addr", "add", f"{gateway}/{prefix}", "dev", "br0")
        _ip("-n", name, "link", "set", "br0", "up")
        yield Lan(name)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


@dataclass(frozen=True)
class MachineSpec:
    name: str
    role: str
    ip: str
    mac: str
    disk: Path | None   # this VM's own copy of the image; None: a diskless node (its root over NFS)
    cmdline: str
    memory_mib: int
    button_hold_ms: int | None = None    # the power key's debounce in the VM's device tree (departures 6)


@dataclass
class Machine:
    """One VM; `boot()` starts QEMU, `ssh()` runs a command in the guest as the cluster user."""

    spec: MachineSpec
    lan: Lan
    kernel: Path
    initrd: Path
    folder: Path
    key: Path
    user: str
    boots: int = 0
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    boot_seconds: list[float] = field(default_factory=list)
    last_ssh_error: str = ""
    master: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def console(self) -> Path:
        return self.folder / f"console-{self.boots}.log"

    def boot(self) -> None:
        # A second QEMU on the same disk would be refused its write lock, and the first one, no longer
        # referenced, would outlive the test.
        assert not self.alive(), f"{self.name}: boot() while its VM is still running"
        self.close_master()
        self.boots += 1
        tap = self.lan.add_tap()
        monitor = self.folder / "monitor.sock"
        monitor.unlink(missing_ok=True)
        s = self.spec
        argv = [
            "qemu-system-aarch64", "-name", f"{PREFIX}{os.getpid()}-{s.name}", *self._board(),
            *(("-dtb", str(self._device_tree())) if s.button_hold_ms is not None else ()),
            "-kernel", str(self.kernel), "-initrd", str(self.initrd), "-append", s.cmdline,
            *(("-drive", f"file={s.disk},format=raw,if=none,id=disk", "-device", "virtio-blk-pci,drive=disk")
              if s.disk is not None else ()),
            "-netdev", f"tap,id=lan,ifname={tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=lan,mac={s.mac},romfile=",
            "-device", "virtio-rng-pci",
            "-serial", f"file:{self.console}",
            "-monitor", f"unix:{monitor},server=on,wait=off",
        ]
        log = open(self.folder / f"qemu-{self.boots}.log", "wb")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(self.lan.command(argv), stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT)
        log.close()
        self.started = time.monotonic()

    def _board(self) -> list[str]:
        return ["-machine", "virt", "-cpu", "cortex-a72", "-smp", "1", "-m", str(self.spec.memory_mib),
                "-nodefaults", "-display", "none"]

    def _device_tree(self) -> Path:
        """QEMU's own device tree for this VM's board, its power key debounced as the image's config.txt
        asks (departures 6). The same board options make the same tree; PCI devices are not in it."""
        dtb = self.folder / "virt.dtb"
        if not dtb.exists():
            subprocess.run(["qemu-system-aarch64", *self._board(), "-machine", f"dumpdtb={dtb}"],
                           check=True, capture_output=True, stdin=subprocess.DEVNULL)
            subprocess.run(["fdtput", "-t", "u", str(dtb), "/gpio-keys/poweroff", "debounce-interval",
                            str(self.spec.button_hold_ms)], check=True, capture_output=True)
        return dtb

    def press_power_key(self, seconds: float = 0.0) -> None:
        """The power key: a short press (QEMU raises the GPIO line for 100 ms), or held for `seconds`
        (system_powerdown every 40 ms keeps the line raised: each one re-arms QEMU's 100 ms release)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(10)
            conn.connect(str(self.folder / "monitor.sock"))
            conn.recv(4096)
            until = time.monotonic() + seconds
            conn.sendall(b"system_powerdown\n")
            while time.monotonic() < until:
                time.sleep(0.04)
                conn.sendall(b"system_powerdown\n")
            time.sleep(0.5)

    def hold_power_key(self) -> float:
        """The power key held a second longer than the image's hold time (what a person shutting the node
        down does); returns how long it was held."""
        seconds = (self.spec.button_hold_ms or 0) / 1000 + 1
        self.press_power_key(seconds)
        return seconds

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """Stop QEMU at once (by its PID), whatever the guest is doing; and our ssh master."""
        self.close_master()
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=20)

    def wait_exit(self, timeout: float) -> int | None:
        """QEMU's exit status once the guest powered off, None if it is still running."""
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    @property
    def control_path(self) -> Path:
        path = self.folder / "ssh-master"
        assert len(str(path)) < 100, f"{path}: too long for a unix socket"
        return path

    def _ssh(self, *options: str) -> list[str]:
        return self.lan.command(["ssh", "-i", str(self.key), *SSH_OPTIONS, "-S", str(self.control_path), *options,
                                 f"{self.user}@{self.spec.ip}"])

    def open_master(self) -> bool:
        """One SSH connection held open, which every later `ssh()` shares (OpenSSH multiplexing).

        A new connection costs the guest, under TCG, a forked and re-executed sshd, a key
        exchange and a PAM session (logind, the user's systemd manager): seconds each with four
        guests on two cores, and the checks make hundreds. With no master (it failed, or the
        guest went down), `ssh()` connects on its own as before: ssh falls back by itself.
        """
        self.close_master()
        self.master = subprocess.Popen(
            self._ssh("-M", "-N", "-o", "ControlMaster=yes", "-o", "ServerAliveInterval=15",
                      "-o", "ServerAliveCountMax=4"),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.master.poll() is None:
            if subprocess.run(self._ssh("-O", "check"), capture_output=True, check=False).returncode == 0:
                return True
            time.sleep(1)
        self.close_master()
        return False

    def close_master(self) -> None:
        if self.master is not None:
            if self.master.poll() is None:
                self.master.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.master.wait(timeout=20)
            self.master = None
        with contextlib.suppress(OSError):
            self.control_path.unlink()

    def ssh(self, argv: Sequence[str], *, timeout: float = 60, input: str | None = None,
            check: bool = False, tries: int = SSH_TRIES) -> subprocess.CompletedProcess[str]:
        command = [*self._ssh("-o", "ControlMaster=no"), "--", shlex.join(argv)]
        for attempt in range(1, tries + 1):
            try:
                proc = subprocess.run(command, input=input, capture_output=True, text=True, timeout=timeout,
                                      check=False)
            except subprocess.TimeoutExpired:
                proc = subprocess.CompletedProcess(command, 124, "", f"timed out after {timeout:.0f}s")
            if proc.returncode != 255 or not any(s in proc.stderr for s in SSH_NOT_CONNECTED) \
                    or attempt == tries:
                break
            time.sleep(5 * attempt)
        if check and proc.returncode != 0:
            raise AssertionError(f"{self.name}: {shlex.join(argv)} failed ({proc.returncode}): "
                                 f"{(proc.stderr or proc.stdout).strip()[-800:]}")
        return proc

    def console_text(self) -> str:
        try:
            return self.console.read_text(errors="replace")
        except OSError:
            return ""

    def console_tail(self, lines: int = 40) -> str:
        tail = self.console_text().splitlines()[-lines:]
        return f"--- {self.name}: last {len(tail)} lines of {self.console} ---\n" + "\n".join(tail)


@contextlib.contextmanager
def machines_running(machines: Sequence[Machine]) -> Iterator[Sequence[Machine]]:
    """Every machine's QEMU is killed (by PID) on the way out, booted or not, on any exit."""
    try:
        yield machines
    finally:
        for machine in machines:
            machine.kill()
