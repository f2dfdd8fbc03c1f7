"""A private sandbox for running `python -m builder check` on hostile input, and what a good refusal is.

Every case gets its own directory holding the cluster file, HOME, XDG_CONFIG_HOME and the cache,
and (when the case changes them) copies of profiles/ and overlays/. A refusal is good when the exit
code is as expected, stderr is exactly one `clusterbake: error:` line naming the key, nothing is on
stdout, no file appeared or vanished in the sandbox, and it came within a time bound.
"""

from __future__ import annotations

import copy
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from builder.paths import repo_root

ROOT = repo_root()

# Real public keys made with ssh-keygen for these tests (their private halves were thrown away).
ED25519_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHyOV0G3ZU7ycDzZ11xoaaWgGkN7ogHiJeAqz9tw5UMF a@test"
ED25519_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF74aPRtEVI4ccoh3fwM+Zwzrguxnh6KC3HR6M9jtGbp b@test"
ECDSA = ("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBM8UGcBC7FWccfBHWyzwcriiKYfqvnTe"
         "jG12UM5aQ9Cwi1ZbhCc6FuwqQrKjmxjz9GrrD2vtNbDELzhWKEdJ9iU= ec@test")
RSA = ("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCfHAanuR/Zi16Ao6NuI8SsHkiYnN4KXEp161qkIIG5W5agXn8XJqwHrDQo8y9JEHF9Rmwg"
       "V0d65OrG0jU2O0JJogz5EiLWmqQS9lswWS0rLaC76w5FfliXGZhidLLoq+8nH7hJ0809aXORW3d3BGvB0sQ0vNe7JuQw+XuHpsziXdNnZTwR"
       "JEKVBgYVKVRBkYhTWn2HVY9OKavP8PUQ9GMUFQPW8lvBjSBufzB/UPOTt7Ix6khzzAr2tn0/nQALREY8H9vEesFcAV/2r+uo2gARrYSardCC"
       "DIBIu9FtS1/Itfd9CxXRYl768g2qk3H+yJYiPxVKUiKenIzR0/j6qHtZ rsa@test")
SHA512_HASH = "$6$abcdefgh$ltjgWl6579NluT/Vi1nwEvcil.G5Nbc4NiXZaNGStk8PSwGfQv72N2CKPPrVACtLtip/cZ/1GM/O6IND4WQhG."
SHA256_HASH = "$5$abcdefgh$gruCpC7VkOTspMQTTSAR8mtlO9Upms.fwqE5y16JVM."

# A valid cluster of Pi 4 boards (a Pi 5 would add a warning line about its power button).
VALID: dict[str, Any] = {
    "name": "lab",
    "base_image": {
        "url": "https://example.org/images/raspios.img.xz",
        "sha256": "ab" * 32,
        "signature_url": "https://example.org/images/raspios.img.xz.sig",
        "signing_key": "https://example.org/key.gpg",
        "fingerprint": "54C3DD610D9D1B4AF82A37758738CD6B956F460C",
    },
    "network": {"subnet": "10.0.0.0/24", "gateway": "10.0.0.1", "dns": ["10.0.0.1"], "domain": "lab.example"},
    "time": {"server": "gps"},
    "slurm": {"controller": "head", "partition": "batch"},
    "nodes": [
        {"name": "head", "role": "controller", "ip": "10.0.0.10", "model": "pi4-8gb"},
        {"name": "gps", "role": "timeserver", "ip": "10.0.0.20", "model": "pi4-4gb", "serial": "10000000c10c4a11"},
        {"name": "node01", "role": "compute", "ip": "10.0.0.101", "model": "pi4-8gb",
         "serial": "10000000abcdef01", "mac": "2c:cf:67:00:00:01"},
        {"name": "node02", "role": "compute", "ip": "10.0.0.102", "model": "pi4-8gb", "mac": "2c:cf:67:00:00:02"},
    ],
    "users": [
        {"name": "hpc", "uid": 2000, "groups": ["sudo"], "ssh_keys": [ED25519_A, RSA],
         "password_hash": SHA512_HASH, "shell": "/bin/bash"},
        {"name": "ann", "uid": 2001, "gid": 2001, "ssh_keys": [ED25519_B, ECDSA]},
    ],
    "first_user": "hpc",
    "ssh": {"password_authentication": False},
}


def valid() -> dict[str, Any]:
    return copy.deepcopy(VALID)


