"""The cold-migration state machine: one transition table, as data, run by ``transitions``.

The machine's states are ``(vm_state, task_state)`` pairs (:class:`MachineState`). Every
step of every role is a *trigger*: the API's ``migrate`` moves ``active`` to
``active:resize_prep``; the source compute's ``resize_instance`` moves
``active:resize_prep`` to ``active:resize_migrating``; and so on. :data:`TABLE` lists them
all. It is validated and frozen when this module is imported:

* every trigger has one guard list, the same from every source state;
* from every source state the guards pass (for an admin on an unlocked instance);
* from every *other* state the guards refuse, so a trigger fired in the wrong state
  raises the public exception its guards name, never ``transitions.MachineError``;
* every state is reachable from a stable state.

One :class:`transitions.Machine` holds the table for every instance. It is never attached
to records (``add_model`` costs kilobytes per model and is O(N²) to attach). At run time
:meth:`Machine.fire` does not go through ``transitions``' trigger machinery (event data,
callback resolution, state objects: about a quarter of a whole migrate+confirm cycle);
it runs a dispatch table *compiled from the transitions machine's own event table*: for
each trigger and source state, the transition's conditions (our guards, in order) and its
destination. ``Machine(rules, runner="transitions")`` fires through ``transitions``
instead, on a throw-away cursor that carries the state name; the tests fire every trigger
from every state both ways and require the same outcome.

Callback order of one trigger (the ``transitions`` order, restated for this machine):

1. the guards, in table order, as the transition's conditions; the first failing one stops
   the trigger and its :class:`GuardFailure` is raised as the public exception;
2. the *effect* given by the role (a driver call, say) as the ``before`` callback: when it
   raises, the state has not changed and the role handles the error;
3. the state change on the cursor; the role then saves the new record with a
   compare-and-swap on the task_state it read.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, Literal, cast

import attrs
from transitions import EventData
from transitions import Machine as _TransitionsMachine

from coldmig_fsm.exceptions import (
    InstanceInvalidState,
    MachineDefinitionError,
    UnexpectedMigrationStatusError,
)
from coldmig_fsm.guards import (
    Guard,
    GuardContext,
    GuardFailure,
    require_expected_task_state,
    require_policy,
    require_task_state,
    require_unlocked,
    require_vm_state,
)
from coldmig_fsm.operations import OPERATIONS, Op
from coldmig_fsm.records import Caller, Instance
from coldmig_fsm.states import MachineState, MigrationStatus, TaskState, VmState

__all__ = [
    "MACHINE",
    "MIGRATION_TABLE",
    "TABLE",
    "Fired",
    "Machine",
    "MigrationChange",
    "MigrationRule",
    "Role",
    "Rule",
    "Target",
    "Transition",
]


class Role(enum.StrEnum):
    """Who fires a trigger."""

    API = "api"
    CONDUCTOR = "conductor"
    SOURCE = "source compute"
    DEST = "dest compute"
    COMPUTE = "compute"

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class Target:
    """Where a rule leads: ``vm_state`` ``None`` keeps the source's vm_state;
    ``keep_task`` keeps its task_state (a guarded step that changes neither)."""

    vm_state: VmState | None
    task_state: TaskState | None
    keep_task: bool = False

    def resolve(self, source: MachineState) -> MachineState:
        vm = source.vm_state if self.vm_state is None else self.vm_state
        return MachineState(vm, source.task_state if self.keep_task else self.task_state)

    def describe(self) -> str:
        vm = "(same vm_state)" if self.vm_state is None else self.vm_state.value
        if self.keep_task:
            return f"{vm} / (same task_state)"
        task = "null" if self.task_state is None else self.task_state.value
        return f"{vm} / {task}"


@attrs.frozen
class MigrationChange:
    """What a rule does to the migration record of the move it belongs to.

    ``steps`` maps each status the record may have when the rule fires to the status it
    is saved with (``None``: left as it is; the save still compares-and-swaps on the
    status read, so a concurrent change makes the step lose). A status not listed
    refuses the trigger (:class:`~coldmig_fsm.exceptions.UnexpectedMigrationStatusError`).
    ``creates``: the rule creates the record, in this status.
    """

    steps: tuple[tuple[MigrationStatus, MigrationStatus | None], ...] = ()
    creates: MigrationStatus | None = None

    @property
    def accepts(self) -> frozenset[MigrationStatus]:
        return frozenset(before for before, _ in self.steps)

    def after(self, status: MigrationStatus) -> MigrationStatus | None:
        """The status a record in ``status`` is saved with (``None``: unchanged).

        Raises:
            KeyError: the rule does not accept ``status``.
        """
        for before, after in self.steps:
            if before is status:
                return after
        raise KeyError(status)

    def describe(self) -> str:
        parts = [f"creates `{self.creates.value}`"] if self.creates is not None else []
        grouped: dict[str, list[str]] = {}
        for before, after in self.steps:
            grouped.setdefault("=" if after is None else after.value, []).append(before.value)
        for to, befores in grouped.items():
            names = ", ".join(f"`{b}`" for b in befores)
            parts.append(f"{names} kept" if to == "=" else f"{names} → `{to}`")
        return "; ".join(parts) or "—"


def _migration(
    *accepts: MigrationStatus, to: MigrationStatus | None = None
) -> tuple[tuple[MigrationStatus, MigrationStatus | None], ...]:
    return tuple((status, to) for status in accepts)


@attrs.frozen
class Rule:
    """One row of the table: ``trigger`` takes each of ``sources`` to ``target``, and the
    move's migration record as ``migration`` says (``None``: the rule has no record)."""

    trigger: str = attrs.field(converter=str)  # an Op is kept as its plain name
    role: Role
    sources: tuple[MachineState, ...]
    target: Target
    guards: tuple[Guard, ...]
    doc: str
    migration: MigrationChange | None = None


