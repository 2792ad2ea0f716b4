"""The hop runner: how every compute hop is declared and run.

A :class:`Hop` is one step of one host's compute service, declared once: the trigger it
fires (the machine decides the new state, the migration status and both
compare-and-swap expectations), the driver call that is the trigger's effect (always
this host's own driver), the notifications around it, the action event it records, what
it changes on the records and the claims, the message it sends next (or none: the
request is settled), and its failure policy (:class:`Failure`). :meth:`HopRunner.run_hop`
runs any of them the same way:

1. load the migration; a move whose abort was accepted (``cancelling``) is left to the
   abort, which settles its request;
2. load the instance; (``begin``) fire and save the hop's first trigger; check the
   guards of its trigger, a refusal settles the request ``failed`` and changes nothing;
3. the ``start`` notification, then the effect, fired as the trigger's ``before``;
4. a failure of the effect ends as :class:`Failure` says (``error`` with a fault, a
   rollback, a power action reverted), with the claims and fields the hop declares;
5. in one transaction: the records as the machine decided (compare-and-swap on each),
   the hop's claim changes, the ``end`` notification, the action event, and the next
   message or the request's outcome.

Declared (``roles.compute.HOPS``): prep_resize (claim; a host without room reschedules:
:attr:`Failure.COMPENSATE`), resize_instance, finish_resize, confirm_resize,
revert_resize, stop_instance, start_instance, and finish_revert_resize's driver step.
The steps that do not fit one trigger and one driver call (finish_revert_resize's
claim-first save and its stop of a guest that was stopped, the delete's phases, abort,
the rollbacks and start-up recovery) are written with the same helpers
(:meth:`HopRunner.fail_step`, :meth:`HopRunner._begin`, ...).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from coldmig_fsm import messages
from coldmig_fsm.drivers.base import HypervisorDriver
from coldmig_fsm.exceptions import (
    ColdmigError,
    InstanceFaultRollback,
    MoveInterrupted,
    RequestRefused,
    UnexpectedMigrationStatusError,
)
from coldmig_fsm.guards import GuardContext
from coldmig_fsm.machine import Role
from coldmig_fsm.operations import OPERATIONS, Op
from coldmig_fsm.records import Instance, Migration, Outcome, replace
from coldmig_fsm.roles import claims
from coldmig_fsm.roles.runtime import SERVICE, Runtime, moved
from coldmig_fsm.states import PowerState, VmState

__all__ = ["Failure", "Hop", "HopRunner", "Step", "drop_move_state", "release_source"]

_DELETE_ACTION = OPERATIONS[Op.DELETE].action


class Failure(enum.Enum):
    """What a hop's failed driver call ends in (the spec's failure table)."""

    ERROR = "error"
    """vm_state ``error``, a fault, ``compute.exception``, the migration ``error``; the
    request ``failed``."""
    ROLL_BACK_IF_INTACT = "rollback if the guest is intact"
    """A driver that says the guest is as it was (``InstanceFaultRollback``) rolls the
    move back (request ``rolled_back``); any other error is :attr:`ERROR`."""
    REVERT_POWER = "power action reverted"
    """task_state back to null with a fault; the request ``rolled_back``. A ``resized``
    instance (the stop that ends a revert) is :attr:`ERROR` instead, with its move, as
    in Nova."""
    COMPENSATE = "a compensating message"
    """An error of the hop's ``compensate_on`` kinds, from the effect or from the claims
    in the hop's transaction (which it undoes), sends the hop's compensating message
    instead (``prep_resize``: back to the conductor for the next alternate host); any
    other error is :attr:`ERROR`."""


@attrs.define
class Step:
    """What a hop's declared functions see: the message, the records as the hop holds
    them (``instance`` after ``begin``), and the effect's result once it ran."""

    service: HopRunner
    message: Any
    instance: Instance
    migration: Migration | None
    result: Any = None

    @property
    def move(self) -> Migration:
        """The move's record (every hop of a move has one)."""
        assert self.migration is not None, "this hop belongs to a move"
        return self.migration

    @property
    def driver(self) -> HypervisorDriver:
        return self.service.driver

    @property
    def runtime(self) -> Runtime:
        return self.service.runtime


def _no_changes(_step: Step, instance: Instance) -> Instance:
    return instance


