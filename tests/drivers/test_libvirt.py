"""The libvirt driver on ``test:///`` hosts: state handling and error mapping.

The test driver keeps guests and volumes in memory and cannot move bytes, so the disk copy
is a test transport here (the real copies are in ``test_libvirt_hosts.py``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import attrs
import pytest

from coldmig_fsm import Cloud, CloudConfig, Flavor, Instance, Outcome, PowerState, VmState
from coldmig_fsm.drivers import DiskInfo, HypervisorDriver
from coldmig_fsm.drivers.libvirt import (
    DiskCopy,
    DiskTransport,
    LibvirtDriver,
    LibvirtFabric,
    LocalCopyTransport,
    MigrationProgress,
    VolumeStreamTransport,
    disk_name,
    guest_name,
    read_hosts_env,
)
from coldmig_fsm.exceptions import HypervisorError, InstanceFaultRollback
from coldmig_fsm.records import Migration, Resources
from coldmig_fsm.states import MigrationStatus, MigrationType

TINY = Flavor("t.tiny", vcpus=1, ram_mb=64, root_gb=1)
WIDE = Flavor("t.wide", vcpus=2, ram_mb=128, root_gb=1)
FAST = CloudConfig(shutdown_timeout=1, shutdown_retry_interval=1)
UUID = "6a4c4a3e-2b1f-4f4e-9c58-3f5f9b1f0c11"


@attrs.define
class ScriptedTransport:
    """Moves no bytes; records each copy; fails when ``fail`` is set."""

    fail: str | None = None
    copies: list[tuple[str, str]] = attrs.Factory(list)

    @property
    def name(self) -> str:
        return "scripted"

    def copy(self, copy: DiskCopy, progress: object) -> int:
        self.copies.append((str(copy.source.name()), str(copy.target.name())))
        if self.fail is not None:
            raise HypervisorError(self.fail)
        return copy.size


@attrs.define
class Hosts:
    fabric: LibvirtFabric
    a: LibvirtDriver
    b: LibvirtDriver
    transport: ScriptedTransport
    events: list[MigrationProgress]

    def cloud(self) -> Cloud:
        return self.fabric.cloud([TINY, WIDE], capacity=Resources(8, 16384, 100), config=FAST)


@pytest.fixture
def hosts(node_files: tuple[Path, Path], tmp_path: Path) -> Hosts:
    transport = ScriptedTransport()
    events: list[MigrationProgress] = []
    fabric = LibvirtFabric()
    drivers = [
        fabric.add_host(
            name,
            f"test://{node}",
            tmp_path / f"{name}-images",
            transport,
            progress=events.append,
        )
        for name, node in zip(("host-a", "host-b"), node_files, strict=True)
    ]
    return Hosts(fabric, drivers[0], drivers[1], transport, events)


def instance(uuid: str = UUID, host: str = "host-a") -> Instance:
    return Instance(uuid=uuid, name="vm1", project_id="demo", host=host, flavor=TINY.id)


def domain_size(driver: LibvirtDriver, uuid: str) -> tuple[int, int]:
    root = ET.fromstring(driver.domain_xml(uuid))
    return int(root.findtext("vcpu") or 0), int(root.findtext("memory") or 0)


# -- the driver alone --------------------------------------------------------------------


def test_is_a_hypervisor_driver_with_real_disks(hosts: Hosts) -> None:
    assert isinstance(hosts.a, HypervisorDriver)
    assert isinstance(hosts.transport, DiskTransport)
    assert hosts.a.capabilities.supports_migrate_to_same_host is False
    assert hosts.a.capabilities.has_real_disks is True


def test_spawn_running_defines_a_uuid_named_guest_and_disk(hosts: Hosts) -> None:
    hosts.a.spawn(instance(), TINY, power_on=True)
    assert hosts.a.list_instances() == [UUID]
    assert hosts.b.list_instances() == []
    assert hosts.a.get_info(instance()).power_state is PowerState.RUNNING
    root = ET.fromstring(hosts.a.domain_xml(UUID))
    assert root.findtext("name") == f"coldmig-{UUID}"
    assert domain_size(hosts.a, UUID) == (1, 64 * 1024)
    assert hosts.a.volumes() == [f"{UUID}-disk0.qcow2"]
    source = root.find("devices/disk/source")
    assert source is not None
    assert source.get("file") == str(hosts.a.image_dir / f"{UUID}-disk0.qcow2")


def test_spawn_stopped_stays_shut_off(hosts: Hosts) -> None:
    hosts.a.spawn(instance(), TINY, power_on=False)
    assert hosts.a.get_info(instance()).power_state is PowerState.SHUTDOWN


def test_power_off_then_on(hosts: Hosts) -> None:
    hosts.a.spawn(instance(), TINY, power_on=True)
    hosts.a.power_off(instance(), timeout=1, retry_interval=1)
    assert hosts.a.get_info(instance()).power_state is PowerState.SHUTDOWN
    hosts.a.power_on(instance())
    assert hosts.a.get_info(instance()).power_state is PowerState.RUNNING


def test_unknown_guest_has_no_state_and_destroy_is_idempotent(hosts: Hosts) -> None:
    assert hosts.a.get_info(instance()).power_state is PowerState.NOSTATE
    hosts.a.destroy(instance())
    hosts.a.spawn(instance(), TINY, power_on=True)
    hosts.a.destroy(instance())
    hosts.a.destroy(instance())
    assert hosts.a.list_instances() == []
    assert hosts.a.volumes() == []


def test_power_on_of_a_missing_guest_is_a_hypervisor_error(hosts: Hosts) -> None:
    with pytest.raises(HypervisorError, match=f"host-a: power_on: no guest {UUID}"):
        hosts.a.power_on(instance())


@pytest.mark.parametrize(
    "bad", ["../../etc/passwd", "vm1", UUID.upper(), UUID + "/..", "", "{" + UUID + "}"]
)
def test_names_come_only_from_canonical_uuids(hosts: Hosts, bad: str) -> None:
    with pytest.raises(HypervisorError, match="not an instance uuid"):
        hosts.a.spawn(attrs.evolve(instance(), uuid=bad or "x"), TINY, power_on=False)
    with pytest.raises(HypervisorError, match="not an instance uuid"):
        guest_name(bad)
    with pytest.raises(HypervisorError, match="not an instance uuid"):
        disk_name(bad, 0)
    assert hosts.a.list_instances() == []


def test_image_dir_must_be_absolute_without_dot_dot(hosts: Hosts) -> None:
    for bad in ("images", "/srv/../etc"):
        with pytest.raises(ValueError, match="absolute path without"):
            LibvirtDriver("x", "test:///default", Path(bad), hosts.transport)


def test_unreachable_host_is_a_hypervisor_error(tmp_path: Path) -> None:
    driver = LibvirtDriver(
        "gone",
        f"qemu+unix:///system?socket={tmp_path}/no-such-socket",
        tmp_path,
        ScriptedTransport(),
    )
    with pytest.raises(HypervisorError, match="gone: cannot connect to"):
        driver.list_instances()


def test_a_pool_elsewhere_is_refused(hosts: Hosts, tmp_path: Path) -> None:
    hosts.a.pool()
    other = LibvirtDriver(
        "host-a2", hosts.a.uri, tmp_path / "other", hosts.transport, open_connection=lambda _: conn
    )
    conn = hosts.a.connection()
    with pytest.raises(HypervisorError, match=r"is at .*host-a-images, not at the image directory"):
        other.pool()


# -- moves through the cloud ---------------------------------------------------------------


def test_migrate_then_confirm_moves_the_guest(hosts: Hosts) -> None:
    cloud = hosts.cloud()
    vm = cloud.boot("vm1", TINY.id, "host-a", uuid=UUID)
    result = cloud.migrate("vm1").wait()
    assert result.outcome is Outcome.SUCCEEDED
    moved = cloud.instance("vm1")
    assert (moved.vm_state, moved.task_state, moved.host) == (VmState.RESIZED, None, "host-b")
    assert moved.power_state is PowerState.RUNNING
    assert hosts.a.get_info(vm).power_state is PowerState.SHUTDOWN
    assert hosts.b.get_info(vm).power_state is PowerState.RUNNING
    assert hosts.transport.copies == [(f"{UUID}-disk0.qcow2", f"{UUID}-disk0.qcow2")]
    assert cloud.confirm_resize("vm1").wait().outcome is Outcome.SUCCEEDED
    assert cloud.domains() == {"host-a": [], "host-b": ["vm1"]}
    assert hosts.a.volumes() == []
    assert hosts.b.volumes() == [f"{UUID}-disk0.qcow2"]
    assert cloud.instance("vm1").vm_state is VmState.ACTIVE
    phases = [(e.host, e.phase, e.done) for e in hosts.events if e.phase != "copy"]
    assert phases == [
        ("host-a", "start", 0),
        ("host-a", "start", 1),
        ("host-a", "shutdown", 0),
        ("host-a", "shutdown", 1),
        ("host-b", "define", 0),
        ("host-b", "define", 1),
        ("host-b", "start", 0),
        ("host-b", "start", 1),
    ]


def test_stopped_guest_stays_stopped(hosts: Hosts) -> None:
    cloud = hosts.cloud()
    vm = cloud.boot("vm1", TINY.id, "host-a", uuid=UUID, vm_state=VmState.STOPPED)
    assert cloud.migrate("vm1").wait().outcome is Outcome.SUCCEEDED
    assert hosts.b.get_info(vm).power_state is PowerState.SHUTDOWN
    assert cloud.confirm_resize("vm1").wait().outcome is Outcome.SUCCEEDED
    assert cloud.instance("vm1").vm_state is VmState.STOPPED
    assert hosts.b.get_info(vm).power_state is PowerState.SHUTDOWN
    assert not [e for e in hosts.events if e.phase == "start"]


def test_revert_brings_back_the_source(hosts: Hosts) -> None:
    cloud = hosts.cloud()
    vm = cloud.boot("vm1", TINY.id, "host-a", uuid=UUID)
    assert cloud.resize("vm1", WIDE.id).wait().outcome is Outcome.SUCCEEDED
    assert domain_size(hosts.b, UUID) == (2, 128 * 1024)
    assert cloud.revert_resize("vm1").wait().outcome is Outcome.SUCCEEDED
    assert cloud.domains() == {"host-a": ["vm1"], "host-b": []}
    assert hosts.b.volumes() == []
    assert hosts.a.get_info(vm).power_state is PowerState.RUNNING
    assert domain_size(hosts.a, UUID) == (1, 64 * 1024)
    reverted = cloud.instance("vm1")
    assert (reverted.vm_state, reverted.host, reverted.flavor) == (
        VmState.ACTIVE,
        "host-a",
        TINY.id,
    )


def test_copy_failure_rolls_back_and_cleans_the_half_copy(hosts: Hosts) -> None:
    cloud = hosts.cloud()
    vm = cloud.boot("vm1", TINY.id, "host-a", uuid=UUID)
    hosts.transport.fail = "disk full"
    result = cloud.migrate("vm1").wait()
    assert (result.outcome, result.error_type) == (Outcome.ROLLED_BACK, "HypervisorError")
    assert result.error_message == "disk full"
    back = cloud.instance("vm1")
    assert (back.vm_state, back.task_state, back.host) == (VmState.ACTIVE, None, "host-a")
    assert hosts.a.get_info(vm).power_state is PowerState.RUNNING
    assert cloud.domains() == {"host-a": ["vm1"], "host-b": []}
    assert hosts.b.volumes() == []
    assert [m.status.value for m in cloud.migrations("vm1")] == ["error"]


def test_dest_host_down_rolls_back_before_touching_the_guest(hosts: Hosts, tmp_path: Path) -> None:
    fabric = LibvirtFabric()
    a = fabric.add_host("host-a", hosts.a.uri, hosts.a.image_dir, hosts.transport)
    a._conn = hosts.a.connection()  # the same in-memory host
    fabric.add_host(
        "host-b", f"qemu+unix:///system?socket={tmp_path}/down", tmp_path, hosts.transport
    )
    cloud = fabric.cloud([TINY], capacity=Resources(8, 16384, 100), config=FAST)
    vm = cloud.boot("vm1", TINY.id, "host-a", uuid=UUID)
    result = cloud.migrate("vm1").wait()
    assert result.outcome is Outcome.ROLLED_BACK
    assert result.error_message is not None
    assert "host-b: cannot connect to" in result.error_message
    assert a.get_info(vm).power_state is PowerState.RUNNING
    assert hosts.transport.copies == []
    assert cloud.instance("vm1").vm_state is VmState.ACTIVE


def test_migrate_disk_errors_are_typed(hosts: Hosts) -> None:
    hosts.a.spawn(instance(), TINY, power_on=True)
    with pytest.raises(InstanceFaultRollback, match="no libvirt host 'host-z'"):
        hosts.a.migrate_disk_and_power_off(instance(), "host-z", TINY, 1, 1)
    with pytest.raises(HypervisorError, match="no guest"):
        hosts.b.migrate_disk_and_power_off(instance(), "host-a", TINY, 1, 1)
    hosts.b.spawn(instance(), TINY, power_on=False)
    with pytest.raises(InstanceFaultRollback, match=r"host-b: a guest .* is already defined"):
        hosts.a.migrate_disk_and_power_off(instance(), "host-b", TINY, 1, 1)
    assert hosts.a.get_info(instance()).power_state is PowerState.RUNNING


@pytest.mark.parametrize(
    ("disk_gb", "flavor_gb", "refused"),
    [(2, 1, True), (1, 0, True), (0, 0, False), (1, 1, False), (1, 2, False)],
)
def test_a_resize_is_refused_only_when_the_root_disk_would_shrink(
    hosts: Hosts, disk_gb: int, flavor_gb: int, refused: bool
) -> None:
    old = Flavor("t.old", vcpus=1, ram_mb=64, root_gb=disk_gb)
    new = Flavor("t.new", vcpus=2, ram_mb=128, root_gb=flavor_gb)
    vm = attrs.evolve(instance(), flavor=old.id)
    hosts.a.spawn(vm, old, power_on=True)
    if not refused:
        hosts.a.migrate_disk_and_power_off(vm, "host-b", new, 1, 1)
        assert hosts.transport.copies == [(f"{UUID}-disk0.qcow2", f"{UUID}-disk0.qcow2")]
        return
    sizes = {0: "0.0625 GiB", 1: "1 GiB", 2: "2 GiB"}
    message = (
        f"host-a: Unable to resize disk down: the root disk of {UUID} (vda) is "
        f"{sizes[disk_gb]}, flavor t.new has {sizes[flavor_gb]}; a disk image cannot be shrunk"
    )
    with pytest.raises(InstanceFaultRollback) as refusal:
        hosts.a.migrate_disk_and_power_off(vm, "host-b", new, 1, 1)
    assert str(refusal.value) == message
    assert type(refusal.value.inner) is HypervisorError
    # Refused before anything was touched: no shutdown, no copy, nothing on host-b.
    assert hosts.a.get_info(vm).power_state is PowerState.RUNNING
    assert [e.phase for e in hosts.events if e.host == "host-a"] == ["start", "start"]
    assert [e for e in hosts.events if e.host == "host-b"] == []
    assert hosts.transport.copies == []
    assert (hosts.b.list_instances(), hosts.b.volumes()) == ([], [])
    assert hosts.a.volumes() == [f"{UUID}-disk0.qcow2"]


def test_a_move_that_keeps_the_flavor_copies_a_disk_bigger_than_the_flavor(hosts: Hosts) -> None:
    """An adopted guest's disk may exceed its flavor: moving it resizes nothing."""
    hosts.a.spawn(instance(), Flavor("t.was", vcpus=1, ram_mb=64, root_gb=2), power_on=False)
    info = hosts.a.migrate_disk_and_power_off(instance(), "host-b", TINY, 1, 1)
    assert info.disks == (f"{UUID}-disk0.qcow2",)
    pool = hosts.b.pool()
    assert pool.storageVolLookupByName(f"{UUID}-disk0.qcow2").info()[1] == 2 * 1024**3


