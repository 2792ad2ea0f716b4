"""The roles' own background work, called without the Cloud facade (as an orchestrator
that runs the roles itself does): start-up recovery, periodic tasks, reconcile."""

from __future__ import annotations

import attrs
import pytest

from coldmig_fsm import Cloud, CloudConfig, Outcome, TaskState, VmState, messages
from coldmig_fsm.roles.compute import reconcile
from coldmig_fsm.verification.explorer import Action, apply
from coldmig_fsm.verification.invariants import violations
from coldmig_fsm.verification.model_check import initial_cloud
from tests.conftest import make_cloud


def test_init_host_rolls_back_a_move_whose_hop_was_lost() -> None:
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a")
    cloud.lose_next("finish_resize")
    moving = cloud.migrate("vm1")
    cloud.run()
    assert cloud.instance("vm1").task_state is TaskState.RESIZE_MIGRATED
    # The instance involves host-a (its source) and host-b (its dest): whichever service
    # starts first recovers it. host-b's own part (the copied disks) and host-a's (the
    # guest back) are hops of their own: init_host sends the first one.
    recovered = cloud.compute("host-b").init_host()
    assert [(i.name, i.task_state, i.host) for i in recovered] == [
        ("vm1", TaskState.RESIZE_MIGRATED, "host-b")
    ]
    assert [(m.kind, m.destination) for m in cloud.pending()] == [
        ("roll_back_move", "compute:host-b")
    ]
    cloud.run()
    vm = cloud.instance("vm1")
    assert (vm.vm_state, vm.task_state, vm.host) == (VmState.ACTIVE, None, "host-a")
    assert moving.result is not None
    assert moving.result.outcome is Outcome.ROLLED_BACK
    assert cloud.compute("host-a").init_host() == []  # nothing left to do


def test_init_host_lists_the_messages_it_sent() -> None:
    cloud = make_cloud(3)
    cloud.boot("vm1", "m1.tiny", "host-a")
    cloud.boot("vm2", "m1.tiny", "host-a")
    cloud.migrate("vm2", "host-c").wait()
    cloud.lose_next("confirm_resize")
    assert cloud.confirm_resize("vm2").wait().outcome is Outcome.PENDING
    cloud.lose_next("finish_resize")
    cloud.migrate("vm1", "host-b")
    cloud.run()
    sent: list[messages.Message] = []
    recovered = cloud.compute("host-a").init_host(sent)
    assert [i.name for i in recovered] == ["vm1"]
    assert sent == cloud.pending(), "each message it queued, in order, and only those"
    assert [(m.kind, m.destination) for m in sent] == [
        ("roll_back_move", "compute:host-b"),  # vm1's recovery, under its own request
        ("confirm_resize", "compute:host-a"),  # vm2's lost confirm, sent again
    ]
    assert cloud.compute("host-a").init_host(sent) == [] and len(sent) == 2  # on their way


def test_init_host_leaves_an_instance_whose_other_host_is_down() -> None:
    cloud = make_cloud()
    cloud.boot("vm1", "m1.tiny", "host-a")
    cloud.lose_next("finish_resize")
    cloud.migrate("vm1")
    cloud.run()
    host_b = cloud.store.get_host("host-b")
    assert host_b is not None
    cloud.store.put_host(attrs.evolve(host_b, up=False))  # its service is down
    assert cloud.compute("host-a").init_host() == []  # host-b's own restart recovers it
    assert cloud.instance("vm1").task_state is TaskState.RESIZE_MIGRATED


def test_reconcile_runs_every_services_recovery() -> None:
    cloud = make_cloud(3)
    cloud.boot("vm1", "m1.tiny", "host-a")
    cloud.boot("vm2", "m1.tiny", "host-b")
    cloud.lose_next("prep_resize", times=2)
    cloud.migrate("vm1", "host-c")
    cloud.migrate("vm2", "host-c")
    cloud.run()
    recovered = reconcile(cloud.compute(h) for h in cloud.hosts)
    assert sorted(i.name for i in recovered) == ["vm1", "vm2"]
    cloud.run()  # the rollbacks it sent (each move's source: nothing was copied)
    assert sorted((i.name, i.task_state, i.host) for i in cloud.instances()) == [
        ("vm1", None, "host-a"),
        ("vm2", None, "host-b"),
    ]


def test_periodic_tasks_ask_for_the_confirms_that_are_due() -> None:
    cloud = make_cloud(config=CloudConfig(resize_confirm_window=60))
    cloud.boot("vm1", "m1.tiny", "host-a")
    assert cloud.migrate("vm1").wait().ok
    asked: list[str] = []
    assert cloud.compute("host-b").periodic_tasks(asked.append) == []  # not due yet
    cloud.clock.advance(60)  # type: ignore[attr-defined]
    due = cloud.compute("host-b").periodic_tasks(asked.append)
    assert [m.id for m in due] == [1]
    assert asked == [cloud.instance("vm1").uuid]
    assert cloud.compute("host-a").periodic_tasks(asked.append) == []  # the source: none
    assert cloud.instance("vm1").vm_state is VmState.RESIZED  # asking is not confirming


def _interrupted_recovery() -> Cloud:
    """vm1's move crashed its source mid-copy; host-a's restart then rolls it back and
    the clean-up on the dest crashes host-c: host-a's recovery never completed."""
    cloud = initial_cloud(2, 3)
    for action in (
        Action("migrate", "vm1"),
        Action("step"),
        Action("step"),
        Action("step", fault=("host-a", "migrate_disk_and_power_off", "crash")),
        Action("restart_compute", arg="host-a", fault=("host-c", "destroy", "crash")),
    ):
        apply(cloud, action)
    vm = cloud.instance("vm1")
    assert [(r.action, r.outcome) for r in cloud.store.list_requests(vm.uuid)] == [
        ("migrate", Outcome.PENDING),
        ("recover", Outcome.PENDING),
    ]
    return cloud


def _requests(cloud: Cloud) -> list[tuple[str, Outcome, str | None]]:
    vm = cloud.instance("vm1")
    return [(r.action, r.outcome, r.error_type) for r in cloud.store.list_requests(vm.uuid)]


@pytest.mark.parametrize("restart_first", [False, True])
def test_an_abort_after_an_interrupted_recovery_settles_it(restart_first: bool) -> None:
    # Found by the model checker with two faults: the recovery's request stayed pending.
    cloud = _interrupted_recovery()
    cloud.abort_migration("vm1")
    if restart_first:
        cloud.restart_compute("host-c")
    cloud.run()
    if not restart_first:
        # The abort's first hop is host-c's (the copy's destination): it waits for it.
        cloud.restart_compute("host-c")
        cloud.run()
    assert _requests(cloud) == [
        ("migrate", Outcome.ROLLED_BACK, "MigrationCancelled"),
        ("recover", Outcome.FAILED, "MoveInterrupted"),
        ("abortMigration", Outcome.SUCCEEDED, None),
    ]
    vm = cloud.instance("vm1")
    assert (vm.vm_state, vm.task_state, vm.host) == (VmState.ACTIVE, None, "host-a")
    assert violations(cloud, idle=True) == []