@attrs.frozen
class MigrationRule:
    """A step of a migration record alone, with no instance step (the instance is gone,
    or not the record's to move): ``trigger`` moves the record as ``migration`` says."""

    trigger: str
    role: Role
    migration: MigrationChange
    doc: str


@attrs.frozen
class Fired:
    """What firing one trigger decided; nothing is saved yet.

    The caller saves the instance in :attr:`state` with a compare-and-swap on
    :attr:`expected_task_state` (the task_state the trigger was fired from), and the
    migration record (when there is one) in :attr:`migration_status` with a
    compare-and-swap on :attr:`expected_migration_status`. ``migration_status`` equals
    ``expected_migration_status`` when the rule holds the record where it is.
    """

    trigger: str
    state: MachineState
    expected_task_state: TaskState | None
    migration_status: MigrationStatus | None = None
    expected_migration_status: MigrationStatus | None = None
    result: Any = None

    @property
    def changes_migration(self) -> bool:
        return self.migration_status is not self.expected_migration_status


@attrs.frozen
class Transition:
    """One edge of the machine, as listed by :meth:`Machine.transitions`."""

    trigger: str
    role: Role
    source: MachineState
    dest: MachineState
    guards: tuple[Guard, ...]
    doc: str


# --- the table -------------------------------------------------------------------------

_A, _S, _R, _E = VmState.ACTIVE, VmState.STOPPED, VmState.RESIZED, VmState.ERROR
_MOVABLE: Final = (_A, _S)
_NO_TASK: Final = None


def _pairs(vm_states: Iterable[VmState], task: TaskState | None) -> tuple[MachineState, ...]:
    return tuple(MachineState(vm, task) for vm in vm_states)


def _moving(task: TaskState) -> tuple[MachineState, ...]:
    return _pairs(_MOVABLE, task)


def _api_guards(op: Op, *vm_states: VmState) -> tuple[Guard, ...]:
    return (
        require_policy(OPERATIONS[op].policy),
        require_unlocked(),
        require_vm_state(*vm_states),
        require_task_state(_NO_TASK),
    )


def _step(
    trigger: str,
    role: Role,
    sources: tuple[MachineState, ...],
    target: Target,
    doc: str,
    migration: MigrationChange | None = None,
) -> Rule:
    """A compute/conductor step: guarded by the task_state(s) it expects."""
    expected = sorted({s.task_state for s in sources}, key=lambda t: "" if t is None else t.value)
    vm_states = sorted({s.vm_state for s in sources}, key=lambda v: v.value)
    return Rule(
        trigger,
        role,
        sources,
        target,
        (require_vm_state(*vm_states), require_expected_task_state(*expected)),
        doc,
        migration,
    )


