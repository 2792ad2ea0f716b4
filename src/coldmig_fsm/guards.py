"""Guards: pure predicates over a request, built by ``require_*`` factories.

A guard is a small frozen callable. Called with a :class:`GuardContext` it returns
``None`` when the request may go on, or a :class:`GuardFailure` naming what failed. Guards
never raise and never change anything; :func:`GuardFailure.to_exception` turns a failure
into the public exception (Nova's class name), and the machine raises it.

The API applies its guards in Nova's order: policy, lock, vm_state, task_state. The steps
of the compute roles are guarded by :func:`require_expected_task_state`, the in-process half
of the compare-and-swap that the store completes on save.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Protocol

import attrs

from coldmig_fsm import exceptions
from coldmig_fsm.records import Caller, Instance
from coldmig_fsm.states import TaskState, VmState

__all__ = [
    "FailureKind",
    "Guard",
    "GuardContext",
    "GuardFailure",
    "PolicyRule",
    "require_expected_task_state",
    "require_policy",
    "require_task_state",
    "require_unlocked",
    "require_vm_state",
]


class PolicyRule(enum.StrEnum):
    """Who may perform an action (Nova's default policies)."""

    ADMIN = "admin"
    ADMIN_OR_OWNER = "admin_or_owner"


class FailureKind(enum.Enum):
    POLICY = "policy"
    LOCKED = "locked"
    VM_STATE = "vm_state"
    TASK_STATE = "task_state"
    EXPECTED_TASK_STATE = "expected_task_state"


@attrs.frozen
class GuardContext:
    """What a guard looks at: the action, who asks, and the instance as last read."""

    action: str
    caller: Caller
    instance: Instance | None = None


@attrs.frozen
class GuardFailure:
    """Why a guard refused. ``expected`` lists what would have been accepted."""

    kind: FailureKind
    action: str
    instance: str | None
    actual: str | None
    expected: tuple[str | None, ...] = ()

    @property
    def message(self) -> str:
        who = f"instance {self.instance}" if self.instance else "an instance"
        if self.kind is FailureKind.POLICY:
            return f"Policy doesn't allow {self.action} to be performed by {self.actual}"
        if self.kind is FailureKind.LOCKED:
            return f"{who.capitalize()} is locked (by {self.actual}): {self.action} refused"
        if self.kind is FailureKind.EXPECTED_TASK_STATE:
            return (
                f"Unexpected task state: expecting {_show(self.expected)} but the actual "
                f"state is {self.actual} ({who}, step {self.action})"
            )
        attribute = self.kind.value
        return (
            f"Cannot '{self.action}' {who} while it is in {attribute} {self.actual} "
            f"(allowed: {_show(self.expected)})"
        )

    def to_exception(self) -> exceptions.RequestRefused:
        """The public exception for this failure."""
        cls = _EXCEPTION_FOR_KIND[self.kind]
        return cls(self.message)


_EXCEPTION_FOR_KIND: dict[FailureKind, type[exceptions.RequestRefused]] = {
    FailureKind.POLICY: exceptions.PolicyNotAuthorized,
    FailureKind.LOCKED: exceptions.InstanceIsLocked,
    FailureKind.VM_STATE: exceptions.InstanceInvalidState,
    FailureKind.TASK_STATE: exceptions.InstanceInvalidState,
    FailureKind.EXPECTED_TASK_STATE: exceptions.UnexpectedTaskStateError,
}


def _show(values: Iterable[str | None]) -> str:
    return "[" + ", ".join("None" if v is None else v for v in values) + "]"


class Guard(Protocol):
    """The type of every guard."""

    @property
    def needs_instance(self) -> bool:
        """False when the guard can run before the instance is looked up."""

    def __call__(self, ctx: GuardContext) -> GuardFailure | None: ...


def _describe(ctx: GuardContext) -> str | None:
    return ctx.instance.describe() if ctx.instance is not None else None


@attrs.frozen(repr=False)
class _PolicyGuard:
    rule: PolicyRule
    needs_instance = False

    def __call__(self, ctx: GuardContext) -> GuardFailure | None:
        if ctx.caller.is_admin or self.rule is PolicyRule.ADMIN_OR_OWNER:
            return None
        return GuardFailure(FailureKind.POLICY, ctx.action, _describe(ctx), ctx.caller.role)

    def __repr__(self) -> str:
        return f"require_policy({self.rule.value})"


@attrs.frozen(repr=False)
class _UnlockedGuard:
    needs_instance = True

    def __call__(self, ctx: GuardContext) -> GuardFailure | None:
        inst = ctx.instance
        if inst is None or not inst.locked or ctx.caller.is_admin:
            return None
        return GuardFailure(FailureKind.LOCKED, ctx.action, _describe(ctx), inst.locked_by)

    def __repr__(self) -> str:
        return "require_unlocked(admin_override=True)"


@attrs.frozen(repr=False)
class _VmStateGuard:
    allowed: frozenset[VmState]
    needs_instance = True

    def __call__(self, ctx: GuardContext) -> GuardFailure | None:
        inst = ctx.instance
        if inst is None or inst.vm_state in self.allowed:
            return None
        expected = tuple(sorted(s.value for s in self.allowed))
        return GuardFailure(
            FailureKind.VM_STATE, ctx.action, _describe(ctx), inst.vm_state.value, expected
        )

    def __repr__(self) -> str:
        return f"require_vm_state({', '.join(sorted(s.value for s in self.allowed))})"


def _task_values(states: frozenset[TaskState | None]) -> tuple[str | None, ...]:
    names = sorted(s.value for s in states if s is not None)
    return ((None,) if None in states else ()) + tuple(names)


@attrs.frozen(repr=False)
class _TaskStateGuard:
    allowed: frozenset[TaskState | None]
    expected_kind: FailureKind
    needs_instance = True

    def __call__(self, ctx: GuardContext) -> GuardFailure | None:
        inst = ctx.instance
        if inst is None or inst.task_state in self.allowed:
            return None
        actual = inst.task_state.value if inst.task_state is not None else "None"
        return GuardFailure(
            self.expected_kind, ctx.action, _describe(ctx), actual, _task_values(self.allowed)
        )

    def __repr__(self) -> str:
        name = (
            "require_expected_task_state"
            if self.expected_kind is FailureKind.EXPECTED_TASK_STATE
            else "require_task_state"
        )
        return f"{name}({', '.join(str(v) for v in _task_values(self.allowed))})"


def require_policy(rule: PolicyRule) -> Guard:
    """Admin-only actions refuse everyone else; admin-or-owner ones refuse nobody here.

    (A caller who is neither admin nor the owner never sees the instance at all: the
    lookup answers :class:`~coldmig_fsm.exceptions.InstanceNotFound`, as in Nova.)
    """
    return _PolicyGuard(rule)


def require_unlocked() -> Guard:
    """A locked instance refuses the action unless the caller is an admin."""
    return _UnlockedGuard()


def require_vm_state(*allowed: VmState) -> Guard:
    """vm_state must be one of ``allowed`` (→ ``InstanceInvalidState``)."""
    if not allowed:
        raise exceptions.MachineDefinitionError("require_vm_state() needs at least one state")
    return _VmStateGuard(frozenset(allowed))


def require_task_state(*allowed: TaskState | None) -> Guard:
    """task_state must be one of ``allowed`` (→ ``InstanceInvalidState``); API checks."""
    if not allowed:
        raise exceptions.MachineDefinitionError("require_task_state() needs at least one state")
    return _TaskStateGuard(frozenset(allowed), FailureKind.TASK_STATE)


def require_expected_task_state(*expected: TaskState | None) -> Guard:
    """A step runs only from the task_state it expects (→ ``UnexpectedTaskStateError``)."""
    if not expected:
        raise exceptions.MachineDefinitionError(
            "require_expected_task_state() needs at least one state"
        )
    return _TaskStateGuard(frozenset(expected), FailureKind.EXPECTED_TASK_STATE)
