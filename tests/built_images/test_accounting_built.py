"""`slurm.accounting: true` in the built controller image: slurmdbd and MariaDB, their files and units.

The same lab as the other build tests with accounting switched on; only the controller image is
built (with secrets, and release-like without). The images are read with debugfs; that slurmdbd
records a job is proven by the namespaced cluster test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.built_images.conftest import cli, lab_data, write_cluster
from tests.built_images.image_reader import ImageReader, ini
from tests.built_images.test_shared_services_built import installed

pytestmark = [pytest.mark.slow, pytest.mark.root]

CONF = "/etc/slurm/slurmdbd.conf"
SLURM_UID = "slurm"


@dataclass(frozen=True)
class AccountingLab:
    secrets_dir: Path
    controller: ImageReader       # built with the cluster's secrets
    release: ImageReader          # --no-secrets


@pytest.fixture(scope="module")
def acct(served_base: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> AccountingLab:
    top = tmp_path_factory.mktemp("acctlab")
    secrets_dir = top / "secrets" / "rolelab"
    data = lab_data(served_base, secrets_dir)
    data["slurm"] = {"controller": "head", "accounting": True}
    cluster_file = write_cluster(top / "rolelab.yaml", data)
    out = top / "out"
    cli("build", "--cluster", cluster_file, "--role", "controller", "--out", out)
    cli("build", "--cluster", cluster_file, "--role", "controller", "--no-secrets", "--out", out / "nosecrets")
    return AccountingLab(secrets_dir=secrets_dir, controller=ImageReader(out / "rolelab-controller.img"),
                         release=ImageReader(out / "nosecrets" / "rolelab-controller.img"))


def _settings(text: str) -> dict[str, str]:
    pairs = (line.split("#", 1)[0].strip().partition("=") for line in text.splitlines())
    return {key: value for key, sep, value in pairs if sep}


def test_the_controller_has_slurmdbd_and_mariadb_enabled_in_order(acct: AccountingLab) -> None:
    for image in (acct.controller, acct.release):
        assert {"slurmdbd", "mariadb-server", "slurmctld"} <= installed(image), image.path.name
        for unit in ("mariadb.service", "clusterbake-slurmdbd-db.service", "slurmdbd.service", "slurmctld.service"):
            assert image.enabled(unit), (image.path.name, unit)
        db = ini(image.text("/etc/systemd/system/clusterbake-slurmdbd-db.service"))
        assert db["Unit"]["After"] == "mariadb.service" and db["Unit"]["Before"] == "slurmdbd.service"
        dbd = ini(image.text("/etc/systemd/system/slurmdbd.service.d/10-clusterbake.conf"))
        assert "clusterbake-slurmdbd-db.service" in dbd["Unit"]["After"].split()
        assert dbd["Unit"]["Requires"] == "clusterbake-slurmdbd-db.service"
        ctld = ini(image.text("/etc/systemd/system/slurmctld.service.d/20-clusterbake-accounting.conf"))
        assert ctld["Unit"]["After"] == "slurmdbd.service"
        for name in ("slurmdbd-db", "mariadb-init"):
            script = image.stat(f"/usr/local/lib/clusterbake/{name}")
            assert script is not None and script.mode == 0o755 and script.uid == 0, name
        # MariaDB's system tables are made at first boot, before mariadb.service, when missing.
        assert "mariadb.service.requires" in image.unit_links()["clusterbake-mariadb-init.service"]
        assert image.exists("/usr/bin/mariadb-install-db")
        # slurmdbd.conf's PidFile is in the /run/slurmdbd Debian's unit makes for the slurm user.
        packaged = ini(image.unit_file("slurmdbd.service"))["Service"]
        assert (packaged["User"], packaged["RuntimeDirectory"]) == ("slurm", "slurmdbd")
        assert _settings(image.text(CONF))["PidFile"] == "/run/slurmdbd/slurmdbd.pid"


def test_mariadbs_system_tables_are_made_at_build_time_within_bounds(acct: AccountingLab) -> None:
    """The postinst bootstrap completes in the chroot (bounded by its address-space limit), and the
    image's MariaDB reserves no more for InnoDB's buffer pool than it uses (qemu-user and a Pi)."""
    mysql = acct.controller.accounts()["mysql"]
    for image in (acct.controller, acct.release):
        tables = image.listdir("/var/lib/mysql/mysql")
        assert {"user.frm", "db.frm", "global_priv.frm"} <= set(tables), (image.path.name, sorted(tables))
        assert image.exists("/var/lib/mysql/ibdata1"), image.path.name
        info = image.stat("/var/lib/mysql/mysql")
        assert info is not None and (info.type, info.uid) == ("directory", mysql.uid), image.path.name
        server = ini(image.text("/etc/mysql/mariadb.conf.d/60-clusterbake.cnf"))["mariadbd"]
        assert server["innodb_buffer_pool_size_max"] == server["innodb_buffer_pool_size"] == "128M"


def test_slurmdbd_conf_is_slurms_alone_and_holds_the_password_from_secrets_dir(acct: AccountingLab) -> None:
    slurm = acct.controller.accounts()[SLURM_UID]
    for image in (acct.controller, acct.release):
        info = image.stat(CONF)
        assert info is not None and info.type == "regular", image.path.name
        assert (info.mode, info.uid, info.gid) == (0o600, slurm.uid, slurm.gid), image.path.name
    settings = _settings(acct.controller.text(CONF))
    assert settings["StorageType"] == "accounting_storage/mysql"
    assert settings["DbdHost"] == "head" and settings["SlurmUser"] == "slurm"
    password = (acct.secrets_dir / "slurmdbd.pass").read_text().strip()
    assert len(password) >= 32 and settings["StoragePass"] == password
    assert (acct.secrets_dir / "slurmdbd.pass").stat().st_mode & 0o777 == 0o600


def test_a_release_controller_carries_no_database_password(acct: AccountingLab) -> None:
    text = acct.release.text(CONF)
    assert "StoragePass" not in _settings(text)
    password = (acct.secrets_dir / "slurmdbd.pass").read_text().strip()
    assert password not in text


def test_slurm_conf_sends_accounting_to_slurmdbd_on_the_controller(acct: AccountingLab) -> None:
    for image in (acct.controller, acct.release):
        settings = _settings(image.text("/etc/slurm/slurm.conf"))
        assert settings["AccountingStorageType"] == "accounting_storage/slurmdbd", image.path.name
        assert settings["AccountingStorageHost"] == "head"
        assert settings["AccountingStoragePort"] == _settings(image.text(CONF))["DbdPort"] == "6819"


def test_the_images_pass_fsck(acct: AccountingLab) -> None:
    acct.controller.fsck_root()
    acct.release.fsck_root()
