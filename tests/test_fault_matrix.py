"""Every driver call of every operation x raise / rollback / crash / hang: the exact end state.

Raise and hang (``DriverTimeout``) end the step at once in the spec's documented state.
A rollback fault (``InstanceFaultRollback``) on a call with a rollback path puts the
instance back as it was before the move (no migration context, no stashed
``old_vm_state``; ``new_flavor`` stays, as in Nova); on any other call it is a failure
like a raise.
Crash leaves the request pending with the host's compute service down; restarting it
runs the recovery, and the end state is the documented safe one. After each case the
spec's invariants hold (``coldmig_fsm.verification.invariants``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest

from coldmig_fsm import Cloud, FakeFault, Outcome, VmState
from coldmig_fsm.drivers.fake import FaultMode
from coldmig_fsm.verification.invariants import violations
from tests.conftest import make_cloud, snapshot

TINY = (1, 512, 1)
NONE = (0, 0, 0)
ON_A = {"host-a": TINY, "host-b": NONE}
ON_B = {"host-a": NONE, "host-b": TINY}
BOTH = {"host-a": TINY, "host-b": TINY}


@attrs.frozen
class Case:
    """One fault point and what it ends in (after restart, for a crash)."""

    name: str
    stopped: bool  # the instance starts stopped
    setup: Callable[[Cloud], object]  # what happens before the faulty operation
    operation: Callable[[Cloud], Any]
    host: str
    call: str
    vm_state: str
    host_after: str
    migration: str
    usage: dict[str, tuple[int, int, int]]
    outcome: Outcome  # for raise / hang
    crash_vm_state: str  # after the crash and the restart's recovery
    crash_host: str
    crash_migration: str
    crash_usage: dict[str, tuple[int, int, int]]
    crash_outcome: Outcome


def nothing(cloud: Cloud) -> None:
    return None


def moved(cloud: Cloud) -> None:
    assert cloud.migrate("vm1").wait().ok


def migrate(cloud: Cloud) -> Any:
    return cloud.migrate("vm1")


def resize(cloud: Cloud) -> Any:
    return cloud.resize("vm1", "m1.small")


def confirm(cloud: Cloud) -> Any:
    return cloud.confirm_resize("vm1")


def revert(cloud: Cloud) -> Any:
    return cloud.revert_resize("vm1")


SMALL_ON_B = {"host-a": TINY, "host-b": (1, 2048, 20)}
CASES = [
    # migrate / resize: the source powers off and copies; the destination defines the guest.
    Case(
        "migrate/migrate_disk_and_power_off",
        False,
        nothing,
        migrate,
        "host-a",
        "migrate_disk_and_power_off",
        "error",
        "host-a",
        "error",
        ON_A,
        Outcome.FAILED,
        "active",
        "host-a",
        "error",
        ON_A,
        Outcome.ROLLED_BACK,
    ),
    Case(
        "migrate/finish_migration",
        False,
        nothing,
        migrate,
        "host-b",
        "finish_migration",
        "error",
        "host-b",
        "error",
        ON_B,
        Outcome.FAILED,
        "error",
        "host-b",
        "error",
        ON_B,
        Outcome.FAILED,
    ),
    Case(
        "migrate-stopped/migrate_disk_and_power_off",
        True,
        nothing,
        migrate,
        "host-a",
        "migrate_disk_and_power_off",
        "error",
        "host-a",
        "error",
        ON_A,
        Outcome.FAILED,
        "stopped",
        "host-a",
        "error",
        ON_A,
        Outcome.ROLLED_BACK,
    ),
    Case(
        "resize/migrate_disk_and_power_off",
        False,
        nothing,
        resize,
        "host-a",
        "migrate_disk_and_power_off",
        "error",
        "host-a",
        "error",
        ON_A,
        Outcome.FAILED,
        "active",
        "host-a",
        "error",
        ON_A,
        Outcome.ROLLED_BACK,
    ),
    Case(
        "resize/finish_migration",
        False,
        nothing,
        resize,
        "host-b",
        "finish_migration",
        "error",
        "host-b",
        "error",
        {"host-a": NONE, "host-b": (1, 2048, 20)},
        Outcome.FAILED,
        "error",
        "host-b",
        "error",
        {"host-a": NONE, "host-b": (1, 2048, 20)},
        Outcome.FAILED,
    ),
    # confirm: the source removes its guest.
    Case(
        "confirm/confirm_migration",
        False,
        moved,
        confirm,
        "host-a",
        "confirm_migration",
        "error",
        "host-b",
        "error",
        ON_B,
        Outcome.FAILED,
        "active",
        "host-b",
        "confirmed",
        ON_B,
        Outcome.SUCCEEDED,
    ),
    # revert: the destination destroys its guest, the source brings the old one back.
    Case(
        "revert/destroy",
        False,
        moved,
        revert,
        "host-b",
        "destroy",
        "error",
        "host-b",
        "error",
        BOTH,
        Outcome.FAILED,
        "error",
        "host-b",
        "error",
        BOTH,
        Outcome.FAILED,
    ),
    Case(
        "revert/finish_revert_migration",
        False,
        moved,
        revert,
        "host-a",
        "finish_revert_migration",
        "error",
        "host-a",
        "error",
        ON_A,
        Outcome.FAILED,
        "error",
        "host-a",
        "error",
        ON_A,
        Outcome.FAILED,
    ),
    Case(
        "revert-stopped/power_off",
        True,
        moved,
        revert,
        "host-a",
        "power_off",
        "error",
        "host-a",
        "error",
        ON_A,
        Outcome.FAILED,
        "stopped",
        "host-a",
        "reverted",
        ON_A,
        Outcome.SUCCEEDED,
    ),
]
_ = SMALL_ON_B


def start(case: Case) -> tuple[Cloud, str]:
    cloud = make_cloud()
    vm_state = VmState.STOPPED if case.stopped else VmState.ACTIVE
    cloud.boot("vm1", "m1.tiny", "host-a", vm_state=vm_state)
    case.setup(cloud)
    return cloud, cloud.instance("vm1").uuid


def state(cloud: Cloud) -> tuple[Any, ...]:
    snap = snapshot(cloud)
    status = cloud.migrations("vm1")[-1].status.value
    return (snap["vm_state"], snap["task_state"], snap["host"], status, snap["usage"])


@pytest.mark.parametrize("mode", [FaultMode.RAISE, FaultMode.HANG])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_raise_and_hang(case: Case, mode: FaultMode) -> None:
    cloud, _ = start(case)
    assert cloud.hypervisor is not None
    cloud.hypervisor.arm(FakeFault(case.host, case.call, mode=mode))
    result = case.operation(cloud).wait()
    cloud.run()
    assert state(cloud) == (
        case.vm_state,
        None,
        case.host_after,
        case.migration,
        case.usage,
    )
    expected_error = "DriverTimeout" if mode is FaultMode.HANG else "HypervisorError"
    assert (result.outcome, result.error_type) == (case.outcome, expected_error)
    faults = cloud.faults("vm1")
    assert faults[-1].exception_type == expected_error
    notifications = [n.event_type for n in cloud.notifications()]
    assert "compute.exception" in notifications
    assert cloud.actions("vm1")[-1].message == "Error"
    assert violations(cloud) == []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_crash_then_restart(case: Case) -> None:
    cloud, _ = start(case)
    before = move_state(cloud)
    assert cloud.hypervisor is not None
    cloud.hypervisor.arm(FakeFault(case.host, case.call, mode=FaultMode.CRASH))
    operation = case.operation(cloud)
    pending = operation.wait()
    assert (pending.outcome, pending.error_type) == (Outcome.PENDING, "OperationPending")
    assert not cloud.is_up(case.host)
    assert cloud.store.get_host(case.host).up is False  # type: ignore[union-attr]
    cloud.restart_compute(case.host)
    cloud.run()
    assert cloud.is_up(case.host)
    assert state(cloud) == (
        case.crash_vm_state,
        None,
        case.crash_host,
        case.crash_migration,
        case.crash_usage,
    )
    result = operation.result
    assert result is not None and result.outcome is case.crash_outcome
    if case.crash_outcome is Outcome.ROLLED_BACK:
        # The recovery rolled the move back: no migration context or stash is left.
        target = "m1.small" if case.operation is resize else "m1.tiny"
        assert move_state(cloud) == {**before, "new_flavor": target}
    assert violations(cloud) == []


def move_state(cloud: Cloud) -> dict[str, Any]:
    """What a move stashes on the instance, and what it must not leave behind."""
    vm = cloud.instance("vm1")
    return {
        "flavor": vm.flavor,
        "power_state": vm.power_state.label,
        "migration_id": vm.migration_id,
        "old_flavor": vm.old_flavor,
        "new_flavor": vm.new_flavor,
        "old_vm_state": vm.system_metadata.get("old_vm_state"),
    }


ROLLS_BACK = frozenset(
    {
        # The driver calls with a rollback path: the guest is left intact on the source,
        # so InstanceFaultRollback puts the instance back as it was.
        "migrate/migrate_disk_and_power_off",
        "migrate-stopped/migrate_disk_and_power_off",
        "resize/migrate_disk_and_power_off",
    }
)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rollback_fault(case: Case) -> None:
    """Where a call has a rollback path the instance ends exactly as before the move;
    elsewhere ``InstanceFaultRollback`` is a failure like any other driver error."""
    cloud, _ = start(case)
    before = move_state(cloud)
    assert cloud.hypervisor is not None
    cloud.hypervisor.arm(FakeFault(case.host, case.call, rollback=True))
    result = case.operation(cloud).wait()
    cloud.run()
    if case.name in ROLLS_BACK:
        start_state = "stopped" if case.stopped else "active"
        assert state(cloud) == (start_state, None, "host-a", "error", ON_A)
        assert (result.outcome, result.error_type) == (Outcome.ROLLED_BACK, "HypervisorError")
        # No migration context and no stashed old_vm_state are left; new_flavor keeps the
        # move's flavor, as Nova's does (the recorded Nova runs in conformance/ agree).
        target = "m1.small" if case.operation is resize else "m1.tiny"
        assert move_state(cloud) == {**before, "new_flavor": target}
        assert before == {
            "flavor": "m1.tiny",
            "power_state": "shutdown" if case.stopped else "running",
            "migration_id": None,
            "old_flavor": None,
            "new_flavor": None,
            "old_vm_state": None,
        }
        assert cloud.actions("vm1")[-1].message == "Error"
    else:
        assert state(cloud) == (case.vm_state, None, case.host_after, case.migration, case.usage)
        assert (result.outcome, result.error_type) == (case.outcome, "HypervisorError")
    assert violations(cloud) == []


@pytest.mark.parametrize("case", [c for c in CASES if c.name in ROLLS_BACK], ids=lambda c: c.name)
def test_after_a_rollback_the_instance_moves_again(case: Case) -> None:
    cloud, _ = start(case)
    assert cloud.hypervisor is not None
    cloud.hypervisor.arm(FakeFault(case.host, case.call, rollback=True))
    assert case.operation(cloud).wait().outcome is Outcome.ROLLED_BACK
    # A later move whose first message is lost, then reconciled: the recovery must roll
    # back that move only, not the one rolled back already (it released the claim).
    again = cloud.migrate("vm1")
    cloud.lose_next("migrate_server")
    cloud.step()
    cloud.reconcile()
    result = again.result
    assert result is not None
    assert (result.outcome, result.error_type) == (Outcome.ROLLED_BACK, "MoveInterrupted")
    start_state = "stopped" if case.stopped else "active"
    assert state(cloud)[:3] == (start_state, None, "host-a")
    assert snapshot(cloud)["usage"] == ON_A
    assert move_state(cloud)["migration_id"] is None
    assert violations(cloud) == []
    assert cloud.migrate("vm1").wait().ok
    assert snapshot(cloud)["host"] == "host-b"


@pytest.mark.parametrize(
    ("steps", "task_state"),
    [(1, "resize_prep"), (2, "resize_prep"), (3, "resize_migrated")],
)
def test_abort_rolls_the_move_state_back(steps: int, task_state: str) -> None:
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a")
    before = move_state(cloud)
    cloud.resize("vm1", "m1.small")
    for _ in range(steps):
        cloud.step()
    assert snapshot(cloud)["task_state"] == task_state
    assert cloud.abort_migration("vm1").wait().ok
    assert state(cloud) == ("active", None, "host-a", "cancelled", ON_A)
    assert move_state(cloud) == {**before, "new_flavor": None if steps == 1 else "m1.small"}
    assert violations(cloud) == []


def test_a_fault_armed_for_two_calls_fires_twice() -> None:
    cloud = make_cloud(3)
    cloud.boot("vm1", "m1.tiny", "host-a")
    cloud.boot("vm2", "m1.tiny", "host-a")
    assert cloud.hypervisor is not None
    cloud.hypervisor.arm(FakeFault("host-a", "migrate_disk_and_power_off", times=2))
    assert cloud.migrate("vm1").wait().outcome is Outcome.FAILED
    assert cloud.migrate("vm2").wait().outcome is Outcome.FAILED
    assert cloud.hypervisor.armed == ()
    cloud.boot("vm3", "m1.tiny", "host-a")
    assert cloud.migrate("vm3").wait().ok
