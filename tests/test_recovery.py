"""Lost hops and restarts: nothing stays busy, nothing leaks, the request is settled."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldmig_fsm import (
    Cloud,
    FakeFault,
    FaultMode,
    Host,
    MemoryStore,
    MoveInterrupted,
    Outcome,
    SqliteStore,
    Store,
    TaskState,
    VmState,
)
from coldmig_fsm.verification.invariants import violations
from tests.conftest import FLAVORS, calls, make_cloud, open_lost_request, snapshot

ON_A = {"host-a": (1, 512, 1), "host-b": (0, 0, 0)}
ON_B = {"host-a": (0, 0, 0), "host-b": (1, 512, 1)}


@pytest.mark.parametrize(
    ("lost", "host", "vm_state", "where", "usage", "outcome"),
    [
        ("migrate_server", None, "active", "host-a", ON_A, Outcome.ROLLED_BACK),
        ("prep_resize", "host-b", "active", "host-a", ON_A, Outcome.ROLLED_BACK),
        ("resize_instance", "host-a", "active", "host-a", ON_A, Outcome.ROLLED_BACK),
        ("finish_resize", "host-b", "active", "host-a", ON_A, Outcome.ROLLED_BACK),
    ],
)
def test_a_lost_hop_of_a_move_is_rolled_back_by_reconcile(
    lost: str,
    host: str | None,
    vm_state: str,
    where: str,
    usage: dict[str, tuple[int, int, int]],
    outcome: Outcome,
) -> None:
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a")
    cloud.lose_next(lost, host)
    move = cloud.migrate("vm1")
    assert move.wait().outcome is Outcome.PENDING
    assert snapshot(cloud)["task_state"] is not None
    recovered = cloud.reconcile()
    assert [i.name for i in recovered] == ["vm1"]
    cloud.run()
    snap = snapshot(cloud)
    assert (snap["vm_state"], snap["task_state"], snap["host"], snap["usage"]) == (
        vm_state,
        None,
        where,
        usage,
    )
    assert snap["domains"] == {"host-a": ["vm1"], "host-b": []}
    assert snap["power_state"] == "running"
    result = move.result
    assert result is not None and (result.outcome, result.error_type) == (
        outcome,
        "MoveInterrupted",
    )
    assert [a.action for a in cloud.actions("vm1")] == ["migrate", "recover"]
    migrate_action, recover_action = cloud.actions("vm1")
    assert (migrate_action.events[-1].event, migrate_action.events[-1].result.value) == (
        "compute_recover",
        "Error",
    )
    assert migrate_action.message == "Error"
    assert [(e.event, e.result.value) for e in recover_action.events] == [
        ("compute_recover", "Success")
    ]
    assert violations(cloud) == []


@pytest.mark.parametrize("kind", ["memory", "sqlite", "sqlite, reopened"])
@pytest.mark.parametrize("lost", ["resize_instance", "finish_resize"])
def test_a_rolled_back_move_leaves_no_stash_in_any_store(
    kind: str, lost: str, tmp_path: Path
) -> None:
    # The rollback drops the move's stashed old_vm_state from the record as the store
    # gives it back. "reopened": the recovery runs on a new orchestrator that opened the
    # file anew, so every record, its keys included, is decoded from the file (equal to
    # the roles' literals, not the same objects).
    path = tmp_path / "c.db"
    store: Store = MemoryStore() if kind == "memory" else SqliteStore(path)
    hosts = [Host("host-a", 8, 16384, 200), Host("host-b", 8, 16384, 200)]
    cloud = Cloud.build(hosts, FLAVORS, store=store)
    cloud.boot("vm1", "m1.tiny", "host-a")
    cloud.lose_next(lost)
    move = cloud.migrate("vm1")
    assert move.wait().outcome is Outcome.PENDING
    assert cloud.instance("vm1").system_metadata["old_vm_state"] == "active"
    if kind == "sqlite, reopened":
        assert isinstance(store, SqliteStore)
        store.close()
        store = SqliteStore(path)
        cloud = Cloud.build(hosts, store=store, hypervisor=cloud.hypervisor)
    cloud.reconcile()
    cloud.run()
    vm = cloud.instance("vm1")
    assert (vm.vm_state, vm.task_state, vm.host, vm.flavor, vm.migration_id) == (
        VmState.ACTIVE,
        None,
        "host-a",
        "m1.tiny",
        None,
    )
    assert "old_vm_state" not in vm.system_metadata
    result = cloud.result(move.request_id)
    assert result is not None and result.outcome is Outcome.ROLLED_BACK
    if isinstance(store, SqliteStore):
        store.close()


_LOST = (
    "the {action} request of instance {vm} can no longer finish: its message was lost and "
    "it has reached a stable state since"
)
_CUT_SHORT = (
    "a crash interrupted the recovery of instance {vm}; it has reached a stable state since"
)


@pytest.mark.parametrize(
    ("action", "why"),
    [("stop", _LOST), ("resize", _LOST), ("migrate", _LOST), ("recover", _CUT_SHORT)],
)
def test_an_open_request_of_a_stable_instance_that_nothing_carries_fails_saying_why(
    action: str, why: str
) -> None:
    # What a lost message leaves once something else brought the instance back to a
    # stable state: an accepted request (its action and request records) that no
    # queued message carries. A recovery's own request says it was cut short.
    cloud = make_cloud()
    vm = cloud.boot("vm1", "m1.tiny", "host-a")
    open_lost_request(cloud, "vm1", action)
    assert cloud.reconcile() == []
    result = cloud.result("req-lost")
    assert result is not None
    assert (result.outcome, result.error_type, result.error_message) == (
        Outcome.FAILED,
        "MoveInterrupted",
        why.format(action=action, vm=vm.describe()),
    )
    (recorded,) = cloud.actions("vm1")
    assert [(e.event, e.result.value) for e in recorded.events] == [("compute_recover", "Error")]
    assert (snapshot(cloud)["vm_state"], snapshot(cloud)["task_state"]) == ("active", None)


def test_a_lost_confirm_is_resent_and_the_requests_after_it_still_fail() -> None:
    # A resized instance whose confirm was lost, and after it another open request that
    # nothing carries: the confirm is sent again, the other one fails.
    cloud = make_cloud()
    vm = cloud.boot("vm1", "m1.tiny", "host-a")
    assert cloud.migrate("vm1").wait().ok
    cloud.lose_next("confirm_resize")
    confirm = cloud.confirm_resize("vm1")
    assert confirm.wait().outcome is Outcome.PENDING
    open_lost_request(cloud, "vm1", "stop")
    # The destination's recovery first (the confirm is the source's to send again).
    assert cloud.compute("host-b").init_host() == []
    assert confirm.result is None
    lost = cloud.result("req-lost")
    assert lost is not None
    assert (lost.outcome, lost.error_message) == (
        Outcome.FAILED,
        _LOST.format(action="stop", vm=vm.describe()),
    )
    cloud.reconcile()
    assert confirm.wait().ok
    assert snapshot(cloud)["usage"] == ON_B


def test_a_request_overtaken_by_a_queued_delete_is_left_to_the_delete() -> None:
    # The stop's message is lost and a delete is accepted meanwhile: a recovery before
    # the delete's hop runs fails nothing (the delete ends every request of its instance).
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a")
    cloud.lose_next("stop_instance")
    stop = cloud.stop("vm1")
    cloud.run()
    delete = cloud.delete("vm1")
    assert [m.kind for m in cloud.pending()] == ["terminate_instance"]
    assert cloud.reconcile() == []
    assert stop.result is None
    assert delete.wait().ok
    assert stop.result is not None
    assert (stop.result.outcome, stop.result.error_type) == (Outcome.FAILED, "InstanceNotFound")
    assert [(a.action, a.message, [e.event for e in a.events]) for a in cloud.actions("vm1")] == [
        ("stop", "Error", ["compute_terminate_instance"]),
        ("delete", None, ["compute_terminate_instance"]),
    ]
    assert violations(cloud) == []


def test_a_lost_confirm_is_sent_again_on_restart() -> None:
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a")
    cloud.migrate("vm1").wait()
    cloud.lose_next("confirm_resize")
    confirm = cloud.confirm_resize("vm1")
    assert confirm.wait().outcome is Outcome.PENDING
    cloud.restart_compute("host-a")
    assert confirm.wait().ok
    assert snapshot(cloud)["usage"] == ON_B
    assert violations(cloud) == []


def test_a_confirm_still_queued_is_not_sent_twice_by_a_restart() -> None:
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a")
    cloud.migrate("vm1").wait()
    confirm = cloud.confirm_resize("vm1")
    assert [m.kind for m in cloud.pending()] == ["confirm_resize"]
    assert cloud.compute("host-a").init_host() == []
    assert [m.kind for m in cloud.pending()] == ["confirm_resize"]
    assert confirm.wait().ok
    assert cloud.pending() == []
    assert [c for c in calls(cloud) if c[1] == "confirm_migration"] == [
        ("host-a", "confirm_migration")
    ]
    assert snapshot(cloud)["usage"] == ON_B
    assert violations(cloud) == []


def test_messages_wait_for_a_crashed_host_and_go_on_after_restart() -> None:
    from coldmig_fsm import FakeFault  # noqa: PLC0415
    from coldmig_fsm.drivers.fake import FaultMode  # noqa: PLC0415

    cloud = make_cloud(3)
    cloud.boot("vm1", "m1.tiny", "host-a")
    cloud.boot("vm2", "m1.tiny", "host-c")
    assert cloud.hypervisor is not None
    cloud.hypervisor.arm(FakeFault("host-a", "power_off", mode=FaultMode.CRASH))
    assert cloud.stop("vm1").wait().outcome is Outcome.PENDING
    # host-a is down: a move to it is not scheduled there, and one from it waits.
    assert cloud.migrate("vm2").wait().ok
    assert snapshot(cloud, "vm2")["host"] == "host-b"
    cloud.restart_compute("host-a")
    cloud.run()
    assert (snapshot(cloud)["vm_state"], snapshot(cloud)["task_state"]) == ("stopped", None)
    assert violations(cloud) == []


def test_recovery_of_a_state_this_library_never_sets() -> None:
    cloud = make_cloud()
    cloud.boot(
        "vm1", "m1.tiny", "host-a", vm_state=VmState.RESIZED, task_state=TaskState.RESIZE_CONFIRMING
    )
    cloud.restart_compute("host-a")
    assert (snapshot(cloud)["vm_state"], snapshot(cloud)["task_state"]) == ("error", None)
    assert [f.exception_type for f in cloud.faults("vm1")] == [MoveInterrupted.__name__]


def test_a_restart_leaves_moves_with_queued_messages_alone(cloud: Cloud) -> None:
    move = cloud.migrate("vm1")
    cloud.step()  # conductor: prep_resize queued for host-b
    assert cloud.restart_compute("host-a") == []
    assert move.wait().ok


def test_a_host_only_an_earlier_failed_move_touched_does_not_hold_the_recovery_back() -> None:
    # vm1's first move (to host-b) failed; its second (to host-c) is interrupted by a
    # crash of host-a while host-b's service is down too. The hosts that take part in
    # recovering the second move are host-a and host-c only: host-a's restart recovers
    # it at once (a delete, which visits every host a move may have left a guest on,
    # would wait for host-b).
    cloud = make_cloud(hosts=3)
    cloud.boot("vm1", "m1.tiny", "host-a")
    cloud.boot("vm2", "m1.tiny", "host-b")
    assert cloud.hypervisor is not None
    cloud.hypervisor.arm(FakeFault("host-a", "migrate_disk_and_power_off"))
    assert cloud.migrate("vm1", host="host-b").wait().outcome is Outcome.FAILED
    assert cloud.stop("vm1").wait().ok
    cloud.hypervisor.arm(FakeFault("host-b", "power_off", FaultMode.CRASH))
    cloud.stop("vm2")
    cloud.step()  # host-b's service dies
    move = cloud.migrate("vm1", host="host-c")
    cloud.step()  # the conductor
    cloud.step()  # prep_resize on host-c
    cloud.hypervisor.arm(FakeFault("host-a", "migrate_disk_and_power_off", FaultMode.CRASH))
    cloud.step()  # the copy crashes host-a's service
    assert [h for h in cloud.hosts if not cloud.is_up(h)] == ["host-a", "host-b"]
    cloud.restart_compute("host-a")
    assert move.result is not None
    assert (move.result.outcome, move.result.error_type) == (Outcome.ROLLED_BACK, "MoveInterrupted")
    snap = snapshot(cloud)
    assert (snap["vm_state"], snap["task_state"], snap["host"]) == ("stopped", None, "host-a")
    assert snap["migrations"] == [("error", "host-a", "host-b"), ("error", "host-a", "host-c")]
    assert snap["domains"] == {"host-a": ["vm1"], "host-b": ["vm2"], "host-c": []}
