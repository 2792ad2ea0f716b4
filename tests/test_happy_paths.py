"""Every happy-path row of the spec, hop by hop, with the exact state after each hop."""

from __future__ import annotations

from coldmig_fsm import (
    Cloud,
    CloudConfig,
    DriverCapabilities,
    FakeHypervisor,
    Flavor,
    Host,
    Outcome,
    TaskState,
    messages,
)
from tests.conftest import FLAVORS, calls, events, make_cloud, notifications, snapshot

TINY_USE = (1, 512, 1)
NONE_USE = (0, 0, 0)
MOVE_NOTIFICATIONS = [
    "scheduler.select_destinations.start",
    "scheduler.select_destinations.end",
    "instance.exists",
    "instance.resize_prep.start",
    "instance.resize_prep.end",
    "instance.resize.start",
    "instance.resize.end",
    "instance.resize_finish.start",
    "instance.resize_finish.end",
]
MOVE_EVENTS = [
    ("conductor_migrate_server", "Success"),
    ("cold_migrate", "Success"),
    ("compute_prep_resize", "Success"),
    ("compute_resize_instance", "Success"),
    ("compute_finish_resize", "Success"),
]


def step(cloud: Cloud, kind: type[messages.Message]) -> None:
    delivered = cloud.step()
    assert type(delivered) is kind


def test_migrate_hop_by_hop(cloud: Cloud) -> None:
    operation = cloud.migrate("vm1")
    base = {
        "vm_state": "active",
        "power_state": "running",
        "flavor": "m1.tiny",
    }
    assert snapshot(cloud) == {
        **base,
        "task_state": "resize_prep",
        "host": "host-a",
        "old_flavor": None,
        "new_flavor": None,
        "migrations": [],
        "usage": {"host-a": TINY_USE, "host-b": NONE_USE},
        "domains": {"host-a": ["vm1"], "host-b": []},
    }
    assert cloud.instance("vm1").progress == 0
    assert events(cloud) == [("migrate", [])]
    assert notifications(cloud) == []
    assert [type(m) for m in cloud.pending()] == [messages.MigrateServer]
    assert operation.result is None

    step(cloud, messages.MigrateServer)  # conductor
    assert snapshot(cloud)["migrations"] == [("pre-migrating", "host-a", None)]
    assert snapshot(cloud)["task_state"] == "resize_prep"
    migration = cloud.migrations("vm1")[0]
    # The source side is now held by the migration, not the instance.
    assert cloud.store.allocations(migration.uuid) == {"host-a": cloud.usage()["host-a"]}
    assert cloud.store.allocations(cloud.instance("vm1").uuid) == {}
    assert notifications(cloud) == MOVE_NOTIFICATIONS[:2]
    assert events(cloud) == [("migrate", MOVE_EVENTS[:2])]

    step(cloud, messages.PrepResize)  # destination
    assert snapshot(cloud) == {
        **base,
        "task_state": "resize_prep",
        "host": "host-a",
        "old_flavor": None,
        "new_flavor": "m1.tiny",
        "migrations": [("pre-migrating", "host-a", "host-b")],
        "usage": {"host-a": TINY_USE, "host-b": TINY_USE},
        "domains": {"host-a": ["vm1"], "host-b": []},
    }
    assert cloud.instance("vm1").system_metadata == {
        "image_min_disk": "1",
        "old_vm_state": "active",
    }
    assert notifications(cloud) == MOVE_NOTIFICATIONS[:5]
    assert events(cloud) == [("migrate", MOVE_EVENTS[:3])]

    step(cloud, messages.ResizeInstance)  # source
    assert snapshot(cloud) == {
        **base,
        "task_state": "resize_migrated",
        "host": "host-b",
        "old_flavor": None,
        "new_flavor": "m1.tiny",
        "migrations": [("post-migrating", "host-a", "host-b")],
        "usage": {"host-a": TINY_USE, "host-b": TINY_USE},
        "domains": {"host-a": ["vm1"], "host-b": []},
    }
    resize_start = cloud.notifications()[5]
    assert (resize_start.event_type, resize_start.task_state, resize_start.host) == (
        "instance.resize.start",
        TaskState.RESIZE_MIGRATING,
        "host-a",
    )
    resize_end = cloud.notifications()[6]
    assert (
        resize_end.event_type,
        resize_end.task_state.value if resize_end.task_state else None,
    ) == (
        "instance.resize.end",
        "resize_migrated",
    )
    assert calls(cloud) == [("host-a", "migrate_disk_and_power_off")]

    step(cloud, messages.FinishResize)  # destination
    assert snapshot(cloud) == {
        **base,
        "vm_state": "resized",
        "task_state": None,
        "host": "host-b",
        "old_flavor": "m1.tiny",
        "new_flavor": "m1.tiny",
        "migrations": [("finished", "host-a", "host-b")],
        "usage": {"host-a": TINY_USE, "host-b": TINY_USE},
        "domains": {"host-a": ["vm1"], "host-b": ["vm1"]},
    }
    assert notifications(cloud) == MOVE_NOTIFICATIONS
    assert events(cloud) == [("migrate", MOVE_EVENTS)]
    assert calls(cloud) == [
        ("host-a", "migrate_disk_and_power_off"),
        ("host-b", "finish_migration"),
    ]
    assert cloud.pending() == []
    result = operation.wait()
    assert (result.outcome, result.error_type) == (Outcome.SUCCEEDED, None)
    assert cloud.migrations("vm1")[0].migration_type.value == "migration"


