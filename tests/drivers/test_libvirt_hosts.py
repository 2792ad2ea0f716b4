"""The libvirt driver on real QEMU/TCG hosts (``scripts/libvirt-hosts.sh start``).

Guests have no operating system, so a clean shutdown never completes: the 1 s timeout then
a hard power-off is the path that runs. Disks are tiny sparse qcow2 images.
"""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import attrs
import libvirt
import pytest

from coldmig_fsm import (
    Cloud,
    CloudConfig,
    Flavor,
    Instance,
    OperationResult,
    Outcome,
    PowerState,
    VmState,
)
from coldmig_fsm.drivers.libvirt import (
    DiskTransport,
    LibvirtDriver,
    LibvirtFabric,
    LocalCopyTransport,
    VolumeStreamTransport,
)
from coldmig_fsm.exceptions import InstanceFaultRollback
from coldmig_fsm.records import Resources
from coldmig_fsm.testing import DriverPair, check_driver

from .conftest import wipe

pytestmark = pytest.mark.libvirt_hosts

TINY = Flavor("t.tiny", vcpus=1, ram_mb=64, root_gb=1)
BIG = Flavor("t.big", vcpus=2, ram_mb=128, root_gb=2)
WIDE = Flavor("t.wide", vcpus=2, ram_mb=96, root_gb=1)
FAST = CloudConfig(shutdown_timeout=1, shutdown_retry_interval=1)
UUID = "0f3c9a55-6e1d-4c0b-8d7e-2a9b5c4d3e21"


@attrs.define
class Real:
    fabric: LibvirtFabric
    a: LibvirtDriver
    b: LibvirtDriver

    def cloud(self) -> Cloud:
        return self.fabric.cloud([TINY, BIG, WIDE], capacity=Resources(8, 16384, 100), config=FAST)


def _fabric(hosts: dict[str, tuple[str, str]], transport: DiskTransport) -> Real:
    fabric = LibvirtFabric()
    (ua, ia), (ub, ib) = hosts["host1"], hosts["host2"]
    return Real(
        fabric,
        fabric.add_host("host1", ua, ia, transport),
        fabric.add_host("host2", ub, ib, transport),
    )


@pytest.fixture
def real(real_hosts: dict[str, tuple[str, str]]) -> Iterator[Real]:
    hosts = _fabric(real_hosts, LocalCopyTransport())
    yield hosts
    hosts.fabric.close()


def domain_size(driver: LibvirtDriver, uuid: str) -> tuple[int, int]:
    root = ET.fromstring(driver.domain_xml(uuid))
    return int(root.findtext("vcpu") or 0), int(root.findtext("memory") or 0)


def instance() -> Instance:
    return Instance(uuid=UUID, name="vm1", project_id="demo", host="host1", flavor=TINY.id)


def test_running_guest_migrates_runs_on_dest_and_confirm_leaves_nothing(real: Real) -> None:
    cloud = real.cloud()
    vm = cloud.boot("vm1", TINY.id, "host1", uuid=UUID)
    assert real.a.get_info(vm).power_state is PowerState.RUNNING
    result = cloud.migrate("vm1").wait()
    assert result.outcome is Outcome.SUCCEEDED
    moved = cloud.instance("vm1")
    assert (moved.vm_state, moved.host, moved.power_state) == (
        VmState.RESIZED,
        "host2",
        PowerState.RUNNING,
    )
    assert real.b.get_info(vm).power_state is PowerState.RUNNING
    assert real.a.get_info(vm).power_state is PowerState.SHUTDOWN
    assert real.b.volumes() == [f"{UUID}-disk0.qcow2"]
    assert cloud.confirm_resize("vm1").wait().outcome is Outcome.SUCCEEDED
    assert cloud.domains() == {"host1": [], "host2": ["vm1"]}
    assert real.a.volumes() == []
    assert not (Path(str(real.a.image_dir)) / f"{UUID}-disk0.qcow2").exists()
    assert cloud.instance("vm1").vm_state is VmState.ACTIVE


def test_stopped_guest_stays_stopped(real: Real) -> None:
    cloud = real.cloud()
    vm = cloud.boot("vm1", TINY.id, "host1", uuid=UUID, vm_state=VmState.STOPPED)
    assert cloud.migrate("vm1").wait().outcome is Outcome.SUCCEEDED
    assert real.b.get_info(vm).power_state is PowerState.SHUTDOWN
    assert cloud.confirm_resize("vm1").wait().outcome is Outcome.SUCCEEDED
    assert cloud.instance("vm1").vm_state is VmState.STOPPED
    assert real.b.get_info(vm).power_state is PowerState.SHUTDOWN
    assert cloud.domains() == {"host1": [], "host2": ["vm1"]}