_RESIZE_TASKS: Final = (
    TaskState.RESIZE_PREP,
    TaskState.RESIZE_MIGRATING,
    TaskState.RESIZE_MIGRATED,
    TaskState.RESIZE_FINISH,
)
_DELETABLE_VM: Final = tuple(v for v in VmState if v not in (VmState.DELETED, VmState.SOFT_DELETED))
_STABLE: Final = _pairs(VmState, _NO_TASK)
_IN_FLIGHT: Final = (
    *(pair for task in _RESIZE_TASKS for pair in _moving(task)),
    MachineState(_R, TaskState.RESIZE_REVERTING),
    *_pairs((_A, _E, _R), TaskState.POWERING_OFF),
    MachineState(_S, TaskState.POWERING_ON),
)
_DELETE_SOURCES: Final = (*(s for s in _STABLE if s.vm_state in _DELETABLE_VM), *_IN_FLIGHT)


def _delete_guards() -> tuple[Guard, ...]:
    tasks = sorted({s.task_state for s in _IN_FLIGHT if s.task_state is not None})
    return (
        require_policy(OPERATIONS[Op.DELETE].policy),
        require_unlocked(),
        require_vm_state(*_DELETABLE_VM),
        require_task_state(_NO_TASK, *tasks),
    )


_M = MigrationStatus
_MOVING_STATUSES: Final = (_M.PRE_MIGRATING, _M.MIGRATING, _M.POST_MIGRATING)
_FINAL_STATUSES: Final = (_M.CONFIRMED, _M.REVERTED, _M.ERROR, _M.CANCELLED)
_OPEN_STATUSES: Final = tuple(s for s in _M if s not in _FINAL_STATUSES)


def _fail_migration(*, cancelling_to: MigrationStatus) -> MigrationChange:
    """A failure end meets the record in any status: it fails (a step after ``reverted``
    fails it too: the stop that ends a revert, the delete of a half-reverted instance),
    unless it already failed, was cancelled or was confirmed."""
    kept = (_M.ERROR, _M.CANCELLED, _M.CONFIRMED)
    return MigrationChange(
        (
            *_migration(*(s for s in _M if s not in (*kept, _M.CANCELLING)), to=_M.ERROR),
            (_M.CANCELLING, cancelling_to),
            *_migration(*kept),
        )
    )


def _end_with_instance() -> MigrationChange:
    """A deleted instance's records: each open one fails (an abort not yet carried out
    is cancelled); a final one stays."""
    return MigrationChange(
        (
            *_migration(*(s for s in _OPEN_STATUSES if s is not _M.CANCELLING), to=_M.ERROR),
            (_M.CANCELLING, _M.CANCELLED),
            *_migration(*_FINAL_STATUSES),
        )
    )