def test_confirm_after_migrate(cloud: Cloud) -> None:
    cloud.migrate("vm1").wait()
    operation = cloud.confirm_resize("vm1")
    assert cloud.migrations("vm1")[0].status.value == "confirming"
    assert snapshot(cloud)["task_state"] is None
    assert snapshot(cloud)["vm_state"] == "resized"
    step(cloud, messages.ConfirmResize)
    assert snapshot(cloud) == {
        "vm_state": "active",
        "task_state": None,
        "power_state": "running",
        "host": "host-b",
        "flavor": "m1.tiny",
        "old_flavor": None,
        "new_flavor": None,
        "migrations": [("confirmed", "host-a", "host-b")],
        "usage": {"host-a": NONE_USE, "host-b": TINY_USE},
        "domains": {"host-a": [], "host-b": ["vm1"]},
    }
    assert cloud.instance("vm1").migration_id is None
    # Only what boot recorded is left.
    assert cloud.instance("vm1").system_metadata == {"image_min_disk": "1"}
    assert notifications(cloud)[-2:] == [
        "instance.resize_confirm.start",
        "instance.resize_confirm.end",
    ]
    assert events(cloud)[-1] == ("confirmResize", [("compute_confirm_resize", "Success")])
    assert calls(cloud)[-1] == ("host-a", "confirm_migration")
    assert operation.wait().outcome is Outcome.SUCCEEDED


def test_revert_after_migrate(cloud: Cloud) -> None:
    cloud.migrate("vm1").wait()
    before = len(cloud.notifications())
    operation = cloud.revert_resize("vm1")
    assert snapshot(cloud)["task_state"] == "resize_reverting"
    assert cloud.migrations("vm1")[0].status.value == "reverting"
    step(cloud, messages.RevertResize)
    assert snapshot(cloud)["migrations"] == [("reverted", "host-a", "host-b")]
    assert snapshot(cloud)["usage"] == {"host-a": TINY_USE, "host-b": NONE_USE}
    assert snapshot(cloud)["domains"] == {"host-a": ["vm1"], "host-b": []}
    assert snapshot(cloud)["task_state"] == "resize_reverting"
    step(cloud, messages.FinishRevertResize)
    assert snapshot(cloud) == {
        "vm_state": "active",
        "task_state": None,
        "power_state": "running",
        "host": "host-a",
        "flavor": "m1.tiny",
        "old_flavor": None,
        "new_flavor": None,
        "migrations": [("reverted", "host-a", "host-b")],
        "usage": {"host-a": TINY_USE, "host-b": NONE_USE},
        "domains": {"host-a": ["vm1"], "host-b": []},
    }
    assert notifications(cloud)[before:] == [
        "instance.exists",
        "instance.resize_revert.start",
        "instance.resize_revert.end",
    ]
    assert events(cloud)[-1] == (
        "revertResize",
        [("compute_revert_resize", "Success"), ("compute_finish_revert_resize", "Success")],
    )
    assert calls(cloud)[-2:] == [("host-b", "destroy"), ("host-a", "finish_revert_migration")]
    assert operation.wait().outcome is Outcome.SUCCEEDED