def test_resize_up_then_revert_brings_back_the_source(real: Real) -> None:
    cloud = real.cloud()
    vm = cloud.boot("vm1", TINY.id, "host1", uuid=UUID)
    assert cloud.resize("vm1", BIG.id).wait().outcome is Outcome.SUCCEEDED
    assert domain_size(real.b, UUID) == (2, 128 * 1024)
    pool = real.b.pool()
    grown = pool.storageVolLookupByName(f"{UUID}-disk0.qcow2")
    assert grown.info()[1] == 2 * 1024**3
    assert real.b.get_info(vm).power_state is PowerState.RUNNING
    assert cloud.revert_resize("vm1").wait().outcome is Outcome.SUCCEEDED
    assert cloud.domains() == {"host1": ["vm1"], "host2": []}
    assert real.b.volumes() == []
    assert real.a.get_info(vm).power_state is PowerState.RUNNING
    assert domain_size(real.a, UUID) == (1, 64 * 1024)
    back = cloud.instance("vm1")
    assert (back.vm_state, back.host, back.flavor) == (VmState.ACTIVE, "host1", TINY.id)


def assert_shrink_rolled_back(
    cloud: Cloud,
    result: OperationResult,
    *,
    source: LibvirtDriver,
    dest: LibvirtDriver,
    was: Flavor,
    asked: Flavor,
    vm_state: VmState,
    guest_xml: str,
) -> None:
    """The resize that would shrink the 2 GiB root disk is rolled back as if never tried.

    ``guest_xml`` is the source guest's definition before the resize: unchanged after.
    """
    message = (
        f"{source.host}: Unable to resize disk down: the root disk of {UUID} (vda) is 2 GiB, "
        f"flavor {asked.id} has {asked.root_gb} GiB; a disk image cannot be shrunk"
    )
    assert (result.outcome, result.error_type, result.error_message) == (
        Outcome.ROLLED_BACK,
        "HypervisorError",
        message,
    )
    power = PowerState.RUNNING if vm_state is VmState.ACTIVE else PowerState.SHUTDOWN
    back = cloud.instance("vm1")
    assert (back.vm_state, back.task_state, back.host, back.node) == (
        vm_state,
        None,
        source.host,
        source.host,
    )
    assert (back.flavor, back.power_state) == (was.id, power)
    migration = cloud.migrations("vm1")[-1]
    assert (migration.status.value, migration.source_compute, migration.dest_compute) == (
        "error",
        source.host,
        dest.host,
    )
    faults = [(f.code, f.exception_type, f.message, f.host) for f in cloud.faults("vm1")]
    assert faults == [(500, "HypervisorError", message, source.host)]
    assert cloud.store.allocations(UUID) == {source.host: was.resources}
    assert cloud.store.allocations(migration.uuid) == {}
    assert cloud.usage() == {source.host: was.resources, dest.host: Resources(0, 0, 0)}
    # Never stopped nor copied: the guest is defined on the source only, its disk unchanged.
    assert cloud.domains() == {source.host: ["vm1"], dest.host: []}
    assert source.get_info(back).power_state is power
    assert source.domain_xml(UUID) == guest_xml
    root = source.pool().storageVolLookupByName(f"{UUID}-disk0.qcow2")
    assert root.info()[1] == 2 * 1024**3
    assert (dest.list_instances(), dest.volumes()) == ([], [])


def test_resize_back_down_after_a_resize_up_is_refused_by_the_driver(real: Real) -> None:
    """Booted with 1 GiB, resized up to 2 GiB and confirmed: the API lets the resize back
    to 1 GiB through (the boot size is the minimum), and the driver cannot shrink the disk."""
    cloud = real.cloud()
    cloud.boot("vm1", TINY.id, "host1", uuid=UUID)
    assert cloud.resize("vm1", BIG.id).wait().outcome is Outcome.SUCCEEDED
    assert cloud.confirm_resize("vm1").wait().outcome is Outcome.SUCCEEDED
    guest_xml = real.b.domain_xml(UUID)
    result = cloud.resize("vm1", TINY.id).wait()
    assert_shrink_rolled_back(
        cloud,
        result,
        source=real.b,
        dest=real.a,
        was=BIG,
        asked=TINY,
        vm_state=VmState.ACTIVE,
        guest_xml=guest_xml,
    )
    assert [m.status.value for m in cloud.migrations("vm1")] == ["confirmed", "error"]


def test_resize_that_would_shrink_an_adopted_guests_disk_rolls_back(real: Real) -> None:
    """A stopped guest whose real disk (2 GiB) is bigger than its flavor says (1 GiB): a
    resize to another 1 GiB flavor passes the API; the driver refuses to shrink the disk."""
    cloud = real.cloud()
    real.a.spawn(instance(), BIG, power_on=False)
    cloud.boot("vm1", TINY.id, "host1", uuid=UUID, vm_state=VmState.STOPPED)  # adopts it
    guest_xml = real.a.domain_xml(UUID)
    result = cloud.resize("vm1", WIDE.id).wait()
    assert_shrink_rolled_back(
        cloud,
        result,
        source=real.a,
        dest=real.b,
        was=TINY,
        asked=WIDE,
        vm_state=VmState.STOPPED,
        guest_xml=guest_xml,
    )


