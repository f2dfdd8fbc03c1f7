"""Issue item 3: one time for the cluster. Chrony's configuration and the enablement links, per image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.built_images.conftest import Lab, cli, write_cluster
from tests.built_images.image_reader import ImageReader, config_sections

pytestmark = [pytest.mark.slow, pytest.mark.root]


def _directives(image: ImageReader, path: str) -> list[str]:
    return [" ".join(line.split()) for line in image.text(path).splitlines() if line.strip()
            and not line.lstrip().startswith("#")]


def _clients(lab: Lab) -> list[ImageReader]:
    return [lab.roles["controller"], lab.roles["compute"], lab.node, lab.nosecrets]


def test_clients_follow_only_the_time_server(lab: Lab) -> None:
    for image in _clients(lab):
        conf = _directives(image, "/etc/chrony/chrony.conf")
        assert "server 10.9.0.20 iburst prefer" in conf, image.path.name
        assert "makestep 1 3" in conf
        sources = [d for d in conf if d.split()[0] in ("server", "pool", "peer", "refclock", "sourcedir", "confdir")]
        assert sources == ["server 10.9.0.20 iburst prefer"], f"{image.path.name}: no other time source: {sources}"


def test_the_time_server_reads_gps_and_pps_and_serves_the_subnet(lab: Lab) -> None:
    gps = lab.roles["auxiliary"]
    conf = _directives(gps, "/etc/chrony/chrony.conf")
    nmea = [d for d in conf if d.startswith("refclock SHM 0")]
    pps = [d for d in conf if d.startswith("refclock PPS")]
    assert len(nmea) == 1 and "refid NMEA" in nmea[0]
    assert len(pps) == 1 and pps[0].split()[2] == "/dev/pps0" and "lock NMEA" in pps[0]
    assert "allow 10.9.0.0/24" in conf
    assert any(d.startswith("local stratum ") for d in conf)
    assert not any(d.startswith(("server ", "pool ")) for d in conf), "a stratum-1 server follows no other server"
    # A role image learns its board at first boot: gpsd's device (the Pi 4's /dev/serial0) comes with
    # the node's files from the inventory, and gpsd starts only after the identity service wrote them.
    inventory = json.loads(gps.text("/etc/clusterbake/inventory.json"))
    [node] = inventory["nodes"]
    [default] = [f["text"] for f in node["files"] if f["path"] == "/etc/default/gpsd"]
    gpsd = dict(line.split("=", 1) for line in default.splitlines() if line and not line.startswith("#"))
    assert gpsd["DEVICES"].strip('"').split() == ["/dev/serial0", "/dev/pps0"]
    assert gpsd["START_DAEMON"] == '"true"'
    drop_in = _directives(gps, "/etc/systemd/system/gpsd.service.d/clusterbake.conf")
    assert "After=clusterbake-identity.service" in drop_in
    assert gps.enabled("gpsd.service")
    for image in _clients(lab):
        assert not image.exists("/usr/sbin/gpsd") and not image.enabled("gpsd.service")


def test_chrony_runs_everywhere_and_timesyncd_nowhere(lab: Lab) -> None:
    for image in lab.all:
        assert image.enabled("chrony.service"), image.path.name
        links = image.unit_links()
        assert not links.get("systemd-timesyncd.service", set()) - {"masked"}, image.path.name
        assert image.stat("/usr/lib/systemd/system/chrony.service") is not None


def test_a_pi5_time_server_image_reads_gps_on_uart0(lab: Lab, tmp_path: Path) -> None:
    """The lab's time server moved to a Pi 5: its NODE= image enables UART0 on GPIO14/15 for the Pi 5
    and gpsd reads /dev/ttyAMA0 (a Pi 5's /dev/serial0 is the debug connector). Same role base: seconds."""
    data = yaml.safe_load(lab.cluster_file.read_text())
    next(n for n in data["nodes"] if n["name"] == "gps")["model"] = "pi5-8gb"
    cluster = write_cluster(tmp_path / "pi5.yaml", data)
    cli("build", "--cluster", cluster, "--node", "gps", "--out", tmp_path / "out")
    image = ImageReader(tmp_path / "out" / "rolelab-gps.img")
    sections = config_sections(image.boot_text("config.txt"))
    assert ("[pi5]", "dtparam=uart0=on") in sections
    assert not [s for s, line in sections if line == "enable_uart=1"], "no Pi 4 among its boards"
    assert ("[all]", "dtoverlay=pps-gpio,gpiopin=18") in sections
    gpsd = dict(line.split("=", 1) for line in _directives(image, "/etc/default/gpsd"))
    assert gpsd["DEVICES"].strip('"').split() == ["/dev/ttyAMA0", "/dev/pps0"]
    image.fsck_root()
