"""coldmig_fsm.roles.compute.power: stop, start and delete, hop by hop.

What each sends and calls, exactly: the notifications, the driver calls and the records
(the second mutation campaign of issue 14 found these were asserted nowhere).
"""

from __future__ import annotations

from coldmig_fsm import Caller, Cloud, FakeFault, Outcome
from coldmig_fsm.verification.invariants import violations
from tests.conftest import calls, make_cloud, notifications, snapshot


def _cloud() -> Cloud:
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a")
    return cloud


def _sent_and_called(cloud: Cloud, done: object) -> tuple[list[str], list[tuple[str, str]]]:
    """What a request sent and called from here on (``done`` runs it)."""
    sent, called = len(notifications(cloud)), len(calls(cloud))
    assert callable(done)
    assert done()
    return notifications(cloud)[sent:], calls(cloud)[called:]


def test_stop_and_start_power_the_guest_and_record_it() -> None:
    cloud = _cloud()
    stop = _sent_and_called(cloud, lambda: cloud.stop("vm1").wait().ok)
    assert stop == (
        ["instance.power_off.start", "instance.power_off.end"],
        [("host-a", "power_off")],
    )
    snap = snapshot(cloud)
    assert (snap["vm_state"], snap["task_state"], snap["power_state"]) == (
        "stopped",
        None,
        "shutdown",
    )
    start = _sent_and_called(cloud, lambda: cloud.start("vm1").wait().ok)
    assert start == (
        ["instance.power_on.start", "instance.power_on.end"],
        [("host-a", "power_on")],
    )
    snap = snapshot(cloud)
    assert (snap["vm_state"], snap["task_state"], snap["power_state"]) == (
        "active",
        None,
        "running",
    )
    assert violations(cloud) == []


def test_unlock_takes_the_lock_off() -> None:
    cloud = _cloud()
    assert cloud.lock("vm1").wait().ok
    assert cloud.instance("vm1").locked
    assert cloud.unlock("vm1").wait().ok
    assert not cloud.instance("vm1").locked
    assert cloud.instance("vm1").locked_by is None
    # The API's own methods, as an orchestrator calls them.
    uuid, admin = cloud.instance("vm1").uuid, Caller.admin()
    cloud.api.lock(uuid, admin)
    assert (cloud.instance("vm1").locked, cloud.instance("vm1").locked_by) == (True, "admin")
    cloud.api.unlock(uuid, admin)
    assert (cloud.instance("vm1").locked, cloud.instance("vm1").locked_by) == (False, None)


def test_delete_visits_every_host_a_failed_move_may_have_left_a_guest_on() -> None:
    cloud = _cloud()
    assert cloud.hypervisor is not None
    cloud.hypervisor.arm(FakeFault("host-a", "migrate_disk_and_power_off"))
    assert cloud.migrate("vm1").wait().outcome is Outcome.FAILED
    assert snapshot(cloud)["migrations"] == [("error", "host-a", "host-b")]
    # delete on host-a (its host), clean on host-b, finish on host-a (records only).
    delete = _sent_and_called(cloud, lambda: cloud.delete("vm1").wait().ok)
    assert delete == (
        [
            "instance.delete.start",
            "instance.shutdown.start",
            "instance.shutdown.end",
            "instance.delete.end",
        ],
        [("host-a", "destroy"), ("host-b", "destroy")],
    )
    # The delete's start is announced by the instance's host, before anything else.
    assert [(n.event_type, n.host) for n in cloud.notifications()[-4:]] == [
        ("instance.delete.start", "host-a"),
        ("instance.shutdown.start", "host-a"),
        ("instance.shutdown.end", "host-a"),
        ("instance.delete.end", "host-a"),
    ]
    snap = snapshot(cloud)
    assert (snap["vm_state"], snap["power_state"], snap["usage"]) == (
        "deleted",
        "nostate",
        {"host-a": (0, 0, 0), "host-b": (0, 0, 0)},
    )
    assert snap["migrations"] == [("error", "host-a", "host-b")]
    assert violations(cloud) == []