TABLE: Final[tuple[Rule, ...]] = (
    # API: checks and the first compare-and-swap write.
    Rule(
        Op.MIGRATE,
        Role.API,
        _pairs(_MOVABLE, _NO_TASK),
        Target(None, TaskState.RESIZE_PREP),
        _api_guards(Op.MIGRATE, *_MOVABLE),
        "cold migration accepted (flavor unchanged)",
    ),
    Rule(
        Op.RESIZE,
        Role.API,
        _pairs(_MOVABLE, _NO_TASK),
        Target(None, TaskState.RESIZE_PREP),
        _api_guards(Op.RESIZE, *_MOVABLE),
        "resize accepted (new flavor)",
    ),
    Rule(
        Op.CONFIRM_RESIZE,
        Role.API,
        (MachineState(_R),),
        Target(_R, _NO_TASK),
        _api_guards(Op.CONFIRM_RESIZE, _R),
        "confirm accepted (task_state stays null, as in Nova)",
        MigrationChange(_migration(_M.FINISHED, to=_M.CONFIRMING)),
    ),
    Rule(
        Op.REVERT_RESIZE,
        Role.API,
        (MachineState(_R),),
        Target(_R, TaskState.RESIZE_REVERTING),
        _api_guards(Op.REVERT_RESIZE, _R),
        "revert accepted",
        MigrationChange(_migration(_M.FINISHED, to=_M.REVERTING)),
    ),
    Rule(
        Op.ABORT_MIGRATION,
        Role.API,
        tuple(pair for task in _RESIZE_TASKS[:3] for pair in _moving(task)),
        Target(None, None, keep_task=True),
        (
            require_policy(OPERATIONS[Op.ABORT_MIGRATION].policy),
            require_unlocked(),
            require_vm_state(*_MOVABLE),
            require_task_state(*_RESIZE_TASKS[:3]),
        ),
        "abort accepted (not in Nova): the move is rolled back before finish_resize",
        MigrationChange(_migration(*_MOVING_STATUSES, to=_M.CANCELLING)),
    ),
    Rule(
        Op.STOP,
        Role.API,
        _pairs((_A, _E), _NO_TASK),
        Target(None, TaskState.POWERING_OFF),
        _api_guards(Op.STOP, _A, _E),
        "stop accepted",
    ),
    Rule(
        Op.START,
        Role.API,
        (MachineState(_S),),
        Target(_S, TaskState.POWERING_ON),
        _api_guards(Op.START, _S),
        "start accepted",
    ),
    Rule(
        Op.DELETE,
        Role.API,
        _DELETE_SOURCES,
        Target(None, TaskState.DELETING),
        _delete_guards(),
        "delete accepted (also during a move: the move's claims are released with it); "
        "a `resized` instance's move is confirmed first",
        MigrationChange(_migration(_M.FINISHED, to=_M.CONFIRMING)),
    ),
    # Conductor.
    _step(
        "schedule_failed",
        Role.CONDUCTOR,
        _moving(TaskState.RESIZE_PREP),
        Target(None, _NO_TASK),
        "no valid host (or retries exhausted): task_state back to null",
        MigrationChange(_migration(_M.PRE_MIGRATING, to=_M.ERROR)),
    ),
    _step(
        "migrate_server",
        Role.CONDUCTOR,
        _moving(TaskState.RESIZE_PREP),
        Target(None, TaskState.RESIZE_PREP),
        "migration record created; scheduler asked for hosts",
        MigrationChange(creates=_M.PRE_MIGRATING),
    ),
    # Destination compute: prep_resize.
    _step(
        "prep_resize",
        Role.DEST,
        _moving(TaskState.RESIZE_PREP),
        Target(None, TaskState.RESIZE_PREP),
        "claim on the destination; old_vm_state stashed",
        MigrationChange(_migration(_M.PRE_MIGRATING)),
    ),
    _step(
        "reschedule",
        Role.DEST,
        _moving(TaskState.RESIZE_PREP),
        Target(None, TaskState.RESIZE_PREP),
        "this destination cannot take the move: its record fails, the next alternate gets "
        "a new one",
        MigrationChange(_migration(_M.PRE_MIGRATING, to=_M.ERROR)),
    ),
    # Source compute: resize_instance.
    _step(
        "resize_instance",
        Role.SOURCE,
        _moving(TaskState.RESIZE_PREP),
        Target(None, TaskState.RESIZE_MIGRATING),
        "the driver powers off and copies the disks",
        MigrationChange(_migration(_M.PRE_MIGRATING, to=_M.MIGRATING)),
    ),
    _step(
        "resize_migrated",
        Role.SOURCE,
        _moving(TaskState.RESIZE_MIGRATING),
        Target(None, TaskState.RESIZE_MIGRATED),
        "disks copied: host = destination",
        MigrationChange(_migration(_M.MIGRATING, to=_M.POST_MIGRATING)),
    ),
    # Destination compute: finish_resize.
    _step(
        "finish_resize",
        Role.DEST,
        _moving(TaskState.RESIZE_MIGRATED),
        Target(None, TaskState.RESIZE_FINISH),
        "new flavor applied (holding the record at `post-migrating` is what makes an abort "
        "lose from here on); the driver defines the guest on the destination",
        MigrationChange(_migration(_M.POST_MIGRATING)),
    ),
    _step(
        "resize_finished",
        Role.DEST,
        _moving(TaskState.RESIZE_FINISH),
        Target(_R, _NO_TASK),
        "waits for confirm or revert",
        MigrationChange(_migration(_M.POST_MIGRATING, to=_M.FINISHED)),
    ),
    # Source compute: confirm_resize.
    _step(
        "confirmed_running",
        Role.SOURCE,
        (MachineState(_R),),
        Target(_A, _NO_TASK),
        "source guest deleted, source claim released; the guest runs",
        MigrationChange(_migration(_M.CONFIRMING, to=_M.CONFIRMED)),
    ),
    _step(
        "confirmed_shutdown",
        Role.SOURCE,
        (MachineState(_R),),
        Target(_S, _NO_TASK),
        "source guest deleted, source claim released; the guest is shut down",
        MigrationChange(_migration(_M.CONFIRMING, to=_M.CONFIRMED)),
    ),
    # Revert: destination compute, then source compute.
    _step(
        "revert_resize_on_dest",
        Role.DEST,
        (MachineState(_R, TaskState.RESIZE_REVERTING),),
        Target(_R, TaskState.RESIZE_REVERTING),
        "destination guest destroyed, destination claim released",
        MigrationChange(_migration(_M.REVERTING, to=_M.REVERTED)),
    ),
    _step(
        "reverted_active",
        Role.SOURCE,
        (MachineState(_R, TaskState.RESIZE_REVERTING),),
        Target(_A, _NO_TASK),
        "guest back on the source, powered on",
        MigrationChange(_migration(_M.REVERTED)),
    ),
    _step(
        "reverted_stopping",
        Role.SOURCE,
        (MachineState(_R, TaskState.RESIZE_REVERTING),),
        Target(_R, TaskState.POWERING_OFF),
        "guest back on the source, not powered on: the ordinary stop path follows",
        MigrationChange(_migration(_M.REVERTED)),
    ),
    # Ordinary power actions of any compute host.
    _step(
        "powered_off",
        Role.COMPUTE,
        _pairs((_A, _E, _R), TaskState.POWERING_OFF),
        Target(_S, _NO_TASK),
        "guest powered off",
    ),
    _step(
        "powered_on",
        Role.COMPUTE,
        (MachineState(_S, TaskState.POWERING_ON),),
        Target(_A, _NO_TASK),
        "guest powered on",
    ),
    _step(
        "power_action_failed",
        Role.COMPUTE,
        (*_pairs((_A, _E), TaskState.POWERING_OFF), MachineState(_S, TaskState.POWERING_ON)),
        Target(None, _NO_TASK),
        "stop or start failed: task_state reverted, fault recorded",
    ),
    _step(
        "terminated",
        Role.COMPUTE,
        _pairs(_DELETABLE_VM, TaskState.DELETING),
        Target(VmState.DELETED, _NO_TASK),
        "guest destroyed on every host, every claim released; each of the instance's "
        "records that is still open fails (an abort not yet run is cancelled)",
        _end_with_instance(),
    ),
    # Failure ends (used by the failure paths of every role).
    _step(
        "rolled_back",
        Role.COMPUTE,
        _IN_FLIGHT[: 2 * len(_RESIZE_TASKS)],
        Target(None, _NO_TASK),
        "the move is undone: guest as it was, task_state null",
        _fail_migration(cancelling_to=_M.CANCELLED),
    ),
    _step(
        "aborted",
        Role.COMPUTE,
        _IN_FLIGHT[: 2 * len(_RESIZE_TASKS)],
        Target(None, _NO_TASK),
        "an accepted abort is done: the move is undone as by `rolled_back`",
        MigrationChange(_migration(_M.CANCELLING, to=_M.CANCELLED)),
    ),
    _step(
        "errored",
        Role.COMPUTE,
        (*_DELETE_SOURCES, *_pairs(_DELETABLE_VM, TaskState.DELETING)),
        Target(_E, _NO_TASK),
        "a step failed with the guest's state unknown: vm_state `error`, fault recorded",
        _fail_migration(cancelling_to=_M.ERROR),
    ),
)


