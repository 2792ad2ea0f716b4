"""abort_migration (not in Nova): before finish_resize the move is undone; after, refused."""

from __future__ import annotations

import pytest

from coldmig_fsm import (
    Caller,
    Cloud,
    FakeFault,
    FaultMode,
    InstanceInvalidState,
    Outcome,
    PolicyNotAuthorized,
    UnexpectedTaskStateError,
    VmState,
    messages,
)
from coldmig_fsm.verification.invariants import violations
from tests.conftest import calls, make_cloud, snapshot

ON_A = {"host-a": (1, 512, 1), "host-b": (0, 0, 0)}


def moving(steps: int, vm_state: VmState = VmState.ACTIVE) -> tuple[Cloud, object]:
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a", vm_state=vm_state)
    operation = cloud.migrate("vm1")
    for _ in range(steps):
        cloud.step()
    return cloud, operation


@pytest.mark.parametrize(
    ("steps", "task_state", "migrations"),
    [
        (0, "resize_prep", []),
        (1, "resize_prep", [("cancelled", "host-a", None)]),
        (2, "resize_prep", [("cancelled", "host-a", "host-b")]),
        (3, "resize_migrated", [("cancelled", "host-a", "host-b")]),
    ],
    ids=["before-conductor", "after-conductor", "after-prep", "after-copy"],
)
def test_abort_before_finish_resize_puts_everything_back(
    steps: int, task_state: str, migrations: list[tuple[str, str, str | None]]
) -> None:
    cloud, move = moving(steps)
    assert snapshot(cloud)["task_state"] == task_state
    abort = cloud.abort_migration("vm1")
    assert abort.wait().ok
    cloud.run()
    assert snapshot(cloud) == {
        "vm_state": "active",
        "task_state": None,
        "power_state": "running",
        "host": "host-a",
        "flavor": "m1.tiny",
        "old_flavor": None,
        "new_flavor": None if steps < 2 else "m1.tiny",
        "migrations": migrations,
        "usage": ON_A,
        "domains": {"host-a": ["vm1"], "host-b": []},
    }
    result = move.result  # type: ignore[attr-defined]
    assert (result.outcome, result.error_type) == (Outcome.ROLLED_BACK, "MigrationCancelled")
    assert [a.action for a in cloud.actions("vm1")] == ["migrate", "abortMigration"]
    assert violations(cloud) == []


def test_abort_after_the_copy_restores_the_source_guest() -> None:
    cloud, _ = moving(3)
    cloud.abort_migration("vm1").wait()
    assert calls(cloud)[-2:] == [("host-b", "destroy"), ("host-a", "finish_revert_migration")]
    assert cloud.actions("vm1")[-1].events[-1].event == "compute_abort_migration"


def test_abort_of_a_stopped_instance_keeps_it_stopped() -> None:
    cloud, _ = moving(3, VmState.STOPPED)
    assert cloud.abort_migration("vm1").wait().ok
    assert (snapshot(cloud)["vm_state"], snapshot(cloud)["power_state"]) == ("stopped", "shutdown")
    assert all(call != "power_on" for _, call in calls(cloud))


@pytest.mark.parametrize("steps", [4, 5], ids=["finish-started", "resized"])
def test_abort_is_refused_once_finish_resize_started(steps: int) -> None:
    cloud, _ = moving(steps)
    before = snapshot(cloud)
    with pytest.raises(InstanceInvalidState, match="abort_migration"):
        cloud.abort_migration("vm1")
    assert snapshot(cloud) == before


def test_abort_is_admin_only() -> None:
    cloud, _ = moving(1)
    with pytest.raises(PolicyNotAuthorized):
        cloud.abort_migration("vm1", caller=Caller.owner("demo"))


def test_abort_versus_finish_whoever_saves_first_wins() -> None:
    # finish wins: it starts before the abort is saved; the abort's save then fails.
    cloud, move = moving(3)
    uuid = cloud.instance("vm1").uuid
    prepared = cloud.api.prepare_abort_migration(uuid, Caller.admin())
    cloud.step()  # finish_resize: task resize_finish, migration held at post-migrating
    with pytest.raises(UnexpectedTaskStateError):
        cloud.api.submit(prepared)
    cloud.run()
    assert move.wait().ok  # type: ignore[attr-defined]
    assert snapshot(cloud)["vm_state"] == "resized"

    # abort wins: saved first, the queued finish_resize then does nothing.
    cloud, move = moving(3)
    cloud.abort_migration("vm1")
    assert [type(m) for m in cloud.pending()] == [messages.FinishResize, messages.AbortMigration]
    cloud.run()
    assert move.result.outcome is Outcome.ROLLED_BACK  # type: ignore[attr-defined]
    assert snapshot(cloud)["migrations"] == [("cancelled", "host-a", "host-b")]
    assert violations(cloud) == []