@dataclass
class Sandbox:
    """One case's private world; `data` becomes cluster.yaml unless `cluster_text`/`cluster_arg` is set."""

    root: Path
    data: dict[str, Any] = field(default_factory=valid)
    cluster_text: str | bytes | None = None
    cluster_arg: str | None = None
    command: str = "check"      # `fetch` for the files only a download reads (run with --quiet)
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("home", "config", "cache", "work"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "config", 0o700)

    @property
    def cluster(self) -> Path:
        return self.root / "work" / "cluster.yaml"

    @property
    def profiles(self) -> Path:
        """A private copy of the shipped profiles/, used by the run once asked for."""
        path = self.root / "profiles"
        if not path.exists():
            shutil.copytree(ROOT / "profiles", path)
            self.env["CLUSTERBAKE_PROFILES"] = str(path)
        return path

    @property
    def overlays(self) -> Path:
        path = self.root / "overlays"
        if not path.exists():
            shutil.copytree(ROOT / "overlays", path, symlinks=True)
            self.env["CLUSTERBAKE_OVERLAYS"] = str(path)
        return path

    def write(self) -> str:
        if self.cluster_arg is not None:
            return self.cluster_arg
        if self.cluster_text is None:
            self.cluster.write_text(yaml.safe_dump(self.data, sort_keys=False))
        elif isinstance(self.cluster_text, bytes):
            self.cluster.write_bytes(self.cluster_text)
        else:
            self.cluster.write_text(self.cluster_text)
        return str(self.cluster)

    def argv(self, cluster: str | None = None) -> list[str]:
        quiet = ["--quiet"] if self.command != "check" else []
        return [*quiet, self.command, "--cluster", cluster or self.write(), "--cache", str(self.root / "cache")]

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERBAKE_")}
        env.update(HOME=str(self.root / "home"), XDG_CONFIG_HOME=str(self.root / "config"),
                   XDG_CACHE_HOME=str(self.root / "cache"), CLUSTERBAKE_CACHE=str(self.root / "cache"))
        env.update(self.env)
        return env


def snapshot(root: Path) -> set[str]:
    """Every path below root (links not followed): what a refusal must leave exactly as it was."""
    seen = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            seen.add(os.path.relpath(os.path.join(dirpath, name), root))
    return seen


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float


def _limit_memory() -> None:
    # A reader that slurps /dev/zero must fail here, not take the shared machine's memory.
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def run_process(box: Sandbox, timeout: float = 30) -> Outcome:
    """`python -m builder check` in a child with bounded memory and time (for input that may hang)."""
    argv = [sys.executable, "-m", "builder", *box.argv()]
    env = box.environment()
    env["PYTHONPATH"] = str(ROOT)
    start = time.monotonic()
    try:
        proc = subprocess.run(argv, cwd=box.root / "work", env=env, capture_output=True, text=True,
                              timeout=timeout, preexec_fn=_limit_memory, errors="replace")
    except subprocess.TimeoutExpired:
        return Outcome(-1, "", f"timed out after {timeout}s", time.monotonic() - start)
    return Outcome(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)


def run_forked(box: Sandbox, timeout: float = 30) -> Outcome:
    """The CLI's `main` in a forked child with bounded memory and time: a reader that hangs or slurps
    /dev/zero fails the case instead of the test run, at the cost of a fork, not of a new interpreter."""
    from builder.cli import main

    argv = box.argv()
    out_file, err_file = box.root.parent / "stdout", box.root.parent / "stderr"
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:   # the child: never returns into pytest
        code = 99
        try:
            with open(out_file, "w") as out, open(err_file, "w") as err:
                sys.stdout, sys.stderr = out, err
                os.environ.clear()
                os.environ.update(box.environment())
                os.chdir(box.root / "work")
                _limit_memory()
                signal.signal(signal.SIGALRM, signal.SIG_DFL)
                signal.alarm(int(timeout))
                try:
                    code = main(argv)
                except BaseException:
                    traceback.print_exc()
                out.flush()
                err.flush()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    seconds = time.monotonic() - start
    code = os.waitstatus_to_exitcode(status)
    return Outcome(code, out_file.read_text(errors="replace"), err_file.read_text(errors="replace"), seconds)


def run_inprocess(box: Sandbox, monkeypatch: Any, capsys: Any) -> Outcome:
    """The same command through `builder.cli.main`, in this process: ~20 ms instead of ~700 ms a case."""
    from builder.cli import main

    cluster = box.write()
    for key in [k for k in os.environ if k.startswith("CLUSTERBAKE_")]:
        monkeypatch.delenv(key)
    for key, value in box.environment().items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(box.root / "work")
    start = time.monotonic()
    code = main(box.argv(cluster))
    seconds = time.monotonic() - start
    out = capsys.readouterr()
    return Outcome(code, out.out, out.err, seconds)


@dataclass(frozen=True)
class Case:
    """One hostile input: how to make it, the key the one-line error must name, the exit code."""

    id: str
    make: Callable[[Sandbox], None]
    key: str
    code: int = 1
    process: bool = False       # run in a forked child: the old code hangs or eats memory on it


def judge(case: Case, box: Sandbox, outcome: Outcome, before: set[str], bound: float) -> None:
    lines = outcome.stderr.strip().splitlines()
    assert outcome.code == case.code, outcome
    assert "Traceback" not in outcome.stderr, outcome.stderr
    assert len(lines) == 1, outcome.stderr
    line = lines[0]
    assert line.startswith("clusterbake: error: "), line
    assert case.key in line, line
    assert len(line) < 600, f"the message quotes too much: {len(line)} characters"
    assert outcome.stdout == ""
    assert outcome.seconds < bound, f"took {outcome.seconds:.1f}s"
    assert snapshot(box.root) == before, "the refusal wrote or removed files"
