"""Auto-confirm: the periodic task confirms `finished` moves older than the window."""

from __future__ import annotations

import datetime as dt

import attrs
import pytest

from coldmig_fsm import Cloud, CloudConfig, ManualClock, SystemClock, TaskState, VmState
from coldmig_fsm.verification.invariants import violations
from tests.conftest import FLAVORS, make_cloud, snapshot


def resized(window: int, **boot: object) -> Cloud:
    cloud = make_cloud(config=CloudConfig(resize_confirm_window=window))
    cloud.boot("vm1", "m1.tiny", "host-a", **boot)  # type: ignore[arg-type]
    assert cloud.migrate("vm1").wait().ok
    return cloud


def test_confirms_after_the_window_not_before() -> None:
    cloud = resized(60)
    cloud.advance_clock(59)
    assert snapshot(cloud)["vm_state"] == "resized"
    cloud.advance_clock(1)
    assert snapshot(cloud)["vm_state"] == "active"
    assert snapshot(cloud)["migrations"] == [("confirmed", "host-a", "host-b")]
    assert [a.action for a in cloud.actions("vm1")] == ["migrate", "confirmResize"]
    assert violations(cloud) == []


def test_stopped_instance_is_confirmed_stopped() -> None:
    cloud = resized(10, vm_state=VmState.STOPPED)
    cloud.advance_clock(11)
    assert (snapshot(cloud)["vm_state"], snapshot(cloud)["power_state"]) == ("stopped", "shutdown")


def test_window_zero_never_confirms() -> None:
    cloud = resized(0)
    cloud.advance_clock(10**6)
    assert snapshot(cloud)["vm_state"] == "resized"


def test_busy_instance_is_skipped() -> None:
    cloud = resized(10)
    busy = attrs.evolve(cloud.instance("vm1"), task_state=TaskState.RESIZE_REVERTING)
    cloud.store.save_instance(busy)
    cloud.advance_clock(11)
    assert snapshot(cloud)["migrations"] == [("finished", "host-a", "host-b")]


def test_instance_not_resized_gets_its_migration_in_error() -> None:
    cloud = resized(10)
    cloud.store.save_instance(attrs.evolve(cloud.instance("vm1"), vm_state=VmState.ERROR))
    cloud.advance_clock(11)
    assert snapshot(cloud)["migrations"] == [("error", "host-a", "host-b")]


@pytest.mark.parametrize(
    ("vm_state", "reason"),
    [
        (VmState.ERROR, "instance is error, not resized"),
        (VmState.ACTIVE, "instance is active, not resized"),
        (VmState.STOPPED, "instance is stopped, not resized"),
        (VmState.DELETED, "instance is gone"),
    ],
)
def test_the_poll_says_why_a_finished_move_was_put_in_error(vm_state: VmState, reason: str) -> None:
    cloud = resized(10)
    cloud.store.save_instance(attrs.evolve(cloud.instance("vm1"), vm_state=vm_state))
    clock = cloud.clock
    assert isinstance(clock, ManualClock)
    clock.advance(11)
    (migration,) = cloud.migrations("vm1")
    assert cloud.compute("host-b").unconfirmed_resizes() == [(migration, reason)]
    assert [m.status.value for m in cloud.migrations("vm1")] == ["error"]
    assert cloud.compute("host-b").unconfirmed_resizes() == []


def test_advance_clock_needs_a_manual_clock() -> None:
    cloud = Cloud.build([], FLAVORS, clock=SystemClock())
    with pytest.raises(TypeError, match="ManualClock"):
        cloud.advance_clock(1)


def two_resized_on_host_b(window: int) -> Cloud:
    """vm1 and vm2 both moved from host-a to host-b (migrations 1 and 2), resized."""
    cloud = make_cloud(config=CloudConfig(resize_confirm_window=window))
    for name in ("vm1", "vm2"):
        cloud.boot(name, "m1.tiny", "host-a")
        assert cloud.migrate(name).wait().ok
    return cloud


def _statuses(cloud: Cloud) -> list[tuple[str, str]]:
    return [(name, m.status.value) for name in ("vm1", "vm2") for m in cloud.migrations(name)]


def test_a_busy_instance_does_not_hold_back_the_next_confirm() -> None:
    # One host's periodic task goes through every finished move it is the destination
    # of: skipping one (busy) goes on to the next (a mutant that stopped there survived
    # the model checker, whose hosts hold one moved instance at a time).
    cloud = two_resized_on_host_b(10)
    busy = attrs.evolve(cloud.instance("vm1"), task_state=TaskState.RESIZE_REVERTING)
    cloud.store.save_instance(busy)
    cloud.advance_clock(11)
    assert _statuses(cloud) == [("vm1", "finished"), ("vm2", "confirmed")]


def test_a_move_inside_the_window_does_not_hold_back_an_older_one() -> None:
    cloud = two_resized_on_host_b(60)
    first = cloud.migrations("vm1")[0]
    assert first.updated_at is not None
    # Migration 1 (met first) finished 30 s after migration 2.
    later = attrs.evolve(first, updated_at=first.updated_at + dt.timedelta(seconds=30))
    cloud.store.save_migration(later)
    cloud.advance_clock(61)
    assert _statuses(cloud) == [("vm1", "finished"), ("vm2", "confirmed")]
    cloud.advance_clock(30)
    assert _statuses(cloud) == [("vm1", "confirmed"), ("vm2", "confirmed")]
    assert violations(cloud) == []
