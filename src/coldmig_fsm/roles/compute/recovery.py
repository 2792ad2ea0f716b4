"""Undoing a move and start-up recovery: ``abort_migration`` and ``roll_back_move``
(destination, then source), the service's start (``start``: registration, its down mark
cleared), ``init_host`` (Nova's start-up recovery), its heartbeat (``report_state``),
the periodic tasks (auto-confirm), and :func:`reconcile`."""

from __future__ import annotations

import datetime as dt
import uuid as uuidlib
from collections.abc import Callable, Iterable
from typing import Any

from coldmig_fsm import messages
from coldmig_fsm.drivers.base import HypervisorDriver
from coldmig_fsm.exceptions import ColdmigError, MigrationCancelled, MoveInterrupted, RequestRefused
from coldmig_fsm.machine import Machine
from coldmig_fsm.records import Instance, InstanceAction, Migration, Outcome, RequestRecord, replace
from coldmig_fsm.roles import claims, services
from coldmig_fsm.roles.compute.hops import HopRunner
from coldmig_fsm.roles.moves import (
    LEAVING_STATUSES,
    guest_hosts,
    guest_touched,
    may_leave_guest,
    rollback_hosts,
)
from coldmig_fsm.roles.runtime import SERVICE, Runtime, moved
from coldmig_fsm.states import TaskState, VmState
from coldmig_fsm.stores.base import Store

__all__ = ["Recovery", "reconcile"]


