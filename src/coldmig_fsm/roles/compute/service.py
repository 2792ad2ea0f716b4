"""The compute role: one :class:`ComputeService` per host, one method per hop.

Each handler is one step between two messages. It reads the instance, fires its
trigger(s) on the machine (the guard is the task_state it expects; the driver call is the
trigger's effect) and saves with a compare-and-swap on that task_state, then queues the
next hop. A handler whose guard fails changes nothing: the state that won stands and the
request's outcome is ``failed`` with that error.

Failure of a driver call ends in the state the spec's failure table gives (see
``docs/failures.md``): a guest left intact (``InstanceFaultRollback``) rolls the move
back; anything else puts the instance in ``error`` with a fault, the notification
``compute.exception``, the migration in ``error`` and the claims where the table says.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from coldmig_fsm import messages
from coldmig_fsm.drivers.base import DiskInfo, HypervisorDriver
from coldmig_fsm.exceptions import (
    ColdmigError,
    ComputeResourcesUnavailable,
    InstanceFaultRollback,
    InstanceNotFound,
    MigrationCancelled,
    MoveInterrupted,
    RequestRefused,
    UnableToMigrateToSelf,
)
from coldmig_fsm.guards import GuardContext
from coldmig_fsm.records import Instance, InstanceAction, Migration, Outcome, RequestRecord
from coldmig_fsm.roles import claims
from coldmig_fsm.roles.moves import guest_touched, rollback_hosts
from coldmig_fsm.roles.runtime import SERVICE, Runtime, moved
from coldmig_fsm.states import PowerState, TaskState, VmState
from coldmig_fsm.stores.memory import Store

__all__ = ["ComputeService", "reconcile"]


class ComputeService:
    """The compute service of one host.

    Args:
        runtime: the shared store, clock, configuration and machine.
        driver: this host's hypervisor driver.

    It calls only its own host's driver: what must happen on another host is a message
    to that host's service.
    """

    def __init__(self, runtime: Runtime, driver: HypervisorDriver) -> None:
        self._rt = runtime
        self._driver = driver
        self._handlers: dict[type[messages.Message], Callable[[Any], None]] = {
            messages.PrepResize: self.prep_resize,
            messages.ResizeInstance: self.resize_instance,
            messages.FinishResize: self.finish_resize,
            messages.ConfirmResize: self.confirm_resize,
            messages.RevertResize: self.revert_resize,
            messages.FinishRevertResize: self.finish_revert_resize,
            messages.StopInstance: self.stop_instance,
            messages.StartInstance: self.start_instance,
            messages.TerminateInstance: self.terminate_instance,
            messages.AbortMigration: self.abort_migration,
            messages.RollBackMove: self.roll_back_move,
        }

    @property
    def host(self) -> str:
        return self._driver.host

    @property
    def driver(self) -> HypervisorDriver:
        return self._driver

    @property
    def runtime(self) -> Runtime:
        return self._rt

    def handle(self, message: messages.Message) -> None:
        handler = self._handlers.get(type(message))
        if handler is None:
            raise TypeError(f"compute services do not handle {message.kind}")
        handler(message)

    # -- helpers --------------------------------------------------------------------------

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
        lost, or overtaken) could never settle otherwise.
        """
        rt, store = self._rt, self._rt.store
        travelling = {m.request_id for m in store.pending_messages()}
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
                ended = attrs.evolve(
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

    def _refused(self, message: messages.Message, trigger: str, instance: Instance) -> bool:
        """Check ``trigger``'s guards first; a refusal settles the request as failed."""
        failure = self._rt.machine.check(trigger, GuardContext(trigger, SERVICE, instance))
        if failure is None:
            return False
        self._rt.settle(message.request_id, Outcome.FAILED, failure.to_exception())
        return True

    def _power_state(self, instance: Instance) -> PowerState:
        return self._driver.get_info(instance).power_state

    def _claims_back_on_source(
        self, instance: Instance, migration: Migration
    ) -> Callable[[], None]:
        """Drop the destination claim and give the source claim back to the instance."""
        return lambda: claims.back_on_source(self._rt.store, instance.uuid, migration.uuid)

    # -- prep_resize (destination) ------------------------------------------------------

    def prep_resize(self, message: messages.PrepResize) -> None:
        """Claim the new flavor here; stash ``old_vm_state``; set the flavors."""
        rt, store = self._rt, self._rt.store
        migration = store.get_migration(message.migration_id)
        if migration.status.is_cancelling:
            return  # aborted: the abort step rolls back and settles the request
        try:
            instance = store.get_instance(message.instance_uuid)
            fired = rt.fire("prep_resize", instance, migration=migration)
        except ColdmigError as error:
            rt.settle(message.request_id, Outcome.FAILED, error)
            return
        new_flavor = rt.flavor(message.flavor_id)
        rt.notify("instance.exists", instance, self.host)
        rt.notify("instance.resize_prep.start", instance, self.host)
        try:
            with store.atomic():
                same_flavor = new_flavor.id == instance.flavor
                if (
                    message.host == instance.host
                    and same_flavor
                    and not self._driver.capabilities.supports_migrate_to_same_host
                ):
                    raise UnableToMigrateToSelf(
                        f"Unable to migrate instance {instance.uuid} to current host ({self.host})."
                    )
                host = store.get_host(self.host)
                if host is None or not claims.fits(store, host, new_flavor.resources):
                    raise ComputeResourcesUnavailable(
                        f"Insufficient compute resources on {self.host} for flavor {new_flavor.id}"
                    )
                claims.claim(store, instance.uuid, self.host, new_flavor.resources)
                metadata = {**instance.system_metadata, "old_vm_state": instance.vm_state.value}
                prepared = moved(
                    instance,
                    fired,
                    system_metadata=metadata,
                    new_flavor=new_flavor.id,
                    migration_id=migration.id,
                )
                rt.save(fired, prepared, migration, dest_compute=self.host)
                rt.notify("instance.resize_prep.end", prepared, self.host)
                rt.event(message.request_id, "compute_prep_resize", self.host)
                store.push_message(
                    messages.ResizeInstance(
                        message.request_id, instance.uuid, instance.host, migration.id
                    )
                )
        except (ComputeResourcesUnavailable, UnableToMigrateToSelf) as error:
            self._reschedule(message, instance, migration, error)
        except RequestRefused as refusal:
            # Lost a race (aborted, deleted, reset) after the first check: nothing written.
            if not store.get_migration(migration.id).status.is_cancelling:
                rt.settle(message.request_id, Outcome.FAILED, refusal)

    def _reschedule(
        self,
        message: messages.PrepResize,
        instance: Instance,
        migration: Migration,
        error: ColdmigError,
    ) -> None:
        """This host failed: try the next alternate with a fresh migration record."""
        rt, store = self._rt, self._rt.store
        with store.atomic():
            fired = rt.fire("reschedule", instance, migration=migration)
            rt.save_migration(fired, migration)
            claims.move_allocations(store, migration.uuid, instance.uuid)
            rt.event(message.request_id, "compute_prep_resize", self.host, error)
            store.push_message(
                messages.MigrateServer(
                    message.request_id,
                    instance.uuid,
                    flavor_id=message.flavor_id,
                    hosts=message.alternates,
                    attempt=message.attempt + 1,
                )
            )

    # -- resize_instance (source) -------------------------------------------------------

    def resize_instance(self, message: messages.ResizeInstance) -> None:
        """Power off and copy the disks to the destination; the instance moves there."""
        rt, store = self._rt, self._rt.store
        migration = store.get_migration(message.migration_id)
        if migration.status.is_cancelling:
            return
        dest = migration.dest_compute
        assert dest is not None  # prep_resize filled it in
        begun = self._begin(message, "resize_instance", migration)
        if begun is None:
            return
        moving, migration = begun
        rt.notify("instance.resize.start", moving, self.host)
        new_flavor = rt.flavor(migration.new_flavor)
        config = rt.config

        def copy() -> DiskInfo:
            return self._driver.migrate_disk_and_power_off(
                moving,
                dest,
                new_flavor,
                config.shutdown_timeout,
                config.shutdown_retry_interval,
            )

        try:
            fired = rt.fire("resize_migrated", moving, effect=copy, migration=migration)
        except RequestRefused as refusal:
            rt.settle(message.request_id, Outcome.FAILED, refusal)
            return
        except Exception as error:  # any driver failure ends the step, never leaves it stuck
            self.fail_step(
                message,
                moving,
                migration,
                error,
                "compute_resize_instance",
                self._claims_back_on_source(moving, migration),
                rollback=isinstance(error, InstanceFaultRollback),
            )
            return
        try:
            disk_info: DiskInfo = fired.result
            with store.atomic():
                migrated = moved(moving, fired, host=dest, node=dest)
                rt.save(fired, migrated, migration)
                rt.notify("instance.resize.end", migrated, self.host)
                rt.event(message.request_id, "compute_resize_instance", self.host)
                store.push_message(
                    messages.FinishResize(
                        message.request_id,
                        migrated.uuid,
                        dest,
                        migration.id,
                        disks=disk_info.disks,
                        bytes_copied=disk_info.bytes_copied,
                    )
                )
        except ColdmigError as error:
            rt.settle(message.request_id, Outcome.FAILED, error)

    # -- finish_resize (destination) ----------------------------------------------------

    def finish_resize(self, message: messages.FinishResize) -> None:
        """Apply the new flavor and define the guest here; the instance is ``resized``."""
        rt, store = self._rt, self._rt.store
        migration = store.get_migration(message.migration_id)
        if migration.status.is_cancelling:
            return

        def start(inst: Instance) -> Instance:
            # Nova stashes the old flavor only now (a move failed earlier has none).
            return attrs.evolve(inst, flavor=migration.new_flavor, old_flavor=migration.old_flavor)

        begun = self._begin(message, "finish_resize", migration, start)
        if begun is None:
            return
        finishing, migration = begun
        rt.notify("instance.resize_finish.start", finishing, self.host)
        power_on = finishing.old_vm_state is not VmState.STOPPED
        flavor = rt.flavor(migration.new_flavor)
        disk_info = DiskInfo(message.disks, message.bytes_copied)

        def define() -> None:
            self._driver.finish_migration(
                finishing,
                migration,
                disk_info,
                flavor,
                migration.old_flavor != migration.new_flavor,
                power_on,
            )

        try:
            fired = rt.fire("resize_finished", finishing, effect=define, migration=migration)
        except RequestRefused as refusal:
            rt.settle(message.request_id, Outcome.FAILED, refusal)
            return
        except Exception as error:
            self.fail_step(
                message,
                finishing,
                migration,
                error,
                "compute_finish_resize",
                lambda: claims.release(store, migration.uuid),
                # As Nova: the instance's flavor goes back to the old one; the stashed
                # old_flavor and new_flavor stay set.
                changes={"flavor": migration.old_flavor},
            )
            return
        try:
            with store.atomic():
                finished = moved(finishing, fired)
                finished = attrs.evolve(finished, power_state=self._power_state(finished))
                rt.save(fired, finished, migration)
                rt.notify("instance.resize_finish.end", finished, self.host)
                rt.event(message.request_id, "compute_finish_resize", self.host)
                rt.settle(message.request_id, Outcome.SUCCEEDED)
        except ColdmigError as error:
            rt.settle(message.request_id, Outcome.FAILED, error)

    # -- confirm_resize (source) --------------------------------------------------------

    def confirm_resize(self, message: messages.ConfirmResize) -> None:
        """Remove the source guest and release the source claim."""
        rt, store = self._rt, self._rt.store
        migration = store.get_migration(message.migration_id)
        instance = store.get_instance(message.instance_uuid)
        running = instance.power_state is not PowerState.SHUTDOWN
        trigger = "confirmed_running" if running else "confirmed_shutdown"
        if self._refused(message, trigger, instance):
            return
        rt.notify("instance.resize_confirm.start", instance, self.host)
        try:
            fired = rt.fire(
                trigger,
                instance,
                effect=lambda: self._driver.confirm_migration(instance, migration),
                migration=migration,
            )
        except Exception as error:
            self.fail_step(
                message,
                instance,
                migration,
                error,
                "compute_confirm_resize",
                lambda: claims.release(store, migration.uuid),
                changes={"migration_id": None, "old_flavor": None, "new_flavor": None},
            )
            return
        try:
            with store.atomic():
                claims.release(store, migration.uuid)
                confirmed = _drop_move_state(moved(instance, fired))
                rt.save(fired, confirmed, migration)
                rt.notify("instance.resize_confirm.end", confirmed, self.host)
                rt.event(message.request_id, "compute_confirm_resize", self.host)
                rt.settle(message.request_id, Outcome.SUCCEEDED)
        except ColdmigError as error:
            rt.settle(message.request_id, Outcome.FAILED, error)

    # -- revert_resize (destination) then finish_revert_resize (source) -----------------

    def revert_resize(self, message: messages.RevertResize) -> None:
        """Destroy the guest here and release this host's claim."""
        rt, store = self._rt, self._rt.store
        migration = store.get_migration(message.migration_id)
        instance = store.get_instance(message.instance_uuid)
        rt.notify("instance.exists", instance, self.host)
        try:
            fired = rt.fire(
                "revert_resize_on_dest",
                instance,
                effect=lambda: self._driver.destroy(instance, destroy_disks=True),
                migration=migration,
            )
        except RequestRefused as refusal:
            rt.settle(message.request_id, Outcome.FAILED, refusal)
            return
        except Exception as error:
            self.fail_step(message, instance, migration, error, "compute_revert_resize")
            return
        try:
            with store.atomic():
                claims.release(store, instance.uuid, self.host)
                rt.save(fired, moved(instance, fired), migration)
                rt.event(message.request_id, "compute_revert_resize", self.host)
                store.push_message(
                    messages.FinishRevertResize(
                        message.request_id, instance.uuid, migration.source_compute, migration.id
                    )
                )
        except ColdmigError as error:
            rt.settle(message.request_id, Outcome.FAILED, error)

    def finish_revert_resize(self, message: messages.FinishRevertResize) -> None:
        """Bring the original guest back here, with the old flavor and this host."""
        rt, store = self._rt, self._rt.store
        migration = store.get_migration(message.migration_id)
        instance = store.get_instance(message.instance_uuid)
        power_on = instance.old_vm_state is not VmState.STOPPED
        trigger = "reverted_active" if power_on else "reverted_stopping"
        if self._refused(message, trigger, instance):
            return
        rt.notify("instance.resize_revert.start", instance, self.host)
        restored = attrs.evolve(
            instance,
            flavor=migration.old_flavor,
            host=migration.source_compute,
            node=migration.source_compute,
        )
        with store.atomic():
            # Claim and record move back together, before the driver call, so that a
            # crash in it leaves an instance whose host is where its claim is.
            claims.move_allocations(store, migration.uuid, instance.uuid)
            rt.keep(instance, restored)
        try:
            fired = rt.fire(
                trigger,
                restored,
                effect=lambda: self._driver.finish_revert_migration(restored, migration, power_on),
                migration=migration,
            )
        except Exception as error:
            changes = {
                "flavor": restored.flavor,
                "host": restored.host,
                "node": restored.node,
                "old_flavor": None,
                "new_flavor": None,
            }
            self.fail_step(
                message,
                instance,
                migration,
                error,
                "compute_finish_revert_resize",
                changes=changes,
            )
            return
        with store.atomic():
            reverted = _drop_move_state(moved(restored, fired))
            reverted = attrs.evolve(reverted, power_state=self._power_state(reverted))
            rt.save(fired, reverted, migration)
            rt.event(message.request_id, "compute_finish_revert_resize", self.host)
        if not power_on:
            # Nova stops a reverted guest that was stopped through the ordinary stop path.
            if not self._power_off(message, reverted, migration):
                return
            reverted = store.get_instance(instance.uuid)
        with store.atomic():
            rt.notify("instance.resize_revert.end", reverted, self.host)
            rt.settle(message.request_id, Outcome.SUCCEEDED)

    # -- ordinary power actions ---------------------------------------------------------

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
            stopped = attrs.evolve(stopped, power_state=self._power_state(stopped))
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
            reverted = attrs.evolve(reverted, power_state=self._power_state(reverted))
            rt.save(fired, reverted)
            rt.fault(reverted, error, self.host)
            rt.notify("compute.exception", reverted, self.host)
            rt.event(message.request_id, event, self.host, error)
            self._settle_recovery(message, Outcome.ROLLED_BACK, error)

    def stop_instance(self, message: messages.StopInstance) -> None:
        rt = self._rt
        instance = rt.store.get_instance(message.instance_uuid)
        if self._refused(message, "powered_off", instance):
            return
        if self._power_off(message, instance):
            if instance.vm_state is VmState.RESIZED:
                # (start-up recovery) the stop that ends a revert ends the revert too.
                current = rt.store.get_instance(instance.uuid)
                rt.notify("instance.resize_revert.end", current, self.host)
            self._settle_recovery(message, Outcome.SUCCEEDED, None)

    def start_instance(self, message: messages.StartInstance) -> None:
        rt, store = self._rt, self._rt.store
        instance = store.get_instance(message.instance_uuid)
        rt.notify("instance.power_on.start", instance, self.host)
        try:
            fired = rt.fire("powered_on", instance, effect=lambda: self._driver.power_on(instance))
        except RequestRefused as refusal:
            rt.settle(message.request_id, Outcome.FAILED, refusal)
            return
        except Exception as error:
            self._power_failed(message, instance, error, "compute_start_instance")
            return
        with store.atomic():
            started = moved(instance, fired)
            started = attrs.evolve(started, power_state=self._power_state(started))
            rt.save(fired, started)
            rt.notify("instance.power_on.end", started, self.host)
            rt.event(message.request_id, "compute_start_instance", self.host)
            self._settle_recovery(message, Outcome.SUCCEEDED, None)

    # -- abort (not in Nova) and the rollback of a move ---------------------------------

    def abort_migration(self, message: messages.AbortMigration) -> None:
        """Roll back a move that the API cancelled before ``finish_resize`` started.

        On the destination (when the copy may have left disks there) the disks are
        removed and the message goes on to the source; on the source the guest comes back
        as it was and the migration ends ``cancelled``.
        """
        rt, store = self._rt, self._rt.store
        instance = store.get_instance(message.instance_uuid)
        migration = store.get_migration(message.migration_id)
        if self._refused(message, "aborted", instance):
            return
        cancelled = MigrationCancelled(
            f"Migration {migration.id} of instance {instance.describe()} was cancelled"
        )
        event = "compute_abort_migration"
        if not message.on_source:
            if self._remove_copy(message, instance, migration, cancelled, event):
                store.push_message(
                    attrs.evolve(message, host=migration.source_compute, on_source=True)
                )
            return
        done = self._roll_back(message, instance, migration, cancelled, "aborted", event)
        if done is not None:
            rt.settle(message.request_id, Outcome.SUCCEEDED)
            # A recovery that a crash interrupted before this abort can no longer finish.
            travelling = {m.request_id for m in store.pending_messages()}
            self._settle_interrupted_recoveries(done, travelling)

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
                store.push_message(
                    attrs.evolve(message, host=migration.source_compute, on_source=True)
                )
            else:
                self._settle_recovery(message, Outcome.FAILED, interrupted)
            return
        aborting = migration is not None and migration.status.is_cancelling
        trigger = "aborted" if aborting else "rolled_back"
        done = self._roll_back(message, instance, migration, interrupted, trigger, event)
        outcome = Outcome.ROLLED_BACK if done is not None else Outcome.FAILED
        self._settle_recovery(message, outcome, interrupted)

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
        at_source = attrs.evolve(instance, host=source, node=source)
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
        instance, ``None`` when it did not roll back."""
        rt, store = self._rt, self._rt.store
        source = migration.source_compute if migration is not None else instance.host
        power_on = (instance.old_vm_state or instance.vm_state) is not VmState.STOPPED
        at_source = attrs.evolve(instance, host=source, node=source)
        touched = migration is not None and guest_touched(instance.task_state, rt.machine)

        def restore() -> None:
            if touched:
                assert migration is not None
                self._driver.finish_revert_migration(at_source, migration, power_on)

        try:
            fired = rt.fire(trigger, at_source, effect=restore, migration=migration)
        except RequestRefused:
            return None
        except Exception as failure:  # the guest could not be brought back: error
            self._rollback_failed(message, instance, migration, failure, reason, event)
            return None
        with store.atomic():
            if migration is not None:
                claims.back_on_source(store, instance.uuid, migration.uuid)
            rolled = moved(at_source, fired)
            metadata = {k: v for k, v in rolled.system_metadata.items() if k != "old_vm_state"}
            rolled = attrs.evolve(
                rolled,
                flavor=migration.old_flavor if migration is not None else rolled.flavor,
                power_state=self._driver.get_info(rolled).power_state,
                migration_id=None,
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

    # -- start-up recovery ----------------------------------------------------------------

    def recover_instance(self, instance: Instance) -> None:
        """Bring one busy instance whose step was lost to a safe state (Nova's ``init_host``).

        By task_state: ``resize_prep``/``resize_migrating``/``resize_migrated`` roll back
        to the source (guest as it was, claims on the source, migration ``error``), by a
        message to the destination and the source (:meth:`roll_back_move`);
        ``resize_finish`` and ``resize_reverting`` go to ``error`` here (the guest's
        location is unknown); ``powering-off``/``powering-on`` finish the power action and
        ``deleting`` the delete, by a message to the instance's host. The recovery is
        recorded as an instance action ``recover``; the interrupted requests are settled
        with ``MoveInterrupted`` (or as the resumed action ends).
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
        migration = _open_migration(store, instance)
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
            resumed = attrs.evolve(marker, host=instance.host)
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
                current = attrs.evolve(instance, vm_state=VmState.ERROR, task_state=None)
                rt.keep(instance, current)
                rt.fault(current, interrupted, self.host)
                rt.event(request_id, "compute_recover", self.host, interrupted)
        if resumed is not None:
            store.push_message(resumed)
            return
        self._settle_recovery(marker, Outcome.FAILED, interrupted)

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

    def _settle_recovery(
        self, message: messages.Message, outcome: Outcome, error: BaseException | None
    ) -> None:
        """End a recovery (or a resumed action): its request and the instance's other
        open requests it took over (``also_settles``), each with its own event."""
        rt = self._rt
        failed = None if outcome is Outcome.SUCCEEDED else error
        rt.settle(message.request_id, outcome, failed)
        for other in getattr(message, "also_settles", ()):
            request = rt.store.get_request(other)
            if request is None or request.outcome is not Outcome.PENDING:
                continue
            # The interrupted request's own history says how it ended.
            rt.event(other, "compute_recover", self.host, failed)
            rt.settle(other, outcome, failed)

    # -- background work: start-up recovery and periodic tasks ---------------------------

    def init_host(self) -> list[Instance]:
        """Start-up recovery of this host's service (Nova's ``init_host``).

        Every busy instance that involves this host (as its host, or as the source or
        destination of its open move; for a delete, any host of its earlier moves) and has
        no message on its way is brought to a safe state (:meth:`recover_instance`),
        unless another involved host's service is down (its own restart recovers it).
        What must happen on another host is sent there as a message. A confirm whose
        message was lost is sent again. Host liveness is read from the store's host
        records. Returns the instances whose recovery started, as saved.
        """
        store = self._rt.store
        travelling = store.pending_messages()
        waiting = {m.instance_uuid for m in travelling}
        down = {h.name for h in store.list_hosts() if not h.up}
        recovered = []
        for instance in store.list_instances():
            if instance.task_state is None:
                self._settle_interrupted_recoveries(instance, {m.request_id for m in travelling})
                continue
            if instance.uuid in waiting:
                continue
            involved = _involved_hosts(store, instance)
            if self.host not in involved or involved & down:
                continue
            self.recover_instance(instance)
            recovered.append(store.get_instance(instance.uuid))
        waiting = {m.instance_uuid for m in store.pending_messages()}
        for migration in store.list_migrations():
            if (
                self._rt.machine.accepts("confirmed_running", migration.status)
                and migration.source_compute == self.host
                and migration.instance_uuid not in waiting
            ):
                self._resume_confirm(migration)
        return recovered

    def _settle_interrupted_recoveries(self, instance: Instance, travelling: set[str]) -> None:
        """A recovery runs in one go, with no message: one still pending was interrupted by
        a crash (of another host it reached). Once something else (an abort, say) has
        brought the instance to a stable state, nothing will finish it: it failed. Any
        host's start-up may find it (the crashed host's, typically)."""
        for request in self._rt.store.list_requests(instance.uuid):
            if (
                request.action == "recover"
                and request.outcome is Outcome.PENDING
                and request.request_id not in travelling
            ):
                error = MoveInterrupted(
                    f"a crash interrupted the recovery of instance {instance.describe()}; "
                    "it has reached a stable state since"
                )
                self._rt.event(request.request_id, "compute_recover", self.host, error)
                self._rt.settle(request.request_id, Outcome.FAILED, error)

    def _resume_confirm(self, migration: Migration) -> None:
        """Send a confirm again whose message was lost (removing a guest is idempotent)."""
        store = self._rt.store
        instance = store.get_instance(migration.instance_uuid)
        if instance.state not in self._rt.machine.rule("confirmed_running").sources:
            return  # (being deleted, say) no longer waiting on its confirm
        pending = [
            r.request_id
            for r in store.list_requests(migration.instance_uuid)
            if r.action == "confirmResize" and r.outcome is Outcome.PENDING
        ]
        if pending:
            store.push_message(
                messages.ConfirmResize(
                    pending[-1], migration.instance_uuid, migration.source_compute, migration.id
                )
            )

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
        for migration in store.list_migrations():
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

    # -- delete -------------------------------------------------------------------------

    def terminate_instance(self, message: messages.TerminateInstance) -> None:
        """Delete, one host at a time (:class:`~coldmig_fsm.messages.DeletePhase`).

        ``confirm`` (on a ``resized`` instance's source): confirm the move first.
        ``delete`` (on the instance's host): destroy the guest here, then visit each other
        host that a failed or unfinished move may have left a guest or disks on
        (``clean``), then come back here (``finish``): the instance is ``deleted``, every
        claim released. Each host destroys only its own guest.
        """
        rt, store = self._rt, self._rt.store
        instance = store.get_instance(message.instance_uuid)
        if self._refused(message, "terminated", instance):
            return
        phase = message.phase
        if phase is messages.DeletePhase.CONFIRM:
            self._confirm_on_delete(message, instance)
            return
        if phase is messages.DeletePhase.FINISH:
            self._finish_delete(message, instance)
            return
        if phase is messages.DeletePhase.DELETE:
            rt.notify("instance.delete.start", instance, self.host)
            rt.notify("instance.shutdown.start", instance, self.host)
        try:
            self._driver.destroy(instance, destroy_disks=True)
        except Exception as error:
            self._delete_failed(message, instance, error)
            return
        if phase is messages.DeletePhase.DELETE:
            remaining = tuple(sorted(self._guest_hosts(instance) - {self.host}))
        else:
            remaining = message.clean
        if remaining:
            store.push_message(
                attrs.evolve(
                    message,
                    host=remaining[0],
                    phase=messages.DeletePhase.CLEAN,
                    clean=remaining[1:],
                )
            )
        elif phase is messages.DeletePhase.CLEAN:
            store.push_message(
                attrs.evolve(message, host=instance.host, phase=messages.DeletePhase.FINISH)
            )
        else:
            self._finish_delete(message, instance)

    def _guest_hosts(self, instance: Instance) -> set[str]:
        """Every host that may hold a guest or disks of ``instance``: its own, and both
        hosts of each move that is open, failed, or that the instance still refers to
        (a confirmed, cancelled or completely reverted one has left nothing)."""
        machine = self._rt.machine
        hosts = {instance.host}
        for migration in self._rt.store.list_migrations(instance.uuid):
            current = migration.id == instance.migration_id
            clean = (
                migration.status.is_final
                and not migration.status.is_failed
                and not (current and machine.accepts("reverted_active", migration.status))
            )
            if not clean:
                hosts.update(h for h in (migration.source_compute, migration.dest_compute) if h)
        return hosts

    def _delete_failed(
        self, message: messages.TerminateInstance, instance: Instance, error: Exception
    ) -> None:
        store = self._rt.store
        open_moves = [m for m in store.list_migrations(instance.uuid) if not m.status.is_final]
        move = open_moves[-1] if open_moves else None  # it ends in error with the instance
        halfway = self._unfinished_revert(instance)
        if move is None and halfway is not None:
            # The revert's dest half ran (dest guest and claim gone), its source half did
            # not: the guest and the claim left are the source's, so that is where the
            # instance ends, in error, with the claim back on it.
            self.fail_step(
                message,
                instance,
                halfway,
                error,
                "compute_terminate_instance",
                lambda: claims.back_on_source(store, instance.uuid, halfway.uuid),
                changes={"host": halfway.source_compute, "node": halfway.source_compute},
            )
            return
        fix: Callable[[], None] | None = None
        if move is not None and instance.host == move.source_compute:
            # The move had not taken the instance away yet: as every failure before the
            # guest leaves the source, the claims go back to the source.
            moving = move

            def fix() -> None:
                claims.back_on_source(store, instance.uuid, moving.uuid)

        self.fail_step(message, instance, move, error, "compute_terminate_instance", fix)

    def _finish_delete(self, message: messages.TerminateInstance, instance: Instance) -> None:
        """Every guest is gone: the records. Each open move fails with the instance (an
        abort not yet carried out is cancelled), every claim is released."""
        rt, store = self._rt, self._rt.store
        fired = rt.fire("terminated", instance)
        with store.atomic():
            for migration in store.list_migrations(instance.uuid):
                rt.end_migration("terminated", migration)
                # An errored move may still hold what its failed step left: released too.
                claims.release(store, migration.uuid)
            claims.release(store, instance.uuid)
            # As Nova: a deleted instance keeps the flavors a failed move stashed (a
            # confirm on delete has cleared them).
            confirmed = message.confirm_request_id is not None
            gone = attrs.evolve(
                _drop_move_state(moved(instance, fired)),
                power_state=PowerState.NOSTATE,
                old_flavor=None if confirmed else instance.old_flavor,
                new_flavor=None if confirmed else instance.new_flavor,
            )
            rt.save(fired, gone)
            rt.notify("instance.shutdown.end", gone, self.host)
            rt.notify("instance.delete.end", gone, self.host)
            rt.event(message.request_id, "compute_terminate_instance", self.host)
            self._settle_recovery(message, Outcome.SUCCEEDED, None)
            # Whatever else was still under way on this instance ends with it.
            gone_error = InstanceNotFound(f"Instance {instance.uuid} was deleted meanwhile.")
            self._settle_stranded(instance.uuid, "compute_terminate_instance", gone_error)

    def _confirm_on_delete(self, message: messages.TerminateInstance, instance: Instance) -> None:
        """(Source) confirm the move of a ``resized`` instance being deleted: remove the
        source guest and its claim, then send the delete on to the instance's host."""
        rt, store = self._rt, self._rt.store
        assert message.confirm_request_id is not None and message.migration_id is not None
        migration = store.get_migration(message.migration_id)
        rt.notify("instance.resize_confirm.start", instance, self.host)
        try:
            self._driver.confirm_migration(instance, migration)
        except Exception as error:
            confirm = attrs.evolve(message, request_id=message.confirm_request_id)
            self.fail_step(
                confirm,
                instance,
                migration,
                error,
                "compute_confirm_resize",
                lambda: claims.release(store, migration.uuid),
            )
            rt.settle(message.request_id, Outcome.FAILED, error)
            return
        with store.atomic():
            rt.end_migration("confirmed_on_delete", migration)
            claims.release(store, migration.uuid)
            rt.notify("instance.resize_confirm.end", instance, self.host)
            rt.event(message.confirm_request_id, "compute_confirm_resize", self.host)
            rt.settle(message.confirm_request_id, Outcome.SUCCEEDED)
            store.push_message(
                attrs.evolve(message, host=instance.host, phase=messages.DeletePhase.DELETE)
            )


# --- module helpers ---------------------------------------------------------------------


def _request_open(store: Store, migration: Migration) -> bool:
    if migration.request_id is None:
        return True  # a record from before requests were tracked: as before
    request = store.get_request(migration.request_id)
    return request is None or request.outcome is Outcome.PENDING


def _open_migration(store: Store, instance: Instance) -> Migration | None:
    """The instance's move in progress: its migration context, else its last open record
    (an accepted abort not yet carried out included).

    A failed move keeps its record as the instance's context (so that the next move finds
    what it left, see the conductor); once that move's request has ended, the context is
    not the move in progress, and rolling it back again would release the instance's own
    claim.
    """
    if instance.migration_id is not None:
        current = store.get_migration(instance.migration_id)
        if not (current.status.is_failed and not _request_open(store, current)):
            return current
    for migration in reversed(store.list_migrations(instance.uuid)):
        if not migration.status.is_final:
            return migration
    return None


def _drop_move_state(instance: Instance) -> Instance:
    """After confirm or revert: no migration context, no stashed flavors or old_vm_state."""
    metadata = {k: v for k, v in instance.system_metadata.items() if k != "old_vm_state"}
    return attrs.evolve(
        instance, migration_id=None, old_flavor=None, new_flavor=None, system_metadata=metadata
    )


def _involved_hosts(store: Store, instance: Instance) -> set[str]:
    """The hosts whose services take part in recovering ``instance``."""
    hosts = {instance.host}
    if instance.migration_id is not None:
        migration = store.get_migration(instance.migration_id)
        hosts.update(h for h in (migration.source_compute, migration.dest_compute) if h)
    if instance.task_state is TaskState.DELETING:
        # A delete also destroys what earlier moves left behind, on their hosts: a crash
        # there (after a rolled-back move, say) is recovered by their restart.
        for earlier in store.list_migrations(instance.uuid):
            hosts.update(h for h in (earlier.source_compute, earlier.dest_compute) if h)
    return hosts


def reconcile(services: Iterable[ComputeService]) -> list[Instance]:
    """What an orchestrator runs on start-up: the start-up recovery of every running
    compute service given (a lost hop, or a process that died between hops, leaves an
    instance busy with no message on its way). Returns the instances recovered."""
    recovered: list[Instance] = []
    for service in services:
        recovered += service.init_host()
    return recovered