@attrs.frozen
class Hop:
    """One compute hop, declared once (see the module docstring for how it runs)."""

    name: str
    """The hop's name: the kind of the message it handles."""
    side: Role
    """Whose service runs it (the move's source or destination, the instance's host)."""
    trigger: str
    """The trigger fired with the effect (or ``choose`` picks one from the records)."""
    event: str
    """The action event recorded for the hop, success or failure."""
    effect: Callable[[Step], Any] | None = None
    """This host's driver call (``None``: the hop makes none)."""
    start: str | None = None
    end: str | None = None
    announce: tuple[str, ...] = ()
    """Notifications sent before ``start`` (``prep_resize``: Nova's ``instance.exists``)."""
    begin: str | None = None
    """A trigger fired and saved before the effect (the move's status under way)."""
    begin_record: Callable[[Step, Instance], Instance] = _no_changes
    choose: Callable[[Step], str] | None = None
    record: Callable[[Step, Instance], Instance] = _no_changes
    """Fields of the instance to set with the new state."""
    refresh_power: bool = False
    """Read the guest's power state from the driver after the effect."""
    claims: Callable[[Step], None] | None = None
    """Claim changes, in the transaction that saves the records."""
    migration_record: Callable[[Step], Mapping[str, Any]] | None = None
    """Fields of the migration record to set with its new status."""
    then: Callable[[Step, Instance], messages.Message | None] | None = None
    """The next message (``None``: the request has succeeded)."""
    on_failure: Failure = Failure.ERROR
    failure_claims: Callable[[Step], None] | None = None
    failure_changes: Callable[[Step], Mapping[str, Any]] | None = None
    compensate: Callable[[Step, ColdmigError], None] | None = None
    """(:attr:`Failure.COMPENSATE`) sends the compensating message."""
    compensate_on: tuple[type[ColdmigError], ...] = ()
    operations: tuple[str, ...] = ()
    """The operations whose path runs this hop (for the failure table)."""

    @property
    def calls(self) -> str | None:
        """The driver call's name, for the failure table (from the effect's docstring);
        ``None`` for a hop without one."""
        if self.effect is None:
            return None
        return (self.effect.__doc__ or self.effect.__name__).strip()


def release_source(step: Step) -> None:
    """Release what the move's record holds (the source claim)."""
    claims.release(step.runtime.store, step.move.uuid)


def drop_move_state(instance: Instance) -> Instance:
    """After confirm or revert: no migration context, no stashed flavors or old_vm_state."""
    metadata = {k: v for k, v in instance.system_metadata.items() if k != "old_vm_state"}
    return replace(
        instance, migration_id=None, old_flavor=None, new_flavor=None, system_metadata=metadata
    )


