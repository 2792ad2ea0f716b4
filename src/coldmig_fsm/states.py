"""Nova's state vocabularies, with Nova's exact values.

An instance's lifecycle position is the pair ``(vm_state, task_state)``: ``vm_state`` is
the stable state, ``task_state`` what is in progress (``None`` when nothing is). The pairs
that this workflow can reach are the states of the machine in :mod:`coldmig_fsm.machine`;
:class:`MachineState` names one pair.

``power_state`` is what the hypervisor reports and is *not* part of the machine state: it
is an observation, refreshed from the driver after each step that touches the guest.
"""

from __future__ import annotations

import enum

import attrs

__all__ = [
    "MachineState",
    "MigrationStatus",
    "MigrationType",
    "PowerState",
    "TaskState",
    "VmState",
]


class VmState(enum.StrEnum):
    """Nova's ``vm_states``: the stable state of an instance."""

    ACTIVE = "active"
    BUILDING = "building"
    PAUSED = "paused"
    SUSPENDED = "suspended"
    STOPPED = "stopped"
    RESCUED = "rescued"
    RESIZED = "resized"
    SOFT_DELETED = "soft-delete"
    DELETED = "deleted"
    ERROR = "error"
    SHELVED = "shelved"
    SHELVED_OFFLOADED = "shelved_offloaded"

    def __str__(self) -> str:
        return self.value


class TaskState(enum.StrEnum):
    """Nova's ``task_states`` that this workflow sets or meets."""

    RESIZE_PREP = "resize_prep"
    RESIZE_MIGRATING = "resize_migrating"
    RESIZE_MIGRATED = "resize_migrated"
    RESIZE_FINISH = "resize_finish"
    RESIZE_REVERTING = "resize_reverting"
    RESIZE_CONFIRMING = "resize_confirming"
    POWERING_OFF = "powering-off"
    POWERING_ON = "powering-on"
    DELETING = "deleting"

    def __str__(self) -> str:
        return self.value


class PowerState(int, enum.Enum):
    """Nova's ``power_state``: what the hypervisor reports (integers as in Nova)."""

    NOSTATE = 0
    RUNNING = 1
    PAUSED = 3
    SHUTDOWN = 4
    CRASHED = 6
    SUSPENDED = 7

    @property
    def label(self) -> str:
        """The lower-case name Nova's API shows (``running``, ``shutdown``, ...)."""
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> PowerState:
        """Inverse of :attr:`label`; raises ``KeyError`` for an unknown label."""
        return cls[label.upper()]

    @classmethod
    def for_vm_state(cls, vm_state: VmState) -> PowerState:
        """The power state a guest has when an instance is created in ``vm_state``."""
        return _POWER_FOR_VM_STATE.get(vm_state, cls.NOSTATE)


_POWER_FOR_VM_STATE = {
    VmState.ACTIVE: PowerState.RUNNING,
    VmState.STOPPED: PowerState.SHUTDOWN,
    VmState.PAUSED: PowerState.PAUSED,
}


class MigrationStatus(enum.StrEnum):
    """The ``status`` of a migration record, in lifecycle order.

    ``pre-migrating → migrating → post-migrating → finished``, then
    ``confirming → confirmed`` or ``reverting → reverted``; any failure sets ``error``.
    ``cancelling`` (an abort accepted, its rollback not yet run) and ``cancelled`` (the
    abort's rollback done) are this library's additions for an aborted move. Which rule
    of the machine leads from which status to which is declared in the transition table
    (:data:`coldmig_fsm.machine.TABLE`), never by the roles.
    """

    PRE_MIGRATING = "pre-migrating"
    MIGRATING = "migrating"
    POST_MIGRATING = "post-migrating"
    FINISHED = "finished"
    CONFIRMING = "confirming"
    CONFIRMED = "confirmed"
    REVERTING = "reverting"
    REVERTED = "reverted"
    ERROR = "error"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    @property
    def is_failed(self) -> bool:
        """True for a record whose move failed (``error``)."""
        return self is MigrationStatus.ERROR

    @property
    def is_cancelling(self) -> bool:
        """True while an accepted abort has not been carried out."""
        return self is MigrationStatus.CANCELLING

    @property
    def is_final(self) -> bool:
        """True when the move is over. Only ``reverted`` can still change: to ``error``,
        when the step that ends the revert (the stop of a guest that was stopped) fails."""
        return self in _FINAL_MIGRATION_STATUSES


_FINAL_MIGRATION_STATUSES = frozenset(
    {
        MigrationStatus.CONFIRMED,
        MigrationStatus.REVERTED,
        MigrationStatus.ERROR,
        MigrationStatus.CANCELLED,
    }
)


class MigrationType(enum.StrEnum):
    """``migration`` keeps the flavor; ``resize`` changes it."""

    MIGRATION = "migration"
    RESIZE = "resize"

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class MachineState:
    """One state of the machine: a ``(vm_state, task_state)`` pair.

    Its :attr:`name` is the ``vm_state`` value alone when no task is running, else
    ``"<vm_state>:<task_state>"`` (``"active:resize_prep"``).
    """

    vm_state: VmState
    task_state: TaskState | None = None

    @property
    def name(self) -> str:
        if self.task_state is None:
            return self.vm_state.value
        return f"{self.vm_state.value}:{self.task_state.value}"

    @classmethod
    def parse(cls, name: str) -> MachineState:
        """Inverse of :attr:`name`; raises ``ValueError`` on an unknown value."""
        vm, _, task = name.partition(":")
        return cls(VmState(vm), TaskState(task) if task else None)

    def __str__(self) -> str:
        return self.name