MIGRATION_TABLE: Final[tuple[MigrationRule, ...]] = (
    MigrationRule(
        "confirm_window_orphaned",
        Role.DEST,
        MigrationChange(_migration(_M.FINISHED, to=_M.ERROR)),
        "auto-confirm finds the record's instance gone or no longer `resized`",
    ),
    MigrationRule(
        "confirmed_on_delete",
        Role.SOURCE,
        MigrationChange(_migration(_M.CONFIRMING, to=_M.CONFIRMED)),
        "the delete of a `resized` instance confirmed its move first (source guest removed)",
    ),
)


# --- the running machine ---------------------------------------------------------------


class _Cursor:
    """What ``transitions`` drives for one trigger: the state name and the request."""

    __slots__ = ("ctx", "effect", "failure", "result", "state")

    def __init__(self, state: str, ctx: GuardContext, effect: Callable[[], Any] | None) -> None:
        self.state = state
        self.ctx = ctx
        self.effect = effect
        self.failure: GuardFailure | None = None
        self.result: Any = None


@attrs.frozen
class _Condition:
    """Adapts a guard to a ``transitions`` condition that remembers why it failed."""

    guard: Guard

    def __call__(self, event: EventData) -> bool:
        cursor = cast(_Cursor, event.model)
        failure = self.guard(cursor.ctx)
        if failure is None:
            return True
        cursor.failure = failure
        return False