class HopRunner:
    """The part of a compute service every hop uses: the runner and its helpers.

    A service calls only its own host's driver (:attr:`driver`); what must happen on
    another host is a message to that host's service.
    """

    def __init__(self, runtime: Runtime, driver: HypervisorDriver) -> None:
        self._rt = runtime
        self._driver = driver

    @property
    def host(self) -> str:
        return self._driver.host

    @property
    def driver(self) -> HypervisorDriver:
        return self._driver

    @property
    def runtime(self) -> Runtime:
        return self._rt

    def run_hop(self, hop: Hop, message: Any) -> None:
        """Run ``hop`` for ``message`` (see the module docstring)."""
        rt, store = self._rt, self._rt.store
        migration_id = getattr(message, "migration_id", None)
        migration = None if migration_id is None else store.get_migration(migration_id)
        if migration is not None and migration.status.is_cancelling:
            return  # aborted: the abort's hop rolls back and settles the request
        step = Step(self, message, store.get_instance(message.instance_uuid), migration)
        if hop.begin is not None:
            assert migration is not None  # a hop that begins is a move's
            begun = self._begin(message, hop.begin, migration, lambda i: hop.begin_record(step, i))
            if begun is None:
                return
            step.instance, step.migration = begun
        trigger = hop.trigger if hop.choose is None else hop.choose(step)
        if hop.begin is None and self._refused(message, trigger, step.instance, step.migration):
            return
        for notice in hop.announce:
            rt.notify(notice, step.instance, self.host)
        if hop.start is not None:
            rt.notify(hop.start, step.instance, self.host)
        try:
            effect = hop.effect
            fired = rt.fire(
                trigger,
                step.instance,
                effect=None if effect is None else lambda: effect(step),
                migration=step.migration,
            )
        except RequestRefused as refusal:
            rt.settle(message.request_id, Outcome.FAILED, refusal)
            return
        except Exception as error:  # any driver failure ends the step, never leaves it stuck
            self._hop_failed(hop, step, error)
            return
        step.result = fired.result
        try:
            with store.atomic():
                after = hop.record(step, moved(step.instance, fired))
                if hop.refresh_power:
                    after = replace(after, power_state=self._power_state(after))
                if hop.claims is not None:
                    hop.claims(step)
                changes = {} if hop.migration_record is None else hop.migration_record(step)
                rt.save(fired, after, step.migration, **changes)
                if hop.end is not None:
                    rt.notify(hop.end, after, self.host)
                rt.event(message.request_id, hop.event, self.host)
                following = None if hop.then is None else hop.then(step, after)
                if following is None:
                    self._settle_recovery(message, Outcome.SUCCEEDED, None)
                else:
                    store.push_message(following)
        except ColdmigError as error:
            if isinstance(error, hop.compensate_on):
                self._hop_failed(hop, step, error)  # the transaction was undone
            elif not self._cancelled(message):  # another writer won the compare-and-swap
                rt.settle(message.request_id, Outcome.FAILED, error)

    def _hop_failed(self, hop: Hop, step: Step, error: Exception) -> None:
        if hop.on_failure is Failure.REVERT_POWER and step.instance.vm_state is not VmState.RESIZED:
            self._power_failed(step.message, step.instance, error, hop.event)
            return
        if (
            hop.on_failure is Failure.COMPENSATE
            and hop.compensate is not None
            and isinstance(error, hop.compensate_on)
        ):
            hop.compensate(step, error)
            return
        failure_claims = hop.failure_claims
        fix = None if failure_claims is None else functools.partial(failure_claims, step)
        changes = None if hop.failure_changes is None else hop.failure_changes(step)
        rollback = hop.on_failure is Failure.ROLL_BACK_IF_INTACT and isinstance(
            error, InstanceFaultRollback
        )
        self.fail_step(
            step.message,
            step.instance,
            step.migration,
            error,
            hop.event,
            fix,
            rollback=rollback,
            changes=changes,
        )

    # -- helpers every hop uses ----------------------------------------------------------

    def _begin(
        self,
        message: messages.Message,
        trigger: str,
        migration: Migration,
        update: Callable[[Instance], Instance] | None = None,
    ) -> tuple[Instance, Migration] | None:
        """Load the instance, fire ``trigger`` and save both records as it decided;
        ``None`` if the step lost a race."""
        rt = self._rt
        try:
            with rt.store.atomic():
                instance = rt.store.get_instance(message.instance_uuid)
                fired = rt.fire(trigger, instance, migration=migration)
                begun = moved(instance, fired)
                if update is not None:
                    begun = update(begun)
                saved = rt.save(fired, begun, migration)
        except ColdmigError as error:
            if not self._cancelled(message):
                rt.settle(message.request_id, Outcome.FAILED, error)
            return None
        assert saved is not None
        return begun, saved

    def _settle_stranded(self, instance_uuid: str, event: str, error: BaseException) -> None:
        """Fail every other open request of the instance that has no message on its way.

        After a step ends an instance's task (error, delete), such a request (its message
        lost, or overtaken) could never settle otherwise. The messages on their way are
        read by index, the instance's only: a message carries requests of its own
        instance.
        """
        rt, store = self._rt, self._rt.store
        travelling = {m.request_id for m in store.pending_messages(instance_uuid)}
        for request in store.list_requests(instance_uuid):
            if request.outcome is Outcome.PENDING and request.request_id not in travelling:
                rt.event(request.request_id, event, self.host, error)
                rt.settle(request.request_id, Outcome.FAILED, error)

    def _cancelled(self, message: messages.Message) -> bool:
        """Was this message's migration cancelled by ``abort_migration``?"""
        migration_id = getattr(message, "migration_id", None)
        if migration_id is None:
            return False
        status = self._rt.store.get_migration(migration_id).status
        return status.is_cancelling

    def fail_step(
        self,
        message: messages.Message,
        instance: Instance,
        migration: Migration | None,
        error: BaseException,
        event: str,
        fix_claims: Callable[[], None] | None = None,
        *,
        rollback: bool = False,
        changes: Mapping[str, Any] | None = None,
    ) -> None:
        """End a step that failed: ``error`` (or rolled back), fault, event, claims, outcome."""
        rt, store = self._rt, self._rt.store
        reported = error.inner if isinstance(error, InstanceFaultRollback) else error
        with store.atomic():
            current = store.get_instance(instance.uuid)
            latest = None if migration is None else store.get_migration(migration.id)
            fired = rt.fire("rolled_back" if rollback else "errored", current, migration=latest)
            ended = moved(current, fired, **dict(changes or {}))
            if rollback:
                # As before the move, with no migration context or stashed old_vm_state
                # left for a later recovery to roll back a second time (new_flavor stays,
                # as in Nova).
                metadata = {k: v for k, v in ended.system_metadata.items() if k != "old_vm_state"}
                ended = replace(
                    ended,
                    power_state=self._power_state(ended),
                    migration_id=None,
                    system_metadata=metadata,
                )
            rt.save(fired, ended, latest)
            if fix_claims is not None:
                fix_claims()
            rt.fault(ended, reported, self.host)
            rt.notify("compute.exception", ended, self.host)
            rt.event(message.request_id, event, self.host, reported)
            outcome = Outcome.ROLLED_BACK if rollback else Outcome.FAILED
            rt.settle(message.request_id, outcome, reported)
            self._settle_stranded(instance.uuid, event, reported)

    def _unfinished_revert(self, instance: Instance) -> Migration | None:
        """The instance's current migration when it is ``reverted`` but still holds the
        source claim (``finish_revert_resize`` has not run), else ``None``."""
        if instance.migration_id is None:
            return None
        migration = self._rt.store.get_migration(instance.migration_id)
        reverted = self._rt.machine.accepts("reverted_active", migration.status)
        holding = migration.source_compute in self._rt.store.allocations(migration.uuid)
        return migration if reverted and holding else None

    def _refused(
        self,
        message: messages.Message,
        trigger: str,
        instance: Instance,
        migration: Migration | None = None,
    ) -> bool:
        """Check ``trigger``'s guards (and that its rule accepts ``migration``'s status)
        first; a refusal settles the request as failed and changes nothing else."""
        machine = self._rt.machine
        failure = machine.check(trigger, GuardContext(trigger, SERVICE, instance))
        refusal: ColdmigError | None = None if failure is None else failure.to_exception()
        if refusal is None and migration is not None:
            try:
                machine.migration_after(trigger, migration.status, instance)
            except UnexpectedMigrationStatusError as error:
                refusal = error
        if refusal is None:
            return False
        self._rt.settle(message.request_id, Outcome.FAILED, refusal)
        return True

    def _power_state(self, instance: Instance) -> PowerState:
        return self._driver.get_info(instance).power_state

    def _settle_recovery(
        self, message: messages.Message, outcome: Outcome, error: BaseException | None
    ) -> None:
        """End a recovery (or a resumed action): its request and the instance's other
        open requests it took over (``also_settles``), each with its own event."""
        rt = self._rt
        failed = None if outcome is Outcome.SUCCEEDED else error
        rt.settle(message.request_id, outcome, failed)
        deleted = isinstance(message, messages.TerminateInstance)
        for other in getattr(message, "also_settles", ()):
            request = rt.store.get_request(other)
            if request is None or request.outcome is not Outcome.PENDING:
                continue
            if outcome is Outcome.SUCCEEDED and deleted and request.action != _DELETE_ACTION:
                # Overtaken (a move, say) by the delete that recovery resumed: it did not
                # happen, as when a delete overtakes a move that no crash interrupted. (A
                # resumed stop or start carries out what it is the tail of: the stop of
                # a revert of a stopped instance finishes the revert.)
                overtaken = MoveInterrupted(
                    f"the {request.action} request of instance {request.instance_uuid} was "
                    "overtaken: a delete finished instead"
                )
                rt.event(other, "compute_recover", self.host, overtaken)
                rt.settle(other, Outcome.FAILED, overtaken)
                continue
            # The interrupted request's own history says how it ended.
            rt.event(other, "compute_recover", self.host, failed)
            rt.settle(other, outcome, failed)

    def _power_off(
        self,
        message: messages.Message,
        instance: Instance,
        migration: Migration | None = None,
    ) -> bool:
        rt, store = self._rt, self._rt.store
        rt.notify("instance.power_off.start", instance, self.host)
        config = rt.config
        try:
            fired = rt.fire(
                "powered_off",
                instance,
                effect=lambda: self._driver.power_off(
                    instance, config.shutdown_timeout, config.shutdown_retry_interval
                ),
            )
        except RequestRefused as refusal:
            rt.settle(message.request_id, Outcome.FAILED, refusal)
            return False
        except Exception as error:
            if instance.vm_state is VmState.RESIZED:
                # The stop that ends a revert: Nova errors the instance out (and the move).
                self.fail_step(message, instance, migration, error, "compute_stop_instance")
            else:
                self._power_failed(message, instance, error, "compute_stop_instance")
            return False
        with store.atomic():
            stopped = moved(instance, fired)
            stopped = replace(stopped, power_state=self._power_state(stopped))
            rt.save(fired, stopped)
            rt.notify("instance.power_off.end", stopped, self.host)
            rt.event(message.request_id, "compute_stop_instance", self.host)
        return True

    def _power_failed(
        self, message: messages.Message, instance: Instance, error: BaseException, event: str
    ) -> None:
        rt, store = self._rt, self._rt.store
        with store.atomic():
            current = store.get_instance(instance.uuid)
            fired = rt.fire("power_action_failed", current)
            reverted = moved(current, fired)
            reverted = replace(reverted, power_state=self._power_state(reverted))
            rt.save(fired, reverted)
            rt.fault(reverted, error, self.host)
            rt.notify("compute.exception", reverted, self.host)
            rt.event(message.request_id, event, self.host, error)
            self._settle_recovery(message, Outcome.ROLLED_BACK, error)