def test_resize_changes_flavor_and_claims(cloud: Cloud) -> None:
    assert cloud.resize("vm1", "m1.small").wait().ok
    assert snapshot(cloud) == {
        "vm_state": "resized",
        "task_state": None,
        "power_state": "running",
        "host": "host-b",
        "flavor": "m1.small",
        "old_flavor": "m1.tiny",
        "new_flavor": "m1.small",
        "migrations": [("finished", "host-a", "host-b")],
        "usage": {"host-a": TINY_USE, "host-b": (1, 2048, 20)},
        "domains": {"host-a": ["vm1"], "host-b": ["vm1"]},
    }
    assert cloud.migrations("vm1")[0].migration_type.value == "resize"
    assert events(cloud) == [("resize", MOVE_EVENTS)]
    assert notifications(cloud) == MOVE_NOTIFICATIONS
    assert cloud.hypervisor is not None
    guest = cloud.hypervisor.guest("host-b", cloud.instance("vm1").uuid)
    assert guest is not None and (guest.vcpus, guest.ram_mb, guest.disk_gb) == (1, 2048, 20)


def test_resize_confirm_keeps_new_flavor(cloud: Cloud) -> None:
    cloud.resize("vm1", "m1.small").wait()
    assert cloud.confirm_resize("vm1").wait().ok
    snap = snapshot(cloud)
    assert (snap["vm_state"], snap["flavor"], snap["host"], snap["usage"]) == (
        "active",
        "m1.small",
        "host-b",
        {"host-a": NONE_USE, "host-b": (1, 2048, 20)},
    )


def test_resize_revert_restores_old_flavor_and_claims(cloud: Cloud) -> None:
    cloud.resize("vm1", "m1.small").wait()
    assert cloud.revert_resize("vm1").wait().ok
    snap = snapshot(cloud)
    assert (snap["vm_state"], snap["flavor"], snap["host"], snap["usage"], snap["domains"]) == (
        "active",
        "m1.tiny",
        "host-a",
        {"host-a": TINY_USE, "host-b": NONE_USE},
        {"host-a": ["vm1"], "host-b": []},
    )
    assert cloud.hypervisor is not None
    guest = cloud.hypervisor.guest("host-a", cloud.instance("vm1").uuid)
    assert guest is not None and (guest.ram_mb, guest.power_state.label) == (512, "running")


def test_stopped_instance_migrate_confirm_is_never_powered_on(stopped_cloud: Cloud) -> None:
    cloud = stopped_cloud
    assert cloud.migrate("vm1").wait().ok
    assert (snapshot(cloud)["vm_state"], snapshot(cloud)["power_state"]) == ("resized", "shutdown")
    assert cloud.confirm_resize("vm1").wait().ok
    assert snapshot(cloud) == {
        "vm_state": "stopped",
        "task_state": None,
        "power_state": "shutdown",
        "host": "host-b",
        "flavor": "m1.tiny",
        "old_flavor": None,
        "new_flavor": None,
        "migrations": [("confirmed", "host-a", "host-b")],
        "usage": {"host-a": NONE_USE, "host-b": TINY_USE},
        "domains": {"host-a": [], "host-b": ["vm1"]},
    }
    assert ("host-b", "power_on") not in calls(cloud)
    assert ("host-a", "power_on") not in calls(cloud)
    assert cloud.hypervisor is not None
    guest = cloud.hypervisor.guest("host-b", cloud.instance("vm1").uuid)
    assert guest is not None and guest.power_state.label == "shutdown"