class Recovery(HopRunner):
    """Rollbacks, start-up recovery and periodic tasks of one compute service."""

    def __init__(self, runtime: Runtime, driver: HypervisorDriver) -> None:
        super().__init__(runtime, driver)
        self._registered = False
        self._reported_at: dt.datetime | None = None

    # -- the service's own record: registration and heartbeat -----------------------------

    @property
    def registered(self) -> bool:
        """Whether this service has registered (:meth:`register`) since it was made."""
        return self._registered

    def register(self) -> bool:
        """Write this service's record (Nova's service record and compute node): the
        driver's capabilities and a first heartbeat, in its host record
        (:func:`coldmig_fsm.roles.services.register_service`). A down mark stays.

        Returns ``False`` (nothing written) while the host has no record yet; then
        :meth:`report_state` tries again each time it runs.
        """
        if services.register_service(self._rt, self.host, self._driver.capabilities):
            self._registered = True
        return self._registered

    def start(self) -> bool:
        """This service (re)starts (Nova's ``Service.start``): its down mark is cleared
        (:func:`~coldmig_fsm.roles.services.mark_up`) and it registers anew. Start-up
        recovery (:meth:`init_host`) is the runner's next call: it needs the host to be
        up. Returns whether the service is registered (its host has a record)."""
        services.mark_up(self._rt, self.host)
        return self.register()

    def report_timer(self) -> tuple[bool, dt.datetime | None]:
        """(registered, last report): the framework's state of this service, which an
        explorer's snapshot of a cloud keeps (:meth:`coldmig_fsm.Cloud.snapshot`)."""
        return self._registered, self._reported_at

    def set_report_timer(self, timer: tuple[bool, dt.datetime | None]) -> None:
        """Put back what :meth:`report_timer` returned (restoring a cloud's snapshot)."""
        self._registered, self._reported_at = timer

    def report_state(self) -> dt.datetime | None:
        """The heartbeat of a running service (Nova's ``Service.report_state``, run
        every ``report_interval`` seconds by the service framework): register when not
        registered yet; then, once ``report_interval`` seconds of the runtime's clock
        have passed since the last report, heartbeat, unless the host record says the
        service is marked down (a stopped service sends nothing). The first call starts
        the interval and sends nothing.

        Returns when it is next due: the runner calls it again at that time or later
        (``None``: at once, the service is not registered yet). The interval runs
        whether or not the host is marked down, so that a restarted service reports at
        the times it would have.
        """
        rt = self._rt
        if not self._registered:
            self.register()
        now = rt.clock.now()
        if self._reported_at is None:
            self._reported_at = now
        elif (now - self._reported_at).total_seconds() >= rt.config.report_interval:
            self._reported_at = now
            record = rt.store.get_host(self.host)
            if record is not None and record.up:
                services.heartbeat(rt, self.host)
        if not self._registered:
            return None
        return self._reported_at + dt.timedelta(seconds=rt.config.report_interval)

    def abort_migration(self, message: messages.AbortMigration) -> None:
        """Roll back a move that the API cancelled before ``finish_resize`` started.

        On the destination (when the copy may have left disks there) the disks are
        removed and the message goes on to the source; on the source the guest comes back
        as it was and the migration ends ``cancelled``.
        """
        rt, store = self._rt, self._rt.store
        instance = store.get_instance(message.instance_uuid)
        migration = store.get_migration(message.migration_id)
        # The migration's status too: an abort that outlived its move (which ended
        # meanwhile, its instance gone on to another request) is refused at once.
        if self._refused(message, "aborted", instance, migration):
            return
        cancelled = MigrationCancelled(
            f"Migration {migration.id} of instance {instance.describe()} was cancelled"
        )
        event = "compute_abort_migration"
        if not message.on_source:
            if self._remove_copy(message, instance, migration, cancelled, event):
                store.push_message(replace(message, host=migration.source_compute, on_source=True))
            return
        done = self._roll_back(message, instance, migration, cancelled, "aborted", event)
        if done is not None:
            rt.settle(message.request_id, Outcome.SUCCEEDED)
            # A recovery that a crash interrupted before this abort can no longer finish.
            self._settle_interrupted_recoveries(done, _carried(store, done.uuid))

    def roll_back_move(self, message: messages.RollBackMove) -> None:
        """Start-up recovery's rollback of a move interrupted before ``finish_resize``:
        the same two halves as an abort; the migration ends ``error`` (``cancelled`` if
        an abort had been accepted)."""
        store = self._rt.store
        instance = store.get_instance(message.instance_uuid)
        migration = (
            None if message.migration_id is None else store.get_migration(message.migration_id)
        )
        if self._refused(message, "rolled_back", instance):
            return
        interrupted = MoveInterrupted(message.reason)
        event = "compute_recover"
        if not message.on_source:
            assert migration is not None  # only a record's move visits its destination
            if self._remove_copy(message, instance, migration, interrupted, event):
                store.push_message(replace(message, host=migration.source_compute, on_source=True))
            else:
                self._settle_recovery(message, Outcome.FAILED, interrupted)
            return
        aborting = migration is not None and migration.status.is_cancelling
        trigger = "aborted" if aborting else "rolled_back"
        done = self._roll_back(message, instance, migration, interrupted, trigger, event)
        outcome = Outcome.ROLLED_BACK if done is not None else Outcome.FAILED
        self._settle_recovery(message, outcome, interrupted)
        if aborting:
            self._settle_carried_out_aborts(instance, done is not None, event, interrupted)

    def _settle_carried_out_aborts(
        self, instance: Instance, done: bool, event: str, interrupted: ColdmigError
    ) -> None:
        """A recovery's rollback of a move whose abort was accepted carries that abort
        out (the migration ends ``cancelled``): an abort still pending (its own hop cut
        short by a crash, say) has succeeded, or failed with the rollback. An abort whose
        message is still queued is refused when it is delivered (the move is over)."""
        rt = self._rt
        for request in rt.store.list_requests(instance.uuid):
            if request.action != "abortMigration" or request.outcome is not Outcome.PENDING:
                continue
            failed = None if done else interrupted
            rt.event(request.request_id, event, self.host, failed)
            rt.settle(request.request_id, Outcome.SUCCEEDED if done else Outcome.FAILED, failed)

    def _remove_copy(
        self,
        message: messages.Message,
        instance: Instance,
        migration: Migration,
        reason: ColdmigError,
        event: str,
    ) -> bool:
        """(Destination) remove what the interrupted copy left here; ``False`` when that
        failed (the instance is then in ``error``, back at the source with its claim)."""
        source = migration.source_compute
        at_source = replace(instance, host=source, node=source)
        try:
            self._driver.destroy(at_source, destroy_disks=True)
        except Exception as failure:  # the guest's state is unknown: error, not stuck
            self._rollback_failed(message, instance, migration, failure, reason, event)
            return False
        return True

    def _rollback_failed(
        self,
        message: messages.Message,
        instance: Instance,
        migration: Migration | None,
        failure: Exception,
        reason: ColdmigError,
        event: str,
    ) -> None:
        source = migration.source_compute if migration is not None else instance.host

        def fix_claims() -> None:
            if migration is not None:
                claims.back_on_source(self._rt.store, instance.uuid, migration.uuid)

        # Its claims go back to the source, so the record says the source too.
        at = {"host": source, "node": source}
        self.fail_step(message, instance, migration, failure, event, fix_claims, changes=at)
        if migration is not None and migration.request_id is not None:
            self._rt.settle(migration.request_id, Outcome.FAILED, reason)

    def _roll_back(
        self,
        message: messages.Message,
        instance: Instance,
        migration: Migration | None,
        reason: ColdmigError,
        trigger: str,
        event: str,
    ) -> Instance | None:
        """(Source) undo a move that has not reached ``finish_resize``: the guest back
        here as it was, claims here only, the migration as ``trigger``'s rule says; the
        move's request is settled ``rolled_back`` with ``reason``. When the guest cannot
        be brought back, the instance goes to ``error`` instead. Returns the saved
        instance, ``None`` when it did not roll back (a refusal of ``trigger`` fails the
        message's request and changes nothing else)."""
        rt, store = self._rt, self._rt.store
        source = migration.source_compute if migration is not None else instance.host
        power_on = (instance.old_vm_state or instance.vm_state) is not VmState.STOPPED
        at_source = replace(instance, host=source, node=source)
        touched = migration is not None and guest_touched(instance.task_state, rt.machine)

        def restore() -> None:
            if touched:
                assert migration is not None
                self._driver.finish_revert_migration(at_source, migration, power_on)

        try:
            fired = rt.fire(trigger, at_source, effect=restore, migration=migration)
        except RequestRefused as refusal:  # as _refused: the request fails, nothing changed
            rt.settle(message.request_id, Outcome.FAILED, refusal)
            return None
        except Exception as failure:  # the guest could not be brought back: error
            self._rollback_failed(message, instance, migration, failure, reason, event)
            return None
        with store.atomic():
            if migration is not None:
                claims.back_on_source(store, instance.uuid, migration.uuid)
            rolled = moved(at_source, fired)
            metadata = {k: v for k, v in rolled.system_metadata.items() if k != "old_vm_state"}
            rolled = replace(
                rolled,
                flavor=migration.old_flavor if migration is not None else rolled.flavor,
                power_state=self._driver.get_info(rolled).power_state,
                # A move the conductor never recorded leaves the link to an earlier
                # failed move as it was: what that one left is found by it.
                migration_id=None if migration is not None else rolled.migration_id,
                system_metadata=metadata,
            )
            rt.save(fired, rolled, migration)
            if trigger != "aborted":
                rt.fault(rolled, reason, self.host)
            rt.event(message.request_id, event, self.host)
            move_request = migration.request_id if migration is not None else None
            if move_request is not None:
                settled = store.get_request(move_request)
                if settled is not None and settled.outcome is Outcome.PENDING:
                    # The move's own history says how it ended.
                    rt.event(move_request, event, self.host, reason)
                rt.settle(move_request, Outcome.ROLLED_BACK, reason)
        return rolled

    def recover_instance(self, instance: Instance) -> messages.Message | None:
        """Bring one busy instance whose step was lost to a safe state (Nova's ``init_host``).

        By task_state: ``resize_prep``/``resize_migrating``/``resize_migrated`` roll back
        to the source (guest as it was, claims on the source, migration ``error``), by a
        message to the destination and the source (:meth:`roll_back_move`);
        ``resize_finish`` and ``resize_reverting`` go to ``error`` here (the guest's
        location is unknown); ``powering-off``/``powering-on`` finish the power action and
        ``deleting`` the delete, by a message to the instance's host. The recovery is
        recorded as an instance action ``recover``; the interrupted requests are settled
        with ``MoveInterrupted``, or as the resumed action ends (but a request a resumed
        delete overtook, a move say, fails with ``MoveInterrupted``: it did not happen).

        Returns the message queued to carry the recovery on (under the recovery's
        request), ``None`` when the recovery ended here.
        """
        rt, store = self._rt, self._rt.store
        task = instance.task_state
        assert task is not None
        request_id = f"req-{uuidlib.uuid4()}"
        with store.atomic():
            store.add_action(
                InstanceAction(
                    request_id=request_id,
                    instance_uuid=instance.uuid,
                    action="recover",
                    project_id=instance.project_id,
                    user_id=SERVICE.user_id,
                    start_time=rt.clock.now(),
                )
            )
            rt.open_request(RequestRecord(request_id, "recover", instance.uuid))
        interrupted = MoveInterrupted(
            f"the compute service of {self.host} restarted while instance "
            f"{instance.describe()} was in task_state {task.value}"
        )
        pending = tuple(
            r.request_id
            for r in store.list_requests(instance.uuid)
            if r.outcome is Outcome.PENDING and r.request_id != request_id
        )
        migration = _open_migration(store, instance, rt.machine)
        marker = messages.StopInstance(request_id, instance.uuid, self.host, also_settles=pending)
        resumed: messages.Message | None = None
        if instance.state in rt.machine.rule("abort_migration").sources:
            # What an abort could still undo (before finish_resize), recovery undoes.
            route = rollback_hosts(migration, task) or (instance.host,)
            resumed = messages.RollBackMove(
                request_id,
                instance.uuid,
                route[0],
                None if migration is None else migration.id,
                reason=str(interrupted),
                on_source=len(route) == 1,
                also_settles=pending,
            )
        elif task in (TaskState.RESIZE_FINISH, TaskState.RESIZE_REVERTING):
            self._recover_in_error(marker, instance, migration, interrupted)
        elif task is TaskState.POWERING_OFF:
            resumed = replace(marker, host=instance.host)
        elif task is TaskState.POWERING_ON:
            resumed = messages.StartInstance(
                request_id, instance.uuid, instance.host, also_settles=pending
            )
        elif task is TaskState.DELETING:
            resumed = messages.TerminateInstance(
                request_id, instance.uuid, instance.host, also_settles=pending
            )
        else:
            # A task_state this library never sets (resize_confirming, say): the state is
            # outside the machine, so it is reset to error directly, with a fault.
            with store.atomic():
                current = replace(instance, vm_state=VmState.ERROR, task_state=None)
                rt.keep(instance, current)
                rt.fault(current, interrupted, self.host)
                rt.event(request_id, "compute_recover", self.host, interrupted)
        if resumed is not None:
            store.push_message(resumed)
            return resumed
        self._settle_recovery(marker, Outcome.FAILED, interrupted)
        return None

    def _recover_in_error(
        self,
        marker: messages.Message,
        instance: Instance,
        migration: Migration | None,
        interrupted: ColdmigError,
    ) -> None:
        """``resize_finish``/``resize_reverting``: the guest's location is unknown."""
        store = self._rt.store
        fix: Callable[[], None] | None = None
        changes: dict[str, Any] = {}
        if migration is not None and instance.task_state is TaskState.RESIZE_FINISH:
            # As a failed finish_migration: the destination keeps its claim.
            source_side = migration

            def fix() -> None:
                claims.release(store, source_side.uuid)

        elif migration is not None and self._rt.machine.accepts(
            "reverted_active", migration.status
        ):
            # The destination side of the revert was done: the instance belongs at the
            # source, and so does its claim.
            back = migration

            def fix() -> None:
                claims.move_allocations(store, back.uuid, instance.uuid)

            changes = {"host": back.source_compute, "node": back.source_compute}
        self.fail_step(
            marker, instance, migration, interrupted, "compute_recover", fix, changes=changes
        )

    def init_host(self, sent: list[messages.Message] | None = None) -> list[Instance]:
        """Start-up recovery of this host's service (Nova's ``init_host``).

        Every busy instance that involves this host (as its host, or as the source or
        destination of its open move; for a delete, any host of its earlier moves) and has
        no message on its way is brought to a safe state (:meth:`recover_instance`),
        unless another involved host's service is down (its own restart recovers it).
        What must happen on another host is sent there as a message. A confirm whose
        message was lost is sent again. Host liveness is read from the store's host
        records; the messages on their way, from the queue by instance (the instances
        looked at only, never the whole queue). Returns the instances whose recovery
        started, as saved.

        Args:
            sent: when given, each message this recovery queues is appended to it as it
                is queued (what a runner follows to deliver the recovery's hops at once,
                without reading the queue).
        """
        store, machine = self._rt.store, self._rt.machine
        concerned = self._concerned()
        # What the queue carries on for each, as it was before this recovery sent more.
        carried = {instance.uuid: _carried(store, instance.uuid) for instance in concerned}
        down = services.down_hosts(self._rt)  # marked down, or its heartbeat too old
        recovered = []
        queued: list[messages.Message] = [] if sent is None else sent
        for instance in concerned:
            if instance.task_state is None:
                self._settle_interrupted_recoveries(instance, carried[instance.uuid])
                continue
            if self._under_way(instance, carried[instance.uuid]):
                self._settle_overtaken(instance, carried[instance.uuid])
                continue
            involved = _involved_hosts(store, instance, machine)
            if self.host not in involved or involved & down:
                continue
            resumed = self.recover_instance(instance)
            if resumed is not None:
                queued.append(resumed)
            recovered.append(store.get_instance(instance.uuid))
        confirming = machine.migration_change("confirmed_running")
        assert confirming is not None
        confirms = [
            migration
            for migration in store.migrations_on(self.host, confirming.accepts)
            if migration.source_compute == self.host
        ]
        for migration in confirms:
            confirm = self._resume_confirm(migration)
            if confirm is not None:
                queued.append(confirm)
        return recovered

    def _concerned(self) -> list[Instance]:
        """The instances a start-up recovery of this host looks at, by index: those on
        this host, and those of the moves from or to it that may have left a guest here
        (open or failed ones, and a half-reverted one: see
        :func:`~coldmig_fsm.roles.moves.may_leave_guest`), which a delete must remove."""
        store, machine = self._rt.store, self._rt.machine
        seen: dict[str, Instance] = {i.uuid: i for i in store.instances_on(self.host)}
        for migration in store.migrations_on(self.host, LEAVING_STATUSES):
            if migration.instance_uuid in seen:
                continue
            instance = store.get_instance(migration.instance_uuid)
            if may_leave_guest(migration, instance, machine):
                seen[migration.instance_uuid] = instance
        return list(seen.values())

    def _under_way(self, instance: Instance, carried: set[str]) -> bool:
        """Does a queued message carry the busy ``instance``'s current task on?

        The current task is the instance's latest pending request (a delete or an abort
        overtakes a move; a recovery's own request is the latest). A queued message of an
        older request cannot move the instance on (its hop's guards will refuse the
        state the newer request left), so it does not hold the recovery back.
        """
        pending = [
            r.request_id
            for r in self._rt.store.list_requests(instance.uuid)
            if r.outcome is Outcome.PENDING
        ]
        return bool(pending) and pending[-1] in carried

    def _settle_overtaken(self, instance: Instance, carried: set[str]) -> None:
        """A busy instance whose newer request is under way: fail each older request
        that nothing will settle any more (its message lost, and neither a queued
        message nor what the newer request does when it ends settles it).

        A queued delete ends every request of its instance (nothing is failed here); a
        queued abort settles the request of the move it cancels."""
        store = self._rt.store
        settled_later = set(carried)
        for message in store.pending_messages(instance.uuid):
            if isinstance(message, messages.TerminateInstance):
                return
            if isinstance(message, messages.AbortMigration):
                cancelled = store.get_migration(message.migration_id).request_id
                if cancelled is not None:
                    settled_later.add(cancelled)
        self._settle_interrupted_recoveries(instance, settled_later, busy=True)

    def _settle_interrupted_recoveries(
        self, instance: Instance, carried: set[str], *, busy: bool = False
    ) -> None:
        """A stable instance's pending request that no queued message carries can never
        settle: its message was lost, or a crash interrupted it (a recovery runs in one
        go, with no message, and may have been cut short on another host it reached).
        Once something else (an abort, a delete) has brought the instance to a stable
        state, nothing will finish it: it failed. Any host's start-up may find it (the
        crashed host's, typically), and so does ``reconcile``.

        ``busy``: the instance's task belongs to a newer request, whose message is
        queued (:meth:`_under_way`); ``carried`` then also names what that request
        settles when it ends (:meth:`_settle_overtaken`), and every other older request
        fails the same way."""
        # A lost confirm of an instance still waiting on it is sent again instead
        # (:meth:`_resume_confirm`).
        confirmable = instance.state in self._rt.machine.rule("confirmed_running").sources
        since = "a newer request is under way" if busy else "it has reached a stable state"
        for request in self._rt.store.list_requests(instance.uuid):
            if request.outcome is not Outcome.PENDING or request.request_id in carried:
                continue
            if request.action == "confirmResize" and confirmable:
                continue
            if request.action == "recover":
                error = MoveInterrupted(
                    f"a crash interrupted the recovery of instance {instance.describe()}; "
                    f"{since} since"
                )
            else:
                error = MoveInterrupted(
                    f"the {request.action} request of instance {instance.describe()} can no "
                    f"longer finish: its message was lost and {since} since"
                )
            self._rt.event(request.request_id, "compute_recover", self.host, error)
            self._rt.settle(request.request_id, Outcome.FAILED, error)

    def _resume_confirm(self, migration: Migration) -> messages.Message | None:
        """Send a confirm again whose message was lost (removing a guest is idempotent);
        returns it, ``None`` when there is none to send.

        The confirm is the instance's latest pending ``confirmResize`` request; it is
        resent unless a queued message carries it (its own message, or a delete that
        confirms first). Another queued message of the instance does not hold it back:
        one left over from an earlier move (a ``prep_resize`` its abort overtook,
        waiting for a host that is down) settles nothing of this one.
        """
        store = self._rt.store
        instance = store.get_instance(migration.instance_uuid)
        if instance.state not in self._rt.machine.rule("confirmed_running").sources:
            return None  # (being deleted, say) no longer waiting on its confirm
        pending = [
            r.request_id
            for r in store.list_requests(migration.instance_uuid)
            if r.action == "confirmResize" and r.outcome is Outcome.PENDING
        ]
        if not pending or pending[-1] in _carried(store, migration.instance_uuid):
            return None
        confirm = messages.ConfirmResize(
            pending[-1], migration.instance_uuid, migration.source_compute, migration.id
        )
        store.push_message(confirm)
        return confirm

    def periodic_tasks(self, confirm: Callable[[str], object]) -> list[Migration]:
        """Run the periodic tasks that are due (auto-confirm, Nova's
        ``_poll_unconfirmed_resizes``): ``confirm(instance_uuid)`` is asked for each
        migration to confirm now (Nova's compute calls its API's ``confirm_resize``).
        Returns those migrations.
        """
        due = [migration for migration, reason in self.unconfirmed_resizes() if reason is None]
        for migration in due:
            confirm(migration.instance_uuid)
        return due

    def unconfirmed_resizes(self) -> list[tuple[Migration, str | None]]:
        """Nova's ``_poll_unconfirmed_resizes`` for this (destination) host.

        Returns the ``finished`` migrations older than ``resize_confirm_window`` with
        the decision for each: ``None`` means confirm it now; a reason means it was set to
        ``error`` here (instance gone or not ``resized``). Instances busy with another
        task are skipped, as the spec says (Nova errors most of them out).
        """
        rt, store = self._rt, self._rt.store
        window = rt.config.resize_confirm_window
        if window <= 0:
            return []
        now = rt.clock.now()
        due: list[tuple[Migration, str | None]] = []
        finished = rt.machine.migration_change("confirm_resize")
        assert finished is not None
        for migration in store.migrations_on(self.host, finished.accepts):
            if migration.dest_compute != self.host or not rt.machine.accepts(
                "confirm_resize", migration.status
            ):
                continue
            if migration.updated_at is not None and (
                (now - migration.updated_at).total_seconds() < window
            ):
                continue
            try:
                instance = store.get_instance(migration.instance_uuid)
            except ColdmigError:
                instance = None
            if instance is not None and instance.task_state is not None:
                continue
            reason = None
            if instance is None or instance.vm_state is VmState.DELETED:
                reason = "instance is gone"
            elif instance.vm_state is not VmState.RESIZED:
                reason = f"instance is {instance.vm_state.value}, not resized"
            if reason is not None:
                rt.end_migration("confirm_window_orphaned", migration)
            due.append((migration, reason))
        return due


