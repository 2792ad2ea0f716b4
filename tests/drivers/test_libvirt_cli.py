"""`coldmig migrate/confirm/revert` and `coldmig demo --driver libvirt` on the real hosts."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from coldmig_fsm import Flavor, Instance, PowerState
from coldmig_fsm.cli.app import app
from coldmig_fsm.drivers.libvirt import LibvirtFabric, VolumeStreamTransport

from .conftest import HOSTS_ENV

pytestmark = pytest.mark.libvirt_hosts

UUID = "5b0a7d1c-93a2-4c55-b1d8-0e6f4a2c9d10"
TINY = Flavor("v.tiny", vcpus=1, ram_mb=64, root_gb=1)


def test_migrate_then_revert_then_migrate_and_confirm(
    real_hosts: dict[str, tuple[str, str]], tmp_path: Path
) -> None:
    (ua, ia), (ub, ib) = real_hosts["host1"], real_hosts["host2"]
    fabric = LibvirtFabric()
    a = fabric.add_host("host1", ua, ia, VolumeStreamTransport())
    b = fabric.add_host("host2", ub, ib, VolumeStreamTransport())
    vm = Instance(uuid=UUID, name="x", project_id="p", host="host1", flavor=TINY.id)
    a.spawn(vm, TINY, power_on=True)
    hosts = ["--source", ua, "--dest", ub, "--source-images", ia, "--dest-images", ib]
    db = ["--db", str(tmp_path / "cli.sqlite")]
    runner = CliRunner()
    name = f"coldmig-{UUID}"

    moved = runner.invoke(app, ["migrate", name, *hosts, *db, "--shutdown-timeout", "1"])
    assert moved.exit_code == 0, moved.output
    assert "copy done" in moved.output
    assert "outcome: succeeded" in moved.output
    assert b.get_info(vm).power_state is PowerState.RUNNING

    back = runner.invoke(app, ["revert", name, *hosts, *db])
    assert back.exit_code == 0, back.output
    assert (a.list_instances(), b.list_instances()) == ([UUID], [])
    assert a.get_info(vm).power_state is PowerState.RUNNING

    resized = runner.invoke(
        app, ["migrate", UUID, *hosts, *db, "--flavor", "v.medium", "--shutdown-timeout", "1"]
    )
    assert resized.exit_code == 0, resized.output
    assert "<vcpu placement='static'>2</vcpu>" in b.domain_xml(UUID)
    done = runner.invoke(app, ["confirm", name, *hosts, *db])
    assert done.exit_code == 0, done.output
    assert (a.list_instances(), b.list_instances()) == ([], [UUID])
    assert a.volumes() == []
    fabric.close()


def test_demo_on_libvirt(real_hosts: dict[str, tuple[str, str]], tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["demo", "--driver", "libvirt", "--hosts-env", str(HOSTS_ENV), "--db", str(tmp_path / "d")],
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("outcome: succeeded") == 6
    assert "Guests removed from the hosts" in result.output
