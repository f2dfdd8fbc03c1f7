"""Issue item 7: role images carry the inventory and find their node at first boot; NODE= images are baked.

The identity service's own command line (read from its unit file in the image) runs IN THE
ARM64 CHROOT of a copy of the produced compute role image, under the image's python3, against a
fake /proc and /sys (and, in one case, a node.txt on the bind-mounted copy of the boot partition).
What it wrote is then read with debugfs; the keyfiles are loaded by the image's own NetworkManager
(`nmcli --offline connection modify` reads a keyfile on stdin, validates it and prints it back).
"""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import dataclass

import pytest

from builder.image import open_image
from tests.built_images.conftest import NODES, Lab
from tests.built_images.image_reader import ImageReader, ini, sh

pytestmark = [pytest.mark.slow, pytest.mark.root]

UNIT = "clusterbake-identity.service"
INVENTORY = "/etc/clusterbake/inventory.json"
KEYFILE = "/etc/NetworkManager/system-connections/eth0.nmconnection"
FAKE = "/var/tmp/clusterbake-fake"
C1_SERIAL = "10000000c0ffee01"
NMCLI_CHECK = ["nmcli", "--offline", "connection", "modify", "connection.autoconnect", "yes"]


def test_role_images_carry_the_inventory_of_their_role_and_enable_the_identity_service(lab: Lab) -> None:
    for role, image in lab.roles.items():
        inventory = json.loads(image.text(INVENTORY))
        expected = [n for n in NODES if n["role"] == role]
        assert inventory["cluster"] == "rolelab" and inventory["role"] == role
        assert [n["name"] for n in inventory["nodes"]] == [n["name"] for n in expected]
        for entry, node in zip(inventory["nodes"], expected, strict=True):
            assert entry["serial"] == node.get("serial") and entry["mac"] == node.get("mac")
            assert {f["path"] for f in entry["files"]} >= {"/etc/hostname", KEYFILE}
        assert image.enabled(UNIT), image.path.name
        assert image.unit_links()[UNIT] == {"sysinit.target.wants"}
        assert image.exists("/usr/local/lib/clusterbake/identity.py")
    assert lab.nosecrets.enabled(UNIT)


def test_node_images_have_the_identity_baked_in_and_no_identity_service(lab: Lab) -> None:
    assert not lab.node.enabled(UNIT)
    assert not lab.node.exists(INVENTORY)
    assert not lab.node.exists(f"/etc/systemd/system/{UNIT}")
    assert "node c1 (10.9.0.101)" in lab.node.boot_text("clusterbake.txt")


@dataclass(frozen=True)
class Boot:
    node: dict[str, str]                              # the node the board must have become
    image: ImageReader
    run: subprocess.CompletedProcess[bytes]
    nm_written: subprocess.CompletedProcess[bytes]    # nmcli on the keyfile the service wrote
    nm_baked: subprocess.CompletedProcess[bytes]      # nmcli on the NODE= image's baked keyfile


@pytest.fixture(scope="module", params=["serial", "node.txt"])
def first_boot(request: pytest.FixtureRequest, lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Boot:
    """The compute role image boots on c1's board (serial); with node.txt naming c2 the file wins."""
    work = tmp_path_factory.mktemp("identity")
    copy = work / "compute.img"
    subprocess.run(["cp", "--sparse=always", lab.roles["compute"].path, copy], check=True)
    reader = ImageReader(copy)
    if request.param == "node.txt":
        (work / "node.txt").write_text("# chosen by hand\nc2\n")
        sh("mcopy", "-i", f"{copy}@@{reader.boot_offset}", work / "node.txt", "::node.txt")
    unit = reader.unit_file(UNIT)
    [exec_start] = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("ExecStart=")]
    baked = lab.node.read(KEYFILE)
    with open_image(copy) as img:
        img.write_file(f"{FAKE}/proc/device-tree/serial-number", C1_SERIAL.encode() + b"\0", mode=0o444)
        img.write_file(f"{FAKE}/proc/cpuinfo", b"processor\t: 0\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n",
                       mode=0o444)
        img.write_file(f"{FAKE}/sys/class/net/eth0/address", b"d8:3a:dd:99:99:99\n", mode=0o444)
        img.write_file(f"{FAKE}/sys/class/net/lo/address", b"00:00:00:00:00:00\n", mode=0o444)
        with img.chroot() as chroot:
            env = {"CLUSTERBAKE_PROC": f"{FAKE}/proc", "CLUSTERBAKE_SYS": f"{FAKE}/sys"}
            run = chroot.run(shlex.split(exec_start), env=env, capture=True)
            nm_written = chroot.run(["sh", "-c", f'exec "$@" < {KEYFILE}', "nmcli", *NMCLI_CHECK], capture=True,
                                    check=False)
            nm_baked = chroot.run(NMCLI_CHECK, input=baked, capture=True, check=False)
    node = next(n for n in NODES if n["name"] == ("c2" if request.param == "node.txt" else "c1"))
    return Boot(node=node, image=reader, run=run, nm_written=nm_written, nm_baked=nm_baked)


def test_the_identity_service_writes_the_boards_hostname_hosts_and_keyfile(first_boot: Boot) -> None:
    image, node = first_boot.image, first_boot.node
    assert image.text("/etc/hostname") == f"{node['name']}\n"
    assert image.text("/var/lib/clusterbake/identity") == f"{node['name']}\n"
    hosts = [line.split() for line in image.text("/etc/hosts").splitlines() if line and not line.startswith("#")]
    for other in NODES:
        assert [other["ip"], other["name"]] in hosts
    assert hosts[-1] == ["127.0.1.1", node["name"]] and sum(h[0] == "127.0.1.1" for h in hosts) == 1
    info = image.stat(KEYFILE)
    assert info is not None and (info.mode, info.uid, info.gid) == (0o600, 0, 0)
    assert ini(image.text(KEYFILE))["ipv4"]["address1"] == f"{node['ip']}/24,10.9.0.1"
    assert f"this board is {node['name']}".encode() in first_boot.run.stdout
    image.fsck_root()


def test_the_images_own_networkmanager_accepts_the_keyfiles(first_boot: Boot) -> None:
    node = first_boot.node
    for proc, ip in ((first_boot.nm_written, node["ip"]), (first_boot.nm_baked, "10.9.0.101")):
        assert proc.returncode == 0, proc.stderr.decode()
        loaded = ini("\n".join(line for line in proc.stdout.decode().splitlines()
                               if not line.startswith("Warning")))
        assert loaded["ipv4"]["method"] == "manual"
        assert loaded["ipv4"]["address1"] == f"{ip}/24"
        assert loaded["ipv4"]["gateway"] == "10.9.0.1"
        assert loaded["ipv4"]["dns"] == "10.9.0.1;9.9.9.9;"
        assert loaded["connection"]["interface-name"] == "eth0"