def test_delete_before_the_abort_hop_ran_removes_the_source_guest_too() -> None:
    # Found by the model checker (1 instance, 2 hosts, 3 requests): the abort marks the
    # migration cancelled, the delete wins the race to the instance, and the abort's own
    # hop (which would restore the source guest) never runs. The source guest and its
    # claim must go with the instance.
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a")
    cloud.migrate("vm1")
    for _ in range(3):  # conductor, prep_resize, resize_instance: the copy is done
        cloud.step()
    cloud.abort_migration("vm1")
    deleting = cloud.delete("vm1")
    cloud.run()
    assert deleting.result is not None and deleting.result.ok
    snap = snapshot(cloud)
    assert (snap["vm_state"], snap["task_state"]) == ("deleted", None)
    assert snap["domains"] == {"host-a": [], "host-b": []}
    assert snap["usage"] == {"host-a": (0, 0, 0), "host-b": (0, 0, 0)}
    assert violations(cloud) == []


def test_a_delete_resumed_by_recovery_overtakes_the_cancelled_move() -> None:
    # Found by the model checker (2 x 3, 3 requests, 1 fault) once invariant 7 compared
    # a move's request with its migration: the delete's destroy on the source crashes the
    # host; its restart resumes the delete, which ends the cancelled move's request as
    # overtaken (failed, MoveInterrupted), not rolled back: both are what the spec allows.
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a")
    move = cloud.migrate("vm1")
    cloud.step()  # the conductor
    cloud.step()  # prep_resize on host-b
    cloud.abort_migration("vm1")
    deleting = cloud.delete("vm1")
    assert cloud.hypervisor is not None
    cloud.hypervisor.arm(FakeFault("host-a", "destroy", mode=FaultMode.CRASH))
    cloud.run()
    assert not cloud.is_up("host-a")
    cloud.restart_compute("host-a")
    cloud.run()
    assert move.result is not None
    assert (move.result.outcome, move.result.error_type) == (Outcome.FAILED, "MoveInterrupted")
    assert deleting.result is not None and deleting.result.ok
    snap = snapshot(cloud)
    assert (snap["vm_state"], snap["task_state"]) == ("deleted", None)
    assert snap["migrations"] == [("cancelled", "host-a", "host-b")]
    assert snap["domains"] == {"host-a": [], "host-b": []}
    assert snap["usage"] == {"host-a": (0, 0, 0), "host-b": (0, 0, 0)}
    assert violations(cloud) == []


def test_an_abort_before_the_conductor_cancels_the_move_not_a_newer_recovery() -> None:
    # The conductor's message was lost and a start-up recovery has queued its rollback
    # (a newer request of the instance, still pending) when the abort comes: the abort
    # cancels the move's request, and the recovery, delivered later, finds nothing to do.
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a")
    cloud.lose_next("migrate_server")
    move = cloud.migrate("vm1")
    cloud.step()  # lost
    cloud.compute("host-a").init_host()  # queues its rollback: not delivered yet
    assert [m.kind for m in cloud.pending()] == ["roll_back_move"]
    abort = cloud.abort_migration("vm1")
    assert abort.result is not None and abort.result.outcome is Outcome.SUCCEEDED
    assert move.result is not None
    assert (move.result.outcome, move.result.error_type) == (
        Outcome.ROLLED_BACK,
        "MigrationCancelled",
    )
    cloud.run()
    recover = [r for r in cloud.store.list_requests() if r.action == "recover"]
    assert [(r.outcome, r.error_type) for r in recover] == [
        (Outcome.FAILED, "UnexpectedTaskStateError")
    ]
    assert (snapshot(cloud)["vm_state"], snapshot(cloud)["task_state"]) == ("active", None)
    assert violations(cloud) == []