def test_a_disk_outside_the_image_dir_is_never_moved(hosts: Hosts) -> None:
    conn = hosts.a.connection()
    xml = (
        f"<domain type='test'><name>outside</name><uuid>{UUID}</uuid><memory>65536</memory>"
        "<os><type>hvm</type></os><devices><disk type='file' device='disk'>"
        "<source file='/etc/passwd'/><target dev='vda'/></disk></devices></domain>"
    )
    conn.defineXML(xml)
    with pytest.raises(InstanceFaultRollback, match="not in the image directory"):
        hosts.a.migrate_disk_and_power_off(instance(), "host-b", TINY, 1, 1)
    hosts.a.destroy(instance())  # and never deleted
    assert hosts.a.list_instances() == []


def test_finish_migration_accepts_only_uuid_disk_names(hosts: Hosts) -> None:
    cloud = hosts.cloud()
    cloud.boot("vm1", TINY.id, "host-a", uuid=UUID)
    migration = attrs.evolve(
        cloud.migrations("vm1")[0] if cloud.migrations("vm1") else _migration(),
        dest_compute="host-b",
    )
    for names in [("../x.qcow2",), (), (f"{UUID}-disk1.qcow2",)]:
        with pytest.raises(HypervisorError, match="unexpected disk names"):
            hosts.b.finish_migration(
                instance(), migration, DiskInfo(names, 0), TINY, False, power_on=True
            )