def _run_effect(event: EventData) -> None:
    cursor = cast(_Cursor, event.model)
    if cursor.effect is not None:
        cursor.result = cursor.effect()


class Machine:
    """A validated, frozen transition table and the ``transitions.Machine`` that runs it.

    The module-level :data:`MACHINE` is built from :data:`TABLE`; build another one only
    to experiment with a different table (the verification tools do, to seed mutants).

    Raises:
        MachineDefinitionError: when ``rules`` break one of the rules listed in the
            module docstring; the message says which and how to fix it.
    """

    def __init__(
        self,
        rules: Sequence[Rule],
        migration_rules: Sequence[MigrationRule] = MIGRATION_TABLE,
        *,
        runner: Literal["compiled", "transitions"] = "compiled",
    ) -> None:
        self._rules: tuple[Rule, ...] = tuple(rules)
        self._migration_rules: tuple[MigrationRule, ...] = tuple(migration_rules)
        self._changes: dict[str, MigrationChange] = {
            r.trigger: r.migration for r in self._migration_rules
        }
        self._by_trigger: dict[str, Rule] = {}
        for rule in self._rules:
            if rule.trigger in self._by_trigger:
                raise MachineDefinitionError(
                    f"trigger {rule.trigger!r} has two rows: merge their sources into one rule"
                )
            self._by_trigger[rule.trigger] = rule
            if rule.migration is not None:
                if rule.trigger in self._changes:
                    raise MachineDefinitionError(
                        f"trigger {rule.trigger!r} is both an instance and a migration rule"
                    )
                self._changes[rule.trigger] = rule.migration
        states: set[MachineState] = set(_STABLE)
        for rule in self._rules:
            states.update(rule.sources)
            states.update(rule.target.resolve(s) for s in rule.sources)
        self._states: frozenset[MachineState] = frozenset(states)
        self._by_name: dict[str, MachineState] = {s.name: s for s in states}
        self._name_of: dict[tuple[VmState, TaskState | None], str] = {
            (s.vm_state, s.task_state): s.name for s in states
        }
        self._state_names = frozenset(self._by_name)
        self._validate()
        # Two transitions machines of the same table: one whose transitions call the
        # role's effect as their ``before`` callback, one without (API triggers and steps
        # with no driver call skip the callback machinery). The compiled dispatch is read
        # off the first one's event table.
        self._machine = self._build(with_effect=True)
        self._plain = self._build(with_effect=False)
        self._runner = runner
        self._dispatch = _compile(self._machine, self._by_name)

    # -- definition -------------------------------------------------------------------

    def _validate(self) -> None:
        api = {rule.trigger for rule in self._rules if rule.role is Role.API}
        declared = {spec.op.value for spec in OPERATIONS.values() if spec.changes_state}
        if api != declared:
            raise MachineDefinitionError(
                "the API rules and the operations of operations.py differ: "
                f"only in the table {sorted(api - declared)}, "
                f"only declared {sorted(declared - api)}"
            )
        admin = Caller.admin()
        for rule in self._rules:
            if not rule.sources:
                raise MachineDefinitionError(f"trigger {rule.trigger!r} has no source state")
            sources = set(rule.sources)
            for state in sorted(self._states, key=lambda s: s.name):
                probe = _probe_instance(state)
                failure = _first_failure(rule.guards, GuardContext(rule.trigger, admin, probe))
                if state in sources and failure is not None:
                    raise MachineDefinitionError(
                        f"trigger {rule.trigger!r}: its guards refuse its own source "
                        f"{state.name} ({failure.message}); widen the guard or drop the source"
                    )
                if state not in sources and failure is None:
                    raise MachineDefinitionError(
                        f"trigger {rule.trigger!r}: its guards accept {state.name}, which is "
                        "not one of its sources; add a state guard or add the source"
                    )
        reachable = set(_STABLE)
        frontier = list(_STABLE)
        while frontier:
            state = frontier.pop()
            for rule in self._rules:
                if state in rule.sources:
                    dest = rule.target.resolve(state)
                    if dest not in reachable:
                        reachable.add(dest)
                        frontier.append(dest)
        unreachable = self._states - reachable
        if unreachable:
            names = ", ".join(sorted(s.name for s in unreachable))
            raise MachineDefinitionError(f"states unreachable from a stable state: {names}")

    def _build(self, *, with_effect: bool) -> Any:
        transitions: list[dict[str, Any]] = []
        for rule in self._rules:
            conditions = [_Condition(g) for g in rule.guards]
            sources = set(rule.sources)
            for state in self._states:
                # From a state that is not a source the guards refuse (checked above):
                # the self-loop only exists so that the refusal comes from a guard.
                dest = rule.target.resolve(state) if state in sources else state
                transitions.append(
                    {
                        "trigger": rule.trigger,
                        "source": state.name,
                        "dest": dest.name,
                        "conditions": conditions,
                        "before": [_run_effect] if with_effect else [],
                    }
                )
        return _TransitionsMachine(
            model=None,
            states=sorted(self._state_names),
            transitions=transitions,
            initial=None,
            auto_transitions=False,
            send_event=True,
        )

    # -- introspection ----------------------------------------------------------------

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._rules

    @property
    def migration_rules(self) -> tuple[MigrationRule, ...]:
        return self._migration_rules

    def migration_change(self, trigger: str) -> MigrationChange | None:
        """What ``trigger`` does to a migration record (``None``: it has none)."""
        if trigger not in self._by_trigger and trigger not in self._changes:
            raise MachineDefinitionError(f"unknown trigger {trigger!r}")
        return self._changes.get(trigger)

    def accepts(self, trigger: str, migration_status: MigrationStatus) -> bool:
        """Does ``trigger`` accept a migration record in ``migration_status``?"""
        change = self.migration_change(trigger)
        return change is not None and migration_status in change.accepts

    @property
    def states(self) -> frozenset[MachineState]:
        """Every allowed ``(vm_state, task_state)`` pair."""
        return self._states

    def rule(self, trigger: str) -> Rule:
        try:
            return self._by_trigger[trigger]
        except KeyError:
            raise MachineDefinitionError(f"unknown trigger {trigger!r}") from None

    def transitions(self) -> Iterator[Transition]:
        """Every edge, in table order, with its guards."""
        for rule in self._rules:
            for source in rule.sources:
                yield Transition(
                    rule.trigger,
                    rule.role,
                    source,
                    rule.target.resolve(source),
                    rule.guards,
                    rule.doc,
                )

    def allowed(self, state: MachineState, role: Role | None = None) -> list[str]:
        """Triggers that may fire from ``state`` (optionally only those of ``role``)."""
        return [
            r.trigger
            for r in self._rules
            if state in r.sources and (role is None or r.role is role)
        ]

    # -- running ----------------------------------------------------------------------

    def check(self, trigger: str, ctx: GuardContext) -> GuardFailure | None:
        """Run ``trigger``'s guards without changing anything (a dry run)."""
        return _first_failure(self.rule(trigger).guards, ctx)

    def fire(
        self,
        trigger: str,
        ctx: GuardContext,
        effect: Callable[[], Any] | None = None,
        migration_status: MigrationStatus | None = None,
    ) -> Fired:
        """Fire ``trigger`` for ``ctx.instance`` whose move's record is in ``migration_status``.

        Returns what to save: the new state, the new migration status, and the
        task_state and migration status to compare-and-swap on (:class:`Fired`).
        Nothing is mutated. ``effect`` runs after the guards passed and before the state
        changes; if it raises, the exception propagates and nothing was decided.
        ``migration_status`` ``None``: there is no record (or the rule has none).

        Raises:
            RequestRefused: the public exception of the first failing guard, or
                ``UnexpectedMigrationStatusError`` when the rule does not accept the
                record's status.
        """
        instance = ctx.instance
        if instance is None:
            raise MachineDefinitionError(f"trigger {trigger!r} needs an instance")
        name = self._name_of.get((instance.vm_state, instance.task_state))
        if name is None:
            name = instance.state.name
            failure = self.check(trigger, ctx)
            if failure is not None:
                raise failure.to_exception()
            raise InstanceInvalidState(
                f"Cannot '{trigger}' instance {instance.describe()}: its state {name} is "
                "outside this workflow"
            )
        after = (
            None
            if migration_status is None
            else self.migration_after(trigger, migration_status, instance)
        )
        if self._runner == "transitions":
            state, result = self._fire_through_transitions(trigger, name, ctx, effect)
        else:
            try:
                guards, state = self._dispatch[trigger][name]
            except KeyError:
                raise MachineDefinitionError(f"unknown trigger {trigger!r}") from None
            for guard in guards:
                failure = guard(ctx)
                if failure is not None:
                    raise failure.to_exception()
            result = None if effect is None else effect()
        return Fired(trigger, state, instance.task_state, after, migration_status, result)

    def _fire_through_transitions(
        self, trigger: str, name: str, ctx: GuardContext, effect: Callable[[], Any] | None
    ) -> tuple[MachineState, Any]:
        cursor = _Cursor(name, ctx, effect)
        runner = self._machine if effect is not None else self._plain
        event = runner.events.get(trigger)
        if event is None:
            raise MachineDefinitionError(f"unknown trigger {trigger!r}")
        if not event.trigger(cursor):
            assert cursor.failure is not None
            raise cursor.failure.to_exception()
        return self._by_name[cursor.state], cursor.result

    def migration_after(
        self,
        trigger: str,
        status: MigrationStatus,
        instance: Instance | None = None,
    ) -> MigrationStatus:
        """The status a record in ``status`` is saved with when ``trigger`` fires (the
        same status when the rule holds it).

        Raises:
            UnexpectedMigrationStatusError: the rule does not accept ``status``.
        """
        change = self.migration_change(trigger)
        try:
            if change is None:
                raise KeyError(status)
            after = change.after(status)
        except KeyError:
            accepted = sorted(s.value for s in change.accepts) if change is not None else []
            whose = f" of instance {instance.describe()}" if instance is not None else ""
            raise UnexpectedMigrationStatusError(
                f"Cannot '{trigger}' the migration{whose} in status {status.value}: "
                f"expected one of {accepted}"
            ) from None
        return status if after is None else after

    def created_status(self, trigger: str) -> MigrationStatus:
        """The status a record created by ``trigger`` starts in."""
        change = self.migration_change(trigger)
        if change is None or change.creates is None:
            raise MachineDefinitionError(f"trigger {trigger!r} creates no migration record")
        return change.creates

    def apply(
        self,
        trigger: str,
        instance: Instance,
        caller: Caller,
        effect: Callable[[], Any] | None = None,
    ) -> Instance:
        """Fire ``trigger`` and return ``instance`` moved to the new state."""
        state = self.fire(trigger, GuardContext(trigger, caller, instance), effect).state
        return attrs.evolve(instance, vm_state=state.vm_state, task_state=state.task_state)


