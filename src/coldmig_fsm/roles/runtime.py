"""What every role shares: the store, the clock, the configuration and the machine.

The helpers here are the only way roles write notifications, action events, faults and
request outcomes, so those records have one shape everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from coldmig_fsm.clock import Clock
from coldmig_fsm.exceptions import ColdmigError
from coldmig_fsm.guards import GuardContext
from coldmig_fsm.machine import MACHINE, Fired, Machine
from coldmig_fsm.records import (
    ActionEvent,
    Caller,
    CloudConfig,
    EventResult,
    Fault,
    Flavor,
    Instance,
    Migration,
    Notification,
    Outcome,
    RequestRecord,
    replace,
)
from coldmig_fsm.stores.memory import Store

__all__ = ["SERVICE", "Runtime", "moved"]

SERVICE = Caller.admin()
"""The identity of the services themselves (Nova's elevated context)."""


def moved(instance: Instance, fired: Fired, **changes: Any) -> Instance:
    """``instance`` in the state ``fired`` leads to, with ``changes`` (one copy)."""
    return replace(
        instance, vm_state=fired.state.vm_state, task_state=fired.state.task_state, **changes
    )


@attrs.define
class Runtime:
    store: Store
    clock: Clock
    config: CloudConfig
    machine: Machine = MACHINE
    _flavors: dict[str, Flavor] = attrs.field(factory=dict, init=False, repr=False)

    def flavor(self, flavor_id: str) -> Flavor:
        """A flavor by id. Flavors never change once created (as in Nova), so they are cached."""
        found = self._flavors.get(flavor_id)
        if found is None:
            found = self.store.get_flavor(flavor_id)
            if found is None:
                # Flavors of existing instances are never deleted here; this is a bug.
                raise LookupError(f"flavor {flavor_id} vanished")
            self._flavors[flavor_id] = found
        return found

    def fire(
        self,
        trigger: str,
        instance: Instance,
        effect: Callable[[], Any] | None = None,
        caller: Caller = SERVICE,
        migration: Migration | None = None,
    ) -> Fired:
        """Fire ``trigger`` for ``instance`` (and its move's record ``migration``)."""
        return self.machine.fire(
            trigger,
            GuardContext(trigger, caller, instance),
            effect,
            None if migration is None else migration.status,
        )

    def transition(
        self,
        trigger: str,
        instance: Instance,
        effect: Callable[[], Any] | None = None,
        caller: Caller = SERVICE,
        **changes: Any,
    ) -> tuple[Instance, Any]:
        """Fire ``trigger``; return ``instance`` in its new state and the effect's result.

        ``changes`` are other fields to set on the returned record (one copy, not two).
        """
        fired = self.fire(trigger, instance, effect, caller)
        return moved(instance, fired, **changes), fired.result

    def save(
        self,
        fired: Fired,
        instance: Instance,
        migration: Migration | None = None,
        **migration_changes: Any,
    ) -> Migration | None:
        """Save what ``fired`` decided, each record with its compare-and-swap.

        ``instance`` is the record to save, already in ``fired.state`` (see :func:`moved`);
        it is saved only if the task_state is still the one the trigger fired from.
        ``migration`` (as read) is saved in the status the rule leads to, only if its
        status is still the one read; a rule that holds the record saves it too, so a
        concurrent change of status makes this step lose. Returns the saved migration.

        Raises:
            UnexpectedTaskStateError, UnexpectedMigrationStatusError: another writer won.
        """
        assert (instance.vm_state, instance.task_state) == (
            fired.state.vm_state,
            fired.state.task_state,
        ), f"{fired.trigger}: the record to save is not in the state fired"
        self.store.save_instance(instance, expected_task_state=[fired.expected_task_state])
        if migration is None:
            return None
        return self.save_migration(fired, migration, **migration_changes)

    def save_migration(self, fired: Fired, migration: Migration, **changes: Any) -> Migration:
        """Save ``migration`` as ``fired`` decided (see :meth:`save`)."""
        return self._move_record(fired.trigger, migration, hold=True, **changes)

    def end_migration(self, trigger: str, migration: Migration) -> Migration:
        """Move a record on by ``trigger``'s rule alone (no instance step: the record of a
        move whose instance is gone, or one of several records a step ends)."""
        return self._move_record(trigger, migration, hold=False)

    def _move_record(
        self, trigger: str, migration: Migration, *, hold: bool, **changes: Any
    ) -> Migration:
        """Save ``migration`` in the status ``trigger``'s rule leads to, with a
        compare-and-swap on the status read. A rule that keeps the status writes nothing
        unless ``hold`` (the record is then saved as read, so that a concurrent change
        makes the step lose) or there are ``changes``."""
        status = self.machine.migration_after(trigger, migration.status)
        if status is migration.status and not changes:
            if hold:
                self.store.save_migration(migration, expected_status=[migration.status])
            return migration
        updated = replace(migration, status=status, updated_at=self.clock.now(), **changes)
        self.store.save_migration(updated, expected_status=[migration.status])
        return updated

    def keep(self, read: Instance, changed: Instance) -> None:
        """Save fields of an instance without a state change, with a compare-and-swap on
        the task_state it was read with (the step loses if another writer moved it)."""
        self.store.save_instance(changed, expected_task_state=[read.task_state])

    def notify(self, event_type: str, instance: Instance | None, host: str | None) -> None:
        self.store.add_notification(
            Notification(
                event_type=event_type,
                instance_uuid=instance.uuid if instance else None,
                host=host,
                vm_state=instance.vm_state if instance else None,
                task_state=instance.task_state if instance else None,
                timestamp=self.clock.now(),
            )
        )

    def event(
        self,
        request_id: str,
        event: str,
        host: str | None,
        error: BaseException | None = None,
    ) -> None:
        """Record one action event: ``Success``, or ``Error`` with the error's text."""
        now = self.clock.now()
        self.store.add_action_event(
            request_id,
            ActionEvent(
                event=event,
                result=EventResult.SUCCESS if error is None else EventResult.ERROR,
                host=host,
                start_time=now,
                finish_time=now,
                details=None if error is None else f"{type(error).__name__}: {error}",
            ),
        )

    def fault(self, instance: Instance, error: BaseException, host: str | None) -> None:
        """Record an instance fault for ``error``, with its HTTP status as Nova does.

        The code is the error's class ``code``; an error that is not this library's is
        500, as Nova records one that is not a ``NovaException``.
        """
        self.store.add_fault(
            Fault(
                instance_uuid=instance.uuid,
                code=error.code if isinstance(error, ColdmigError) else 500,
                message=str(error),
                exception_type=type(error).__name__,
                host=host,
                created_at=self.clock.now(),
            )
        )

    def settle(self, request_id: str, outcome: Outcome, error: BaseException | None = None) -> None:
        """Record how request ``request_id`` ended (once: a compare-and-swap on pending)."""
        request = self.store.get_request(request_id)
        if request is None or request.outcome is not Outcome.PENDING:
            return
        settled = replace(
            request,
            outcome=outcome,
            error_type=None if error is None else type(error).__name__,
            error_message=None if error is None else str(error),
        )
        self.store.settle_request(settled)  # False: another writer settled it first

    def open_request(self, request: RequestRecord) -> None:
        self.store.put_request(request)
