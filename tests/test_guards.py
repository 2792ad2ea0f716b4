"""Guard factories: pure, named in their repr, failures mapped to Nova's exceptions."""

from __future__ import annotations

import copy

import pytest

from coldmig_fsm import Caller, Instance, TaskState, VmState
from coldmig_fsm.exceptions import (
    InstanceInvalidState,
    InstanceIsLocked,
    MachineDefinitionError,
    PolicyNotAuthorized,
    UnexpectedTaskStateError,
)
from coldmig_fsm.guards import (
    FailureKind,
    Guard,
    GuardContext,
    GuardFailure,
    PolicyRule,
    require_expected_task_state,
    require_policy,
    require_task_state,
    require_unlocked,
    require_vm_state,
)

ADMIN, OWNER = Caller.admin(), Caller.owner("demo")


def ctx(caller: Caller = OWNER, **changes: object) -> GuardContext:
    fields = {"vm_state": VmState.ACTIVE, "task_state": None, "locked": False, **changes}
    record = Instance("u1", "vm1", "demo", "host-a", "m1.tiny", **fields)  # type: ignore[arg-type]
    return GuardContext("resize", caller, record)


def test_policy() -> None:
    admin_only = require_policy(PolicyRule.ADMIN)
    assert admin_only(ctx(ADMIN)) is None
    failure = admin_only(ctx(OWNER))
    assert failure is not None and failure.kind is FailureKind.POLICY
    assert isinstance(failure.to_exception(), PolicyNotAuthorized)
    assert require_policy(PolicyRule.ADMIN_OR_OWNER)(ctx(OWNER)) is None
    assert not admin_only.needs_instance


def test_lock_with_admin_override() -> None:
    guard = require_unlocked()
    assert guard(ctx(OWNER)) is None
    assert guard(ctx(ADMIN, locked=True, locked_by="owner")) is None
    failure = guard(ctx(OWNER, locked=True, locked_by="admin"))
    assert failure is not None
    error = failure.to_exception()
    assert isinstance(error, InstanceIsLocked)
    assert str(error) == "Instance vm1 (u1) is locked (by admin): resize refused"


def test_vm_state_list() -> None:
    guard = require_vm_state(VmState.ACTIVE, VmState.STOPPED)
    assert guard(ctx(vm_state=VmState.STOPPED)) is None
    failure = guard(ctx(vm_state=VmState.ERROR))
    assert failure is not None
    assert str(failure.to_exception()) == (
        "Cannot 'resize' instance vm1 (u1) while it is in vm_state error "
        "(allowed: [active, stopped])"
    )
    assert isinstance(failure.to_exception(), InstanceInvalidState)
    assert repr(guard) == "require_vm_state(active, stopped)"


def test_task_state_list_and_expected_task_state() -> None:
    api = require_task_state(None)
    step = require_expected_task_state(TaskState.RESIZE_PREP)
    busy = ctx(task_state=TaskState.RESIZE_PREP)
    idle = ctx()
    assert api(idle) is None and step(busy) is None
    api_failure, step_failure = api(busy), step(idle)
    assert api_failure is not None and step_failure is not None
    assert isinstance(api_failure.to_exception(), InstanceInvalidState)
    assert isinstance(step_failure.to_exception(), UnexpectedTaskStateError)
    assert str(step_failure.to_exception()) == (
        "Unexpected task state: expecting [resize_prep] but the actual state is None "
        "(instance vm1 (u1), step resize)"
    )


@pytest.mark.parametrize(
    "factory", [require_vm_state, require_task_state, require_expected_task_state]
)
def test_empty_guards_fail_when_built(factory: object) -> None:
    with pytest.raises(MachineDefinitionError, match="at least one"):
        factory()  # type: ignore[operator]


LOCKED_BY_OWNER = ctx(OWNER, locked=True, locked_by="owner")


@pytest.mark.parametrize(
    ("guard", "context", "expected"),
    [
        (
            require_unlocked(),
            LOCKED_BY_OWNER,
            GuardFailure(FailureKind.LOCKED, "resize", "vm1 (u1)", "owner"),
        ),
        (require_unlocked(), ctx(ADMIN, locked=True, locked_by="owner"), None),
        (
            require_vm_state(VmState.STOPPED),
            ctx(),
            GuardFailure(FailureKind.VM_STATE, "resize", "vm1 (u1)", "active", ("stopped",)),
        ),
        (
            require_task_state(None),
            ctx(task_state=TaskState.RESIZE_PREP),
            GuardFailure(FailureKind.TASK_STATE, "resize", "vm1 (u1)", "resize_prep", (None,)),
        ),
        (
            require_expected_task_state(TaskState.RESIZE_PREP),
            ctx(),
            GuardFailure(
                FailureKind.EXPECTED_TASK_STATE, "resize", "vm1 (u1)", "None", ("resize_prep",)
            ),
        ),
        (
            require_policy(PolicyRule.ADMIN),
            ctx(OWNER),
            GuardFailure(FailureKind.POLICY, "resize", "vm1 (u1)", "owner"),
        ),
    ],
    ids=["locked", "locked-admin", "vm_state", "task_state", "expected_task_state", "policy"],
)
def test_guards_are_pure(
    guard: Guard, context: GuardContext, expected: GuardFailure | None
) -> None:
    """The answer depends on the context only: the same, exact answer on every call, and
    the context is left as it was."""
    pristine = copy.deepcopy(context)
    assert guard(context) == expected
    assert guard(context) == expected  # nothing kept from the first call
    assert guard(pristine) == expected  # an equal context, another object: the same
    assert context == pristine