def test_stopped_instance_migrate_revert_stays_stopped(stopped_cloud: Cloud) -> None:
    cloud = stopped_cloud
    cloud.migrate("vm1").wait()
    before = len(cloud.notifications())
    assert cloud.revert_resize("vm1").wait().ok
    assert snapshot(cloud) == {
        "vm_state": "stopped",
        "task_state": None,
        "power_state": "shutdown",
        "host": "host-a",
        "flavor": "m1.tiny",
        "old_flavor": None,
        "new_flavor": None,
        "migrations": [("reverted", "host-a", "host-b")],
        "usage": {"host-a": TINY_USE, "host-b": NONE_USE},
        "domains": {"host-a": ["vm1"], "host-b": []},
    }
    assert notifications(cloud)[before:] == [
        "instance.exists",
        "instance.resize_revert.start",
        "instance.power_off.start",
        "instance.power_off.end",
        "instance.resize_revert.end",
    ]
    assert all(call != "power_on" for _, call in calls(cloud))
    assert calls(cloud)[-3:] == [
        ("host-b", "destroy"),
        ("host-a", "finish_revert_migration"),
        ("host-a", "power_off"),
    ]


def test_same_host_resize_when_allowed() -> None:
    cloud = make_cloud(1, config=CloudConfig(allow_resize_to_same_host=True))
    cloud.boot("vm1", "m1.tiny", "host-a")
    assert cloud.resize("vm1", "m1.small").wait().ok
    snap = snapshot(cloud)
    assert (snap["host"], snap["migrations"], snap["usage"], snap["domains"]) == (
        "host-a",
        [("finished", "host-a", "host-a")],
        {"host-a": (2, 2560, 21)},
        {"host-a": ["vm1"]},
    )
    assert cloud.revert_resize("vm1").wait().ok
    snap = snapshot(cloud)
    assert (snap["vm_state"], snap["flavor"], snap["usage"], snap["domains"]) == (
        "active",
        "m1.tiny",
        {"host-a": (1, 512, 1)},
        {"host-a": ["vm1"]},
    )
    assert cloud.hypervisor is not None
    guest = cloud.hypervisor.guest("host-a", cloud.instance("vm1").uuid)
    assert guest is not None and (guest.ram_mb, guest.backup) == (512, None)


def test_a_same_host_resize_needs_no_same_host_migrate_capability() -> None:
    # Only a move that keeps the flavor (a migrate) needs the driver to support moving
    # to the same host; a resize to the source with a new flavor does not (Nova's
    # prep_resize). m1.wide's id sorts after m1.tiny's: the check compares equality.
    hv = FakeHypervisor(capabilities=DriverCapabilities(supports_migrate_to_same_host=False))
    cloud = Cloud.build(
        [Host("host-a", 8, 16384, 200)],
        [*FLAVORS, Flavor("m1.wide", vcpus=2, ram_mb=512, root_gb=1)],
        config=CloudConfig(allow_resize_to_same_host=True),
        hypervisor=hv,
    )
    cloud.boot("vm1", "m1.tiny", "host-a")
    assert cloud.resize("vm1", "m1.wide").wait().ok
    snap = snapshot(cloud)
    assert (snap["vm_state"], snap["flavor"], snap["host"], snap["migrations"]) == (
        "resized",
        "m1.wide",
        "host-a",
        [("finished", "host-a", "host-a")],
    )
    assert snap["usage"] == {"host-a": (3, 1024, 2)}
