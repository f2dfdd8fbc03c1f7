"""`slurm.accounting`: slurmdbd and MariaDB on the controller when on, nothing of them when off."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from builder.config import Cluster
from builder.config.roles import available_roles
from builder.errors import InputError
from builder.layers import role_layers
from builder.render import render_plan
from builder.render.profiles import load_profile
from tests.render.render_support import OVERLAYS, PROFILES, file, paths, plan, text, unit

CONF = "/etc/slurm/slurmdbd.conf"
SLURM_CONF = "/etc/slurm/slurm.conf"
DB_UNIT = "/etc/systemd/system/clusterbake-slurmdbd-db.service"
ROLES = ("controller", "auxiliary", "compute")


def on(cluster: Cluster) -> Cluster:
    return dataclasses.replace(cluster, slurm_accounting=True)


def settings(body: str) -> dict[str, str]:
    pairs = (line.split("#", 1)[0].strip().partition("=") for line in body.splitlines())
    return {key: value for key, sep, value in pairs if sep}


def test_off_by_default_nothing_of_it_in_any_image(reference: Cluster) -> None:
    assert reference.slurm_accounting is False
    for role in ROLES:
        p = plan(reference, role=role)
        assert not {"slurmdbd", "mariadb-server"} & set(p.packages), role
        assert not {"slurmdbd.service", "mariadb.service"} & set(p.enable), role
        assert not any("slurmdbd" in path for path in paths(p)), role
        assert SLURM_CONF not in paths(p) or "Accounting" not in text(p, SLURM_CONF), role
    assert not (reference.secrets_dir / "slurmdbd.pass").exists()


def test_on_the_controller_gets_slurmdbd_mariadb_and_their_units(reference: Cluster) -> None:
    p = plan(on(reference), role="controller")
    assert {"slurmctld", "slurmdbd", "mariadb-server"} <= set(p.packages)
    assert {"mariadb.service", "clusterbake-slurmdbd-db.service", "slurmdbd.service",
            "slurmctld.service"} <= set(p.enable)
    # Merged after the controller's own profiles: its packages join the controller's top layer,
    # above the `common` and `login` layers every controller shares.
    assert [s.profile for s in p.profile.package_steps] == ["common", "login", "controller", "accounting"]
    plain = role_layers(Path("base.img"), plan(reference, role="controller"))
    layers = role_layers(Path("base.img"), p)
    assert [layer.key for layer in layers[:-1]] == [layer.key for layer in plain[:-1]]
    assert {"slurmctld", "slurmdbd", "mariadb-server"} <= set(layers[-1].new)
    conf = file(p, CONF)
    assert (conf.mode, conf.owner, conf.group) == (0o600, "slurm", "slurm")
    values = settings(conf.data.decode())
    assert values["StorageType"] == "accounting_storage/mysql" and values["DbdHost"] == "head"
    assert values["StoragePass"] == (reference.secrets_dir / "slurmdbd.pass").read_text().strip()


def test_only_the_controller_runs_it_and_every_slurm_conf_says_so(reference: Cluster) -> None:
    cluster = on(reference)
    confs = set()
    for role in ROLES:
        p = plan(cluster, role=role)
        if SLURM_CONF in paths(p):      # configless: the controller's and login nodes'; slurmd fetches it
            confs.add(text(p, SLURM_CONF))
        if role != "controller":
            assert "slurmdbd" not in p.packages and CONF not in paths(p), role
    assert len(confs) == 1
    values = settings(confs.pop())
    assert values["AccountingStorageType"] == "accounting_storage/slurmdbd"
    assert values["AccountingStorageHost"] == "head" and values["AccountingStoragePort"] == "6819"


def test_slurm_conf_off_is_the_on_file_without_the_accounting_lines(reference: Cluster) -> None:
    off = text(plan(reference, role="controller"), SLURM_CONF).splitlines()
    with_it = text(plan(on(reference), role="controller"), SLURM_CONF).splitlines()
    added = [line for line in with_it if line not in off]
    assert [line for line in added if not line.startswith("#")] == [
        "AccountingStorageType=accounting_storage/slurmdbd", "AccountingStorageHost=head",
        "AccountingStoragePort=6819"]
    assert [line for line in with_it if line in off] == off


def test_the_password_is_made_once_private_and_kept(reference: Cluster) -> None:
    cluster = on(reference)
    first = settings(text(plan(cluster, role="controller"), CONF))["StoragePass"]
    path = reference.secrets_dir / "slurmdbd.pass"
    assert path.stat().st_mode & 0o777 == 0o600 and len(first) >= 32 and first.isalnum()
    assert settings(text(plan(cluster, role="controller"), CONF))["StoragePass"] == first


def test_a_release_image_carries_no_password_and_makes_none_in_secrets_dir(reference: Cluster) -> None:
    p = plan(on(reference), role="controller", secrets=False)
    assert "StoragePass" not in settings(text(p, CONF))
    assert file(p, CONF).mode == 0o600
    assert not (reference.secrets_dir / "slurmdbd.pass").exists()


@pytest.mark.parametrize(("content", "mode", "expected", "fix"), [
    ("short\n", 0o600, "is not 16 to 128 letters and digits", "delete"),
    ("abc'; DROP DATABASE x; --" * 2 + "\n", 0o600, "is not 16 to 128 letters and digits", "delete"),
    ("a" * 40 + "\n", 0o644, "is readable by others (mode 0644)", "chmod 600"),
])
def test_a_bad_password_file_is_one_clear_error(reference: Cluster, content: str, mode: int,
                                                 expected: str, fix: str) -> None:
    reference.secrets_dir.mkdir(parents=True, mode=0o700)
    path = reference.secrets_dir / "slurmdbd.pass"
    path.write_text(content)
    os.chmod(path, mode)
    with pytest.raises(InputError) as err:
        plan(on(reference), role="controller")
    assert str(err.value) == f"{path}: {expected}"
    assert err.value.hint is not None and err.value.hint.startswith(fix)


def test_the_first_boot_unit_orders_mariadb_then_the_database_then_slurmdbd_then_slurmctld(
        reference: Cluster) -> None:
    p = plan(on(reference), role="controller")
    db = unit(text(p, DB_UNIT))
    assert db["Unit"]["Requires"] == "mariadb.service" and db["Unit"]["After"] == "mariadb.service"
    assert db["Unit"]["Before"] == "slurmdbd.service" and db["Service"]["Type"] == "oneshot"
    dbd = unit(text(p, "/etc/systemd/system/slurmdbd.service.d/10-clusterbake.conf"))
    assert dbd["Unit"]["Requires"] == "clusterbake-slurmdbd-db.service"
    assert "clusterbake-slurmdbd-db.service" in dbd["Unit"]["After"].split()
    ctld = unit(text(p, "/etc/systemd/system/slurmctld.service.d/20-clusterbake-accounting.conf"))
    assert ctld["Unit"]["After"] == "slurmdbd.service" and ctld["Unit"]["Wants"] == "slurmdbd.service"
    init = unit(text(p, "/etc/systemd/system/clusterbake-mariadb-init.service"))
    assert init["Unit"]["Before"] == "mariadb.service" and init["Install"]["RequiredBy"] == "mariadb.service"
    assert init["Unit"]["ConditionPathExists"] == "!/var/lib/mysql/mysql"
    assert "clusterbake-mariadb-init.service" in p.enable
    script = text(p, "/usr/local/lib/clusterbake/slurmdbd-db")
    assert "CREATE DATABASE IF NOT EXISTS" in script and "CREATE USER IF NOT EXISTS" in script
    register = file(p, "/usr/local/lib/clusterbake/slurm-add-cluster")
    assert register.mode == 0o755 and "cluster=picluster" in register.data.decode()


def test_accounting_is_an_add_on_not_a_role() -> None:
    assert "accounting" not in available_roles(PROFILES)
    with pytest.raises(InputError, match="has no profile"):
        load_profile(PROFILES, "accounting")


def test_a_profiles_folder_without_the_add_on_is_one_error_naming_the_key(reference: Cluster,
                                                                          tmp_path: Path) -> None:
    folder = tmp_path / "profiles"
    shutil.copytree(PROFILES, folder)
    (folder / "accounting.yaml").unlink()
    plan_off = render_plan(reference, role="controller", profiles_dir=folder, overlays_dir=OVERLAYS)
    assert "slurmdbd" not in plan_off.packages
    with pytest.raises(InputError) as err:
        render_plan(on(reference), role="controller", profiles_dir=folder, overlays_dir=OVERLAYS)
    assert str(err.value).startswith("cluster.yaml: slurm.accounting: needs the profile profiles/accounting.yaml")