# --- module helpers ---------------------------------------------------------------------


def _request_open(store: Store, migration: Migration) -> bool:
    if migration.request_id is None:
        return True  # a record from before requests were tracked: as before
    request = store.get_request(migration.request_id)
    return request is None or request.outcome is Outcome.PENDING


def _open_migration(store: Store, instance: Instance, machine: Machine) -> Migration | None:
    """The instance's move in progress: its migration context, else its last open record
    (an accepted abort not yet carried out included).

    A failed move keeps its record as the instance's context (so that the next move finds
    what it left, see the conductor); once that move's request has ended, the context is
    not the move in progress, and rolling it back again would release the instance's own
    claim. A ``reverted`` record whose source half has not run is the move in progress
    while the instance is still in that half's state (``resized``/``resize_reverting``);
    once that revert has ended otherwise (failed, overtaken by a delete) and the instance
    has gone on, it is a leftover in the same way.
    """
    if instance.migration_id is not None:
        current = store.get_migration(instance.migration_id)
        status = current.status
        reverted = (
            machine.accepts("reverted_active", status)
            and instance.state in machine.rule("reverted_active").sources
        )
        over = status.is_final and not status.is_failed and not reverted
        if not over and not (status.is_failed and not _request_open(store, current)):
            return current
    for migration in reversed(store.list_migrations(instance.uuid)):
        if not migration.status.is_final:
            return migration
    return None


