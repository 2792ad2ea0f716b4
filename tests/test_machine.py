"""The transition table: validated at build, total over states, introspectable."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from coldmig_fsm import (
    MACHINE,
    Caller,
    Instance,
    InstanceInvalidState,
    InstanceIsLocked,
    MachineState,
    PolicyNotAuthorized,
    TaskState,
    UnexpectedTaskStateError,
    VmState,
)
from coldmig_fsm.exceptions import MachineDefinitionError, UnexpectedMigrationStatusError
from coldmig_fsm.guards import GuardContext, require_expected_task_state, require_vm_state
from coldmig_fsm.machine import TABLE, Machine, Role
from coldmig_fsm.states import MigrationStatus
from coldmig_fsm.verification.introspect import mermaid, states_markdown

DOCS = Path(__file__).resolve().parents[1] / "docs"


def instance(vm: VmState, task: TaskState | None = None, locked: bool = False) -> Instance:
    return Instance("u", "vm1", "demo", "host-a", "m1.tiny", vm, task, locked=locked)


def test_the_workflow_states_are_all_there() -> None:
    names = {s.name for s in MACHINE.states}
    for vm in ("active", "stopped"):
        for task in ("resize_prep", "resize_migrating", "resize_migrated", "resize_finish"):
            assert f"{vm}:{task}" in names
    assert {"resized", "resized:resize_reverting", "resized:powering-off"} <= names
    assert "active:resize_reverting" not in names


def test_happy_path_sequence() -> None:
    state = instance(VmState.ACTIVE)
    sequence = [
        ("migrate", "active:resize_prep"),
        ("migrate_server", "active:resize_prep"),
        ("prep_resize", "active:resize_prep"),
        ("resize_instance", "active:resize_migrating"),
        ("resize_migrated", "active:resize_migrated"),
        ("finish_resize", "active:resize_finish"),
        ("resize_finished", "resized"),
        ("confirmed_running", "active"),
    ]
    for trigger, expected in sequence:
        state = MACHINE.apply(trigger, state, Caller.admin())
        assert state.state.name == expected


def test_guard_failures_raise_the_public_exception_and_change_nothing() -> None:
    owner = Caller.owner("demo")
    with pytest.raises(PolicyNotAuthorized):
        MACHINE.apply("migrate", instance(VmState.ACTIVE), owner)
    with pytest.raises(InstanceIsLocked):
        MACHINE.apply("resize", instance(VmState.ACTIVE, locked=True), owner)
    with pytest.raises(InstanceInvalidState, match="vm_state error"):
        MACHINE.apply("resize", instance(VmState.ERROR), owner)
    with pytest.raises(UnexpectedTaskStateError, match="expecting \\[resize_migrating\\]"):
        MACHINE.apply("resize_migrated", instance(VmState.ACTIVE, TaskState.RESIZE_PREP), owner)


def test_an_effect_that_raises_leaves_the_state_alone() -> None:
    record = instance(VmState.ACTIVE, TaskState.RESIZE_MIGRATING)

    def boom() -> None:
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        MACHINE.apply("resize_migrated", record, Caller.admin(), boom)
    assert record.task_state is TaskState.RESIZE_MIGRATING


def test_states_outside_the_workflow_are_refused_by_guards() -> None:
    odd = instance(VmState.ACTIVE, TaskState.RESIZE_CONFIRMING)
    with pytest.raises(InstanceInvalidState, match="task_state resize_confirming"):
        MACHINE.apply("migrate", odd, Caller.admin())


def test_guards_are_listed_per_transition() -> None:
    migrate = [t for t in MACHINE.transitions() if t.trigger == "migrate"]
    assert [t.source.name for t in migrate] == ["active", "stopped"]
    assert [repr(g) for g in migrate[0].guards] == [
        "require_policy(admin)",
        "require_unlocked(admin_override=True)",
        "require_vm_state(active, stopped)",
        "require_task_state(None)",
    ]
    assert migrate[0].role is Role.API


def test_shared_machine_needs_no_per_instance_objects() -> None:
    before = len(MACHINE._machine.models) + len(MACHINE._plain.models)
    for n in range(100):
        MACHINE.apply(
            "migrate", attrs.evolve(instance(VmState.ACTIVE), uuid=str(n)), Caller.admin()
        )
    assert len(MACHINE._machine.models) + len(MACHINE._plain.models) == before == 0


def test_a_guard_that_refuses_its_own_source_is_rejected_at_build() -> None:
    broken = [
        attrs.evolve(r, guards=(require_vm_state(VmState.STOPPED),)) if r.trigger == "stop" else r
        for r in TABLE
    ]
    with pytest.raises(MachineDefinitionError, match="'stop': its guards refuse its own source"):
        Machine(broken)


def test_a_guard_that_lets_other_states_through_is_rejected_at_build() -> None:
    broken = [attrs.evolve(r, guards=r.guards[:2]) if r.trigger == "migrate" else r for r in TABLE]
    with pytest.raises(MachineDefinitionError, match=r"accept .* not one of its sources"):
        Machine(broken)


def test_duplicate_trigger_rows_are_rejected() -> None:
    with pytest.raises(MachineDefinitionError, match="two rows"):
        Machine([*TABLE, TABLE[0]])


def test_unreachable_states_are_rejected() -> None:
    island = MachineState(VmState.DELETED, TaskState.POWERING_ON)
    extra = attrs.evolve(
        next(r for r in TABLE if r.trigger == "resize_finished"),
        trigger="from_island",
        sources=(island,),
        guards=(
            require_vm_state(VmState.DELETED),
            require_expected_task_state(TaskState.POWERING_ON),
        ),
    )
    with pytest.raises(
        MachineDefinitionError, match="unreachable from a stable state: deleted:powering-on"
    ):
        Machine([*TABLE, extra])


def test_check_is_a_dry_run() -> None:
    record = instance(VmState.ACTIVE)
    assert MACHINE.check("migrate", GuardContext("migrate", Caller.admin(), record)) is None
    failure = MACHINE.check(
        "confirm_resize", GuardContext("confirm_resize", Caller.admin(), record)
    )
    assert failure is not None and failure.kind.value == "vm_state"


def test_committed_state_docs_are_not_stale() -> None:
    assert (DOCS / "states.md").read_text() == states_markdown(), "run `make docs`"
    assert (DOCS / "states.mmd").read_text() == mermaid(), "run `make docs`"


def test_mermaid_lists_the_happy_path_edges() -> None:
    text = mermaid()
    assert text.startswith("stateDiagram-v2\n")
    assert "active__resize_migrating --> active__resize_migrated: resize_migrated" in text
    assert "errored" not in text
    assert "errored" in mermaid(include_failures=True)


def test_committed_failure_table_is_not_stale() -> None:
    from coldmig_fsm.harness.failure_table import failures_markdown  # noqa: PLC0415 - slowish

    assert (DOCS / "failures.md").read_text() == failures_markdown(), "run `make docs`"


REFERENCE = Machine(TABLE, runner="transitions")


def _outcome(machine: Machine, trigger: str, ctx: GuardContext) -> object:
    ran: list[str] = []

    def effect() -> str:
        ran.append(trigger)
        return "done"

    try:
        fired = machine.fire(trigger, ctx, effect=effect)
    except Exception as refused:  # the exception is the outcome compared
        return (type(refused), str(refused), ran)
    return (fired, ran)


@pytest.mark.parametrize("locked", [False, True])
@pytest.mark.parametrize(
    "caller", [Caller.admin(), Caller.owner("demo"), Caller.owner("other")], ids=str
)
def test_the_compiled_dispatch_fires_as_transitions_does(caller: Caller, locked: bool) -> None:
    # Every trigger from every state, for callers the policy treats differently, on locked
    # and unlocked instances: the same Fired (state, CAS expectations, effect result) or the
    # same exception, and the effect runs exactly when transitions would run it.
    compared = 0
    for rule in MACHINE.rules:
        for state in sorted(MACHINE.states, key=lambda s: s.name):
            record = instance(state.vm_state, state.task_state, locked=locked)
            ctx = GuardContext(rule.trigger, caller, record)
            assert _outcome(MACHINE, rule.trigger, ctx) == _outcome(REFERENCE, rule.trigger, ctx)
            compared += 1
    assert compared == len(MACHINE.rules) * len(MACHINE.states)


def test_both_runners_refuse_an_unknown_trigger() -> None:
    ctx = GuardContext("nope", Caller.admin(), instance(VmState.ACTIVE))
    for machine in (MACHINE, REFERENCE):
        with pytest.raises(MachineDefinitionError, match="unknown trigger 'nope'"):
            machine.fire("nope", ctx)


def test_no_runner_has_a_trigger_the_table_does_not_declare() -> None:
    # transitions' auto_transitions would add a guardless ``to_<state>`` trigger per
    # state (to_error from anywhere): both runners know the declared triggers only.
    ctx = GuardContext("to_error", Caller.admin(), instance(VmState.ACTIVE))
    for machine in (MACHINE, REFERENCE):
        with pytest.raises(MachineDefinitionError, match="unknown trigger 'to_error'"):
            machine.fire("to_error", ctx)


def test_an_unexpected_migration_status_names_what_was_expected() -> None:
    # The message of a defensive check no explorer reaches (a mutant of it survived them).
    with pytest.raises(UnexpectedMigrationStatusError) as caught:
        MACHINE.migration_after("confirm_resize", MigrationStatus.MIGRATING, None)
    assert str(caught.value) == (
        "Cannot 'confirm_resize' the migration in status migrating: expected one of ['finished']"
    )
    with pytest.raises(UnexpectedMigrationStatusError) as caught:
        MACHINE.migration_after("powered_off", MigrationStatus.MIGRATING, None)
    assert str(caught.value).endswith("in status migrating: expected one of []")


_POST = MigrationStatus.POST_MIGRATING


@pytest.mark.parametrize(
    ("trigger", "task_state", "status", "after", "changes"),
    [
        ("finish_resize", TaskState.RESIZE_MIGRATED, _POST, _POST, False),
        ("resize_finished", TaskState.RESIZE_FINISH, _POST, MigrationStatus.FINISHED, True),
        ("stop", None, None, None, False),
    ],
)
def test_fired_says_whether_the_migration_record_changes(
    trigger: str,
    task_state: TaskState | None,
    status: MigrationStatus | None,
    after: MigrationStatus | None,
    changes: bool,
) -> None:
    vm = instance(VmState.ACTIVE, task_state)
    fired = MACHINE.fire(
        trigger, GuardContext(trigger, Caller.admin(), vm), migration_status=status
    )
    assert (fired.migration_status, fired.changes_migration) == (after, changes)
