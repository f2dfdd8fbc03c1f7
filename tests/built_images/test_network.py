"""Issue item 2: the static network of a NODE= image, read from its root file system; cloud-init kept out."""

from __future__ import annotations

import pytest
import yaml

from tests.built_images.conftest import NODES, Lab
from tests.built_images.image_reader import ini

pytestmark = [pytest.mark.slow, pytest.mark.root]

KEYFILE = "/etc/NetworkManager/system-connections/eth0.nmconnection"


def test_the_node_image_has_its_keyfile_root_only_with_address_gateway_and_dns(lab: Lab) -> None:
    info = lab.node.stat(KEYFILE)
    assert info is not None and info.type == "regular"
    assert (info.mode, info.uid, info.gid) == (0o600, 0, 0), "NetworkManager ignores keyfiles others can read"
    keyfile = ini(lab.node.text(KEYFILE))
    assert keyfile["connection"]["type"] == "ethernet"
    assert keyfile["connection"]["interface-name"] == "eth0"
    assert keyfile["ipv4"]["method"] == "manual"
    assert keyfile["ipv4"]["address1"] == "10.9.0.101/24,10.9.0.1"
    assert keyfile["ipv4"]["dns"] == "10.9.0.1;9.9.9.9;"
    assert keyfile["ipv6"]["method"] == "disabled"


def test_only_the_node_image_has_a_keyfile_and_its_own_hostname(lab: Lab) -> None:
    assert lab.node.text("/etc/hostname") == "c1\n"
    for image in [*lab.roles.values(), lab.nosecrets]:
        assert not image.exists(KEYFILE), f"{image.path.name}: a role image gets its keyfile at first boot"
        assert image.text("/etc/hostname").strip() not in {n["name"] for n in NODES}


def test_every_image_lists_every_node_in_hosts(lab: Lab) -> None:
    for image in lab.all:
        hosts = [line.split() for line in image.text("/etc/hosts").splitlines() if line and not line.startswith("#")]
        for node in NODES:
            assert [node["ip"], node["name"]] in hosts, f"{image.path.name}: {node['name']} missing from /etc/hosts"
    own = [fields for fields in (line.split() for line in lab.node.text("/etc/hosts").splitlines())
           if fields and fields[0] == "127.0.1.1"]
    assert own == [["127.0.1.1", "c1"]]


def test_cloud_init_may_not_configure_the_network_or_rename_the_node(lab: Lab) -> None:
    for image in lab.all:
        network = yaml.safe_load(image.text("/etc/cloud/cloud.cfg.d/99-clusterbake-network.cfg"))
        assert network == {"network": {"config": "disabled"}}
        names = yaml.safe_load(image.text("/etc/cloud/cloud.cfg.d/99-clusterbake-hostname.cfg"))
        assert names["preserve_hostname"] is True and names["manage_etc_hosts"] is False
