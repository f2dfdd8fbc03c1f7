"""remove_leftover_links: the enablement links of a unit that is gone, found through the root's safe file layer."""

from __future__ import annotations

from pathlib import Path

from builder.image.image_root import DirectoryRoot
from builder.provision.services import remove_leftover_links, unit_exists


def test_only_dangling_links_naming_the_unit_go(tmp_path: Path) -> None:
    root = tmp_path / "root"
    system = root / "etc/systemd/system"
    (system / "sysinit.target.wants").mkdir(parents=True)
    (system / "multi-user.target.wants").mkdir()
    (root / "usr/lib/systemd/system").mkdir(parents=True)
    (root / "usr/lib/systemd/system/chrony.service").write_text("[Unit]\n")
    gone = "/usr/lib/systemd/system/systemd-timesyncd.service"
    (system / "sysinit.target.wants/systemd-timesyncd.service").symlink_to(gone)
    (system / "dbus-org.freedesktop.timesync1.service").symlink_to(gone)
    (system / "multi-user.target.wants/chrony.service").symlink_to("/usr/lib/systemd/system/chrony.service")
    # on the host this path exists; inside the image it does not, so the link is dangling there
    host_unit = tmp_path / "systemd-timesyncd.service"
    host_unit.write_text("[Unit]\n")
    (system / "multi-user.target.wants/systemd-timesyncd.service").symlink_to(host_unit)
    img = DirectoryRoot(root)
    assert unit_exists(img, "chrony") and not unit_exists(img, "systemd-timesyncd")
    removed = remove_leftover_links(img, "systemd-timesyncd.service")
    assert sorted(removed) == [
        "/etc/systemd/system/dbus-org.freedesktop.timesync1.service",
        "/etc/systemd/system/multi-user.target.wants/systemd-timesyncd.service",
        "/etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service",
    ]
    assert (system / "multi-user.target.wants/chrony.service").is_symlink()
    assert host_unit.exists()