def _involved_hosts(store: Store, instance: Instance, machine: Machine) -> set[str]:
    """The hosts whose services take part in recovering ``instance``: its own and those
    of its move in progress; for a delete, every host the delete visits (what earlier
    moves may have left there). Each of them finds ``instance`` in its
    :meth:`Recovery._concerned`, so a recovery held back by one that is down is taken up
    by that one's restart."""
    if instance.task_state is TaskState.DELETING:
        return guest_hosts(instance, store.list_migrations(instance.uuid), machine)
    hosts = {instance.host}
    if instance.migration_id is not None:
        migration = store.get_migration(instance.migration_id)
        if may_leave_guest(migration, instance, machine):
            hosts.update(h for h in (migration.source_compute, migration.dest_compute) if h)
    return hosts


def _carried(store: Store, instance_uuid: str) -> set[str]:
    """The requests that the instance's queued messages carry on, read by index: a
    message carries requests of its own instance only (its own, those it settles too,
    the confirm a delete carries out first: :func:`_requests_of`)."""
    return {r for m in store.pending_messages(instance_uuid) for r in _requests_of(m)}


def _requests_of(message: messages.Message) -> tuple[str, ...]:
    """The requests a queued message carries on: its own, those it settles too, and the
    confirm a delete of a ``resized`` instance carries out first."""
    confirm = getattr(message, "confirm_request_id", None)
    extra = () if confirm is None else (confirm,)
    return (message.request_id, *getattr(message, "also_settles", ()), *extra)


def reconcile(services: Iterable[Recovery]) -> list[Instance]:
    """What an orchestrator runs on start-up: the start-up recovery of every running
    compute service given (a lost hop, or a process that died between hops, leaves an
    instance busy with no message on its way). Returns the instances recovered."""
    recovered: list[Instance] = []
    for service in services:
        recovered += service.init_host()
    return recovered