@pytest.fixture
def read_only_dest(real: Real) -> Iterator[Path]:
    """host2's image directory on a read-only file system (seen by its libvirtd too)."""
    path = Path(str(real.b.image_dir))
    real.b.pool()  # the pool exists before its directory turns read-only
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "coldmig-ro", str(path)], check=True
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_dest_image_dir_not_writable_rolls_back(real: Real, read_only_dest: Path) -> None:
    cloud = real.cloud()
    vm = cloud.boot("vm1", TINY.id, "host1", uuid=UUID)
    result = cloud.migrate("vm1").wait()
    assert (result.outcome, result.error_type) == (Outcome.ROLLED_BACK, "HypervisorError")
    assert "Read-only file system" in (result.error_message or "")
    back = cloud.instance("vm1")
    assert (back.vm_state, back.task_state, back.host) == (VmState.ACTIVE, None, "host1")
    assert real.a.get_info(vm).power_state is PowerState.RUNNING
    assert cloud.domains() == {"host1": ["vm1"], "host2": []}
    assert [m.status.value for m in cloud.migrations("vm1")] == ["error"]
    assert list(read_only_dest.iterdir()) == []


def test_dest_host_down_rolls_back(real_hosts: dict[str, tuple[str, str]], tmp_path: Path) -> None:
    fabric = LibvirtFabric()
    uri, images = real_hosts["host1"]
    a = fabric.add_host("host1", uri, images, LocalCopyTransport())
    fabric.add_host(
        "host2", f"qemu+unix:///system?socket={tmp_path}/down", tmp_path, LocalCopyTransport()
    )
    cloud = fabric.cloud([TINY], capacity=Resources(8, 16384, 100), config=FAST)
    vm = cloud.boot("vm1", TINY.id, "host1", uuid=UUID)
    result = cloud.migrate("vm1").wait()
    assert result.outcome is Outcome.ROLLED_BACK
    assert "host2: cannot connect to" in (result.error_message or "")
    assert a.get_info(vm).power_state is PowerState.RUNNING
    assert cloud.instance("vm1").vm_state is VmState.ACTIVE
    fabric.close()


def test_copy_failure_cleans_up_and_restarts_the_guest(real: Real, tmp_path: Path) -> None:
    failing = tmp_path / "qemu-img"
    failing.write_text("#!/bin/sh\necho 'no space left' >&2\nexit 1\n")
    failing.chmod(0o755)
    real.a.transport = LocalCopyTransport(qemu_img=str(failing))
    real.a.spawn(instance(), TINY, power_on=True)
    with pytest.raises(InstanceFaultRollback, match=r"qemu-img exit 1.*no space left"):
        real.a.migrate_disk_and_power_off(instance(), "host2", TINY, 1, 1)
    assert real.a.get_info(instance()).power_state is PowerState.RUNNING
    assert real.b.volumes() == []
    assert real.b.list_instances() == []


@pytest.mark.parametrize("transport", [LocalCopyTransport(), VolumeStreamTransport()])
def test_transports_copy_the_image_exactly(
    real_hosts: dict[str, tuple[str, str]], transport: DiskTransport
) -> None:
    real = _fabric(real_hosts, transport)
    real.a.spawn(instance(), TINY, power_on=False)
    source = Path(str(real.a.image_dir)) / f"{UUID}-disk0.qcow2"
    # Put data in the image so that the copy has something to get wrong.
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 1M 3M", str(source)],
        check=True,
        capture_output=True,
    )
    info = real.a.migrate_disk_and_power_off(instance(), "host2", TINY, 1, 1)
    assert info.disks == (f"{UUID}-disk0.qcow2",)
    assert info.bytes_copied > 3 * 1024**2
    target = Path(str(real.b.image_dir)) / f"{UUID}-disk0.qcow2"
    compare = subprocess.run(
        ["qemu-img", "compare", str(source), str(target)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert compare.returncode == 0, compare.stdout + compare.stderr
    real.fabric.close()


def test_connection_is_kept(real: Real) -> None:
    assert real.a.connection() is real.a.connection()
    assert isinstance(real.a.connection(), libvirt.virConnect)


def test_the_driver_contract_holds_on_real_hosts(real_hosts: dict[str, tuple[str, str]]) -> None:
    """coldmig_fsm.testing.check_driver, as every backend runs it (the real disk copy and
    the root disk's growth included, which test:/// hosts cannot do)."""
    fabrics: list[LibvirtFabric] = []

    def fresh_pair() -> DriverPair:
        for fabric in fabrics:  # each check starts from two empty hosts
            for driver in fabric.drivers.values():
                wipe(driver.connection())
            fabric.close()
        real = _fabric(real_hosts, LocalCopyTransport())
        fabrics.append(real.fabric)
        return real.a, real.b

    try:
        check_driver(fresh_pair)
    finally:
        for fabric in fabrics:
            fabric.close()