_Dispatch = dict[str, dict[str, tuple[tuple[Guard, ...], MachineState]]]


def _compile(machine: Any, states: Mapping[str, MachineState]) -> _Dispatch:
    """Trigger -> source state name -> (guards in order, destination), read off a built
    ``transitions`` machine's events (one edge per trigger and source, as ``_build`` makes
    them; every condition is a :class:`_Condition` expected to hold)."""
    dispatch: _Dispatch = {}
    for trigger, event in machine.events.items():
        by_source: dict[str, tuple[tuple[Guard, ...], MachineState]] = {}
        for source, edges in event.transitions.items():
            (edge,) = edges
            guards = []
            for condition in edge.conditions:
                assert condition.target is True and isinstance(condition.func, _Condition)
                guards.append(condition.func.guard)
            by_source[source] = (tuple(guards), states[edge.dest])
        dispatch[trigger] = by_source
    return dispatch


def _first_failure(guards: Iterable[Guard], ctx: GuardContext) -> GuardFailure | None:
    for guard in guards:
        failure = guard(ctx)
        if failure is not None:
            return failure
    return None


def _probe_instance(state: MachineState) -> Instance:
    return Instance(
        uuid="probe",
        name="probe",
        project_id="probe",
        host="probe",
        flavor="probe",
        vm_state=state.vm_state,
        task_state=state.task_state,
    )


MACHINE: Final[Machine] = Machine(TABLE)
"""The machine every role uses."""