def _migration() -> Migration:
    return Migration(
        1, "m", UUID, MigrationType.MIGRATION, MigrationStatus.MIGRATING, "host-a", TINY.id, TINY.id
    )


# -- transports and the hosts file ----------------------------------------------------------


def test_local_transport_runs_qemu_img_without_a_shell() -> None:
    transport = LocalCopyTransport(qemu_img="/usr/bin/qemu-img", extra_args=("-W",))
    assert transport.command("/a/x.qcow2", "/b/x.qcow2", "qcow2") == [
        "/usr/bin/qemu-img", "convert", "-p", "-f", "qcow2", "-O", "qcow2", "-W",
        "/a/x.qcow2", "/b/x.qcow2",
    ]  # fmt: skip
    assert isinstance(transport, DiskTransport)
    assert isinstance(VolumeStreamTransport(), DiskTransport)


def test_read_hosts_env(tmp_path: Path) -> None:
    env = tmp_path / "hosts.env"
    env.write_text(
        '# comment\nCOLDMIG_LIBVIRT_HOSTS="h1 h2"\n'
        'COLDMIG_LIBVIRT_h1_URI="test:///default"\nCOLDMIG_LIBVIRT_h1_IMAGES="/i1"\n'
        'COLDMIG_LIBVIRT_h2_URI="qemu:///system"\nCOLDMIG_LIBVIRT_h2_IMAGES="/i2"\n'
    )
    assert read_hosts_env(env) == {
        "h1": ("test:///default", "/i1"),
        "h2": ("qemu:///system", "/i2"),
    }
    env.write_text('COLDMIG_LIBVIRT_HOSTS="h1"\n')
    with pytest.raises(ValueError, match="host h1 has no COLDMIG_LIBVIRT_h1_URI"):
        read_hosts_env(env)
