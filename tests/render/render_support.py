"""Helpers for the render tests: paths of the shipped data, the small lab, and plan look-ups."""

from __future__ import annotations

import configparser
import dataclasses
from pathlib import Path

from builder.config import Cluster
from builder.paths import repo_root
from builder.render import ImageFile, RenderPlan, render_plan

ROOT = repo_root()
PROFILES = ROOT / "profiles"
OVERLAYS = ROOT / "overlays"

# Real public keys (ssh-keygen; the private halves were thrown away): the loader parses keys.
ALICE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDXW0RcQbTUaRfYr8eTHvIizrqZ8l3RC6KXIEpv/hyD5 alice@laptop"
BOB_KEYS = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMUHlYDmk56VJXVODOmnQQb9MXtx+xnpAWa7XoiJSGf4 bob@a",
            "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCo4RY66BOVbyzXt6yAka9epZLvH17hpuU/tb/TRqsMceeLHITTI3D2hht4GvdT"
            "pcKUOuXPdQL530KAHEMXEFi+2wCjqMz6uMHXkoNcxfBojYX2kbbgnVdhPd0kTRr9CqRMJ7g604Yk+CRJ9nUiYjEkSNVDgibNdkGV"
            "a6XeJegpzUq4d6NvRZw7oOjd30MJ8S/N6J+wrPYYyn+JIMuyqq2HruAbTcuTMJYhWRHnVOTJPYqnuewRblnHOf353dskDBhxxjKM"
            "1Jfsy2HYyC6BPX/esm3Vmb7DORASdSNGhPZEnyGNzHJBNPCKYynpdb8Yxzl8Lx+VQY/lh2HPaTvSUvbf bob@b"]

SMALL = """\
name: minilab
base_image:
  url: https://example.org/raspios.img.xz
  sha256: "{sha}"
  signature_url: https://example.org/raspios.img.xz.sig
  signing_key: https://example.org/key.gpg
  fingerprint: 54C3DD610D9D1B4AF82A37758738CD6B956F460C
network:
  subnet: 192.168.7.0/24
  gateway: 192.168.7.1
  dns: [192.168.7.1, 9.9.9.9]
  domain: lab.example
time: {{server: clock}}
slurm: {{controller: boss, partition: batch}}
nodes:
  - {{name: boss,  role: controller, ip: 192.168.7.2, model: pi5-4gb}}
  - {{name: clock, role: timeserver, ip: 192.168.7.3, model: pi4-4gb, serial: 10000000c10c4a11}}
  - {{name: c1,    role: compute,    ip: 192.168.7.11, model: pi5-8gb, serial: d83add36, mac: "2c:cf:67:00:00:11"}}
  - {{name: c2,    role: compute,    ip: 192.168.7.12, model: pi5-16gb, memory_mb: 15000,
      mac: "2c:cf:67:00:00:12"}}
users:
  - {{name: alice, uid: 2001, groups: [sudo], ssh_keys: ["{alice}"]}}
  - {{name: bob, uid: 2002,
      ssh_keys: ["{bob_a}", "{bob_b}"]}}
ssh: {{password_authentication: true}}
""".format(sha="0" * 64, alice=ALICE_KEY, bob_a=BOB_KEYS[0], bob_b=BOB_KEYS[1])


def private(cluster: Cluster, tmp_path: Path) -> Cluster:
    """Never touch the real ~/.config: each test's munge key lives in its tmp_path."""
    return dataclasses.replace(cluster, secrets_dir=tmp_path / "secrets" / cluster.name)


def plan(cluster: Cluster, **kwargs: object) -> RenderPlan:
    return render_plan(cluster, profiles_dir=PROFILES, overlays_dir=OVERLAYS, **kwargs)  # type: ignore[arg-type]


def file(p: RenderPlan, path: str) -> ImageFile:
    found = [f for f in p.files if f.path == path]
    assert found, f"{path} not in plan: {[f.path for f in p.files]}"
    return found[0]


def text(p: RenderPlan, path: str) -> str:
    return file(p, path).data.decode()


def paths(p: RenderPlan) -> set[str]:
    return {f.path for f in p.files}


def unit(body: str) -> configparser.ConfigParser:
    """A systemd unit file parsed (keys keep their case)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(body)
    return parser
