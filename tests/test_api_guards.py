"""Every API guard: the exact public error, in Nova's order, and nothing changed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from coldmig_fsm import (
    Caller,
    CannotMigrateToSameHost,
    CannotResizeDisk,
    CannotResizeToSameFlavor,
    Cloud,
    ColdmigError,
    ComputeHostNotFound,
    Flavor,
    FlavorDiskSmallerThanMinDisk,
    FlavorNotFound,
    InstanceInvalidState,
    InstanceIsLocked,
    InstanceNotFound,
    MigrationNotFoundByStatus,
    PolicyNotAuthorized,
    Project,
    QuotaError,
    TaskState,
    VmState,
)
from tests.conftest import make_cloud

OWNER = Caller.owner("demo")
STRANGER = Caller.owner("other")


def world(cloud: Cloud) -> tuple[Any, ...]:
    """Everything a refused request must leave untouched."""
    return (
        cloud.instances(),
        cloud.migrations(),
        cloud.usage(),
        cloud.notifications(),
        cloud.actions(),
        cloud.store.list_requests(),
        cloud.pending(),
        cloud.domains(),
    )


def refused(cloud: Cloud, call: Callable[[], Any], error: type[ColdmigError]) -> str:
    before = world(cloud)
    with pytest.raises(error) as caught:
        call()
    assert type(caught.value) is error
    assert world(cloud) == before
    return str(caught.value)


def test_migrate_is_admin_only(cloud: Cloud) -> None:
    message = refused(cloud, lambda: cloud.migrate("vm1", caller=OWNER), PolicyNotAuthorized)
    assert "migrate" in message and "owner" in message


def test_policy_is_checked_before_existence(cloud: Cloud) -> None:
    refused(cloud, lambda: cloud.migrate("no-such-vm", caller=OWNER), PolicyNotAuthorized)


def test_unknown_instance(cloud: Cloud) -> None:
    message = refused(cloud, lambda: cloud.migrate("no-such-vm"), InstanceNotFound)
    assert "no-such-vm" in message


def test_other_projects_instance_is_not_found(cloud: Cloud) -> None:
    refused(cloud, lambda: cloud.resize("vm1", "m1.small", caller=STRANGER), InstanceNotFound)


def test_locked_instance_refuses_owner_but_not_admin(cloud: Cloud) -> None:
    cloud.lock("vm1", caller=OWNER)
    message = refused(
        cloud, lambda: cloud.resize("vm1", "m1.small", caller=OWNER), InstanceIsLocked
    )
    assert "vm1" in message and "resize" in message
    assert cloud.migrate("vm1").wait().ok


def test_lock_is_checked_before_state() -> None:
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a", vm_state=VmState.ERROR, locked=True)
    refused(cloud, lambda: cloud.resize("vm1", "m1.small", caller=OWNER), InstanceIsLocked)


@pytest.mark.parametrize(
    ("vm_state", "task_state", "attribute", "value"),
    [
        (VmState.ERROR, None, "vm_state", "error"),
        (VmState.PAUSED, None, "vm_state", "paused"),
        (VmState.RESIZED, None, "vm_state", "resized"),
        (VmState.ACTIVE, TaskState.RESIZE_PREP, "task_state", "resize_prep"),
        (VmState.STOPPED, TaskState.POWERING_ON, "task_state", "powering-on"),
    ],
)
def test_migrate_and_resize_need_active_or_stopped_and_no_task(
    vm_state: VmState, task_state: TaskState | None, attribute: str, value: str
) -> None:
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a", vm_state=vm_state, task_state=task_state)
    message = refused(cloud, lambda: cloud.migrate("vm1"), InstanceInvalidState)
    assert f"while it is in {attribute} {value}" in message and "'migrate'" in message
    refused(cloud, lambda: cloud.resize("vm1", "m1.small"), InstanceInvalidState)


@pytest.mark.parametrize("vm_state", [VmState.ACTIVE, VmState.STOPPED, VmState.ERROR])
def test_confirm_and_revert_need_resized(vm_state: VmState) -> None:
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a", vm_state=vm_state)
    message = refused(cloud, lambda: cloud.confirm_resize("vm1"), InstanceInvalidState)
    assert f"vm_state {vm_state.value}" in message
    refused(cloud, lambda: cloud.revert_resize("vm1"), InstanceInvalidState)


def test_confirm_without_finished_migration() -> None:
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a", vm_state=VmState.RESIZED)
    refused(cloud, lambda: cloud.confirm_resize("vm1"), MigrationNotFoundByStatus)
    refused(cloud, lambda: cloud.revert_resize("vm1", caller=OWNER), MigrationNotFoundByStatus)


def test_resize_to_same_flavor(cloud: Cloud) -> None:
    refused(cloud, lambda: cloud.resize("vm1", "m1.tiny"), CannotResizeToSameFlavor)


def test_resize_to_unknown_or_disabled_flavor(cloud: Cloud) -> None:
    refused(cloud, lambda: cloud.resize("vm1", "m9.huge"), FlavorNotFound)
    cloud.store.put_flavor(Flavor("m1.old", 1, 1024, 10, disabled=True))
    refused(cloud, lambda: cloud.resize("vm1", "m1.old"), FlavorNotFound)


def test_resize_below_the_image_minimum_disk() -> None:
    # Nova records the image minimum at boot: max(image min_disk, boot flavor root_gb).
    cloud = make_cloud()
    cloud.boot("vm1", "m1.small", "host-a")
    message = refused(cloud, lambda: cloud.resize("vm1", "m1.tiny"), FlavorDiskSmallerThanMinDisk)
    assert message == (
        "Flavor's disk is smaller than the minimum size specified in image metadata. "
        "Flavor disk is 1 GB, minimum size is 20 GB."
    )
    cloud.boot("vm2", "m1.tiny", "host-b", image_min_disk_gb=30)
    refused(cloud, lambda: cloud.resize("vm2", "m1.small"), FlavorDiskSmallerThanMinDisk)


def test_resize_back_down_to_the_boot_size_is_accepted() -> None:
    cloud = make_cloud(3)
    cloud.boot("vm1", "m1.tiny", "host-a")
    assert cloud.resize("vm1", "m1.medium").wait().ok
    assert cloud.confirm_resize("vm1").wait().ok
    # 1 GB < 40 GB, but not below the boot minimum (1 GB): the API accepts it and the
    # fake driver shrinks the disk.
    assert cloud.resize("vm1", "m1.tiny").wait().ok
    resized = cloud.instance("vm1")
    assert (resized.vm_state, resized.flavor, resized.old_flavor) == (
        VmState.RESIZED,
        "m1.tiny",
        "m1.medium",
    )


def test_resize_to_a_zero_disk_flavor() -> None:
    cloud = make_cloud()
    cloud.store.put_flavor(Flavor("m1.nodisk", vcpus=1, ram_mb=512, root_gb=0))
    cloud.boot("vm1", "m1.tiny", "host-a")
    message = refused(cloud, lambda: cloud.resize("vm1", "m1.nodisk"), CannotResizeDisk)
    assert message == (
        "Server disk was unable to be resized because: Resize to zero disk flavor is not allowed."
    )
    # From a zero disk to a zero disk is not a shrink.
    cloud.store.put_flavor(Flavor("m2.nodisk", vcpus=2, ram_mb=512, root_gb=0))
    cloud.boot("vm2", "m1.nodisk", "host-b")
    assert cloud.resize("vm2", "m2.nodisk").wait().ok


def test_zero_disk_is_checked_before_a_disabled_flavor() -> None:
    cloud = make_cloud()
    cloud.store.put_flavor(Flavor("m1.gone", vcpus=1, ram_mb=512, root_gb=0, disabled=True))
    cloud.boot("vm1", "m1.tiny", "host-a")
    refused(cloud, lambda: cloud.resize("vm1", "m1.gone"), CannotResizeDisk)


def test_resize_up_over_quota() -> None:
    cloud = make_cloud(projects=(Project("demo", cores=2, ram_mb=4096),))
    cloud.boot("vm1", "m1.tiny", "host-a")
    cloud.boot("vm2", "m1.tiny", "host-a")
    message = refused(cloud, lambda: cloud.resize("vm1", "m1.medium", caller=OWNER), QuotaError)
    assert "cores" in message
    # Growing RAM only, within the cores quota: 1024 + 1536 more <= 4096.
    assert cloud.resize("vm1", "m1.small", caller=OWNER).wait().ok


def test_resize_up_over_the_ram_quota() -> None:
    cloud = make_cloud(projects=(Project("demo", cores=8, ram_mb=2048),))
    cloud.boot("vm1", "m1.tiny", "host-a")
    cloud.boot("vm2", "m1.tiny", "host-a")
    # m1.tiny to m1.small: the same vCPU, 1,536 MB more on 1,024 of 2,048 used.
    message = refused(cloud, lambda: cloud.resize("vm1", "m1.small", caller=OWNER), QuotaError)
    assert message == (
        "Quota exceeded for ram: requested 1536, but already used 1024 of 2048 ram (project demo)"
    )


def test_a_resize_down_is_not_held_to_a_quota_already_exceeded() -> None:
    # As Nova's upsize delta: only what grows is checked. The project holds 3 cores
    # against a limit of 1 (booted past it); giving one core back asks for nothing.
    cloud = make_cloud(projects=(Project("demo", cores=1, ram_mb=16384),))
    cloud.store.put_flavor(Flavor("m2.one", vcpus=1, ram_mb=4096, root_gb=40))
    cloud.boot("vm1", "m1.medium", "host-a")
    cloud.boot("vm2", "m1.tiny", "host-a")
    assert cloud.store.project_usage("demo").vcpus == 3
    assert cloud.resize("vm1", "m2.one", caller=OWNER).wait().ok
    assert cloud.instance("vm1").vm_state is VmState.RESIZED
    assert cloud.confirm_resize("vm1", caller=OWNER).wait().ok
    assert cloud.store.project_usage("demo").vcpus == 2


def test_migrate_to_unknown_host(cloud: Cloud) -> None:
    refused(cloud, lambda: cloud.migrate("vm1", host="host-z"), ComputeHostNotFound)


def test_migrate_to_current_host(cloud: Cloud) -> None:
    refused(cloud, lambda: cloud.migrate("vm1", host="host-a"), CannotMigrateToSameHost)


def test_deleted_instance_is_not_found(cloud: Cloud) -> None:
    assert cloud.delete("vm1").wait().ok
    refused(cloud, lambda: cloud.migrate("vm1"), InstanceNotFound)


def test_owner_may_resize_confirm_and_revert(cloud: Cloud) -> None:
    assert cloud.resize("vm1", "m1.small", caller=OWNER).wait().ok
    assert cloud.revert_resize("vm1", caller=OWNER).wait().ok
    assert cloud.resize("vm1", "m1.small", caller=OWNER).wait().ok
    assert cloud.confirm_resize("vm1", caller=OWNER).wait().ok
    assert [a.action for a in cloud.actions("vm1")] == [
        "resize",
        "revertResize",
        "resize",
        "confirmResize",
    ]


def test_only_an_admin_unlocks_what_an_admin_locked(cloud: Cloud) -> None:
    cloud.lock("vm1")
    refused(cloud, lambda: cloud.unlock("vm1", caller=OWNER), PolicyNotAuthorized)
    cloud.unlock("vm1")
    assert (cloud.instance("vm1").locked, cloud.instance("vm1").locked_by) == (False, None)
