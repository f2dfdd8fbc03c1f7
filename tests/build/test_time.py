"""Issue item 3: one time for the cluster. Chrony's configuration and the enablement links, per image."""

from __future__ import annotations

import pytest

from tests.build.conftest import Lab
from tests.build.image_reader import ImageReader

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
    gpsd = dict(line.split("=", 1) for line in _directives(gps, "/etc/default/gpsd"))
    assert gpsd["DEVICES"].strip('"').split()[0] == "/dev/serial0"
    assert gpsd["START_DAEMON"] == '"true"'
    assert gps.enabled("gpsd.service")
    for image in _clients(lab):
        assert not image.exists("/usr/sbin/gpsd") and not image.enabled("gpsd.service")


def test_chrony_runs_everywhere_and_timesyncd_nowhere(lab: Lab) -> None:
    for image in lab.all:
        assert image.enabled("chrony.service"), image.path.name
        links = image.unit_links()
        assert not links.get("systemd-timesyncd.service", set()) - {"masked"}, image.path.name
        assert image.stat("/usr/lib/systemd/system/chrony.service") is not None
