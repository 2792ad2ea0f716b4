"""The API role: checks a request, makes the first compare-and-swap write, sends it on.

Every request goes through two halves, which a caller may also run separately to model
two API workers racing on one instance:

* :meth:`ComputeAPI.prepare` applies the guards in Nova's order (policy, instance exists,
  lock, vm_state/task_state, then the action's own checks) on the instance as read now,
  and returns a :class:`PreparedRequest`. It writes nothing.
* :meth:`ComputeAPI.submit` saves the new state with a compare-and-swap on the task_state
  that was read (and on the migration status for confirm/revert), records the instance
  action and queues the first message, all in one atomic block. When another request
  won in between, it raises ``UnexpectedTaskStateError`` (or, for confirm/revert,
  ``MigrationNotFoundByStatus``) and changes nothing.

Guard errors are raised synchronously; what happens later is the outcome of the request
(see :class:`coldmig_fsm.Operation`).
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Any, Final

import attrs

from coldmig_fsm import messages
from coldmig_fsm.exceptions import (
    CannotMigrateToSameHost,
    CannotResizeDisk,
    CannotResizeToSameFlavor,
    ComputeHostNotFound,
    FlavorDiskSmallerThanMinDisk,
    FlavorNotFound,
    InstanceInvalidState,
    InstanceNotFound,
    MigrationCancelled,
    MigrationNotFoundByStatus,
    PolicyNotAuthorized,
    QuotaError,
    UnexpectedMigrationStatusError,
)
from coldmig_fsm.guards import GuardContext, require_policy
from coldmig_fsm.machine import Fired
from coldmig_fsm.operations import OPERATIONS, Op
from coldmig_fsm.records import (
    Caller,
    Flavor,
    Instance,
    InstanceAction,
    Migration,
    Outcome,
    RequestRecord,
    replace,
)
from coldmig_fsm.roles.moves import rollback_hosts
from coldmig_fsm.roles.runtime import Runtime, moved
from coldmig_fsm.states import TaskState, VmState

__all__ = ["ACTION_NAMES", "ComputeAPI", "PreparedRequest"]

ACTION_NAMES: Final = {spec.op.value: spec.action for spec in OPERATIONS.values()}
"""Operation → Nova's instance-action name (from :data:`coldmig_fsm.operations.OPERATIONS`)."""


@attrs.frozen
class PreparedRequest:
    """A request that passed every guard on the instance as it was read.

    ``updated`` is the instance to save, in the state ``fired`` decided; the save expects
    the task_state it was read with. ``migration`` is the record the request moves on
    (confirm, revert, abort, the delete of a ``resized`` instance), to the status the
    machine's rule for ``trigger`` leads to.
    """

    trigger: str
    caller: Caller
    instance: Instance
    updated: Instance
    message: messages.Message | None
    fired: Fired
    migration: Migration | None = None
    request_id: str = attrs.field(factory=lambda: f"req-{uuidlib.uuid4()}")
    cancels: str | None = None
    """(abort before the conductor ran) the move request this one settles at once."""

    @property
    def read_task_state(self) -> TaskState | None:
        return self.instance.task_state


class ComputeAPI:
    """The API role."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    # -- lookups ------------------------------------------------------------------------

    def get_instance(self, uuid: str, caller: Caller) -> Instance:
        """The instance as ``caller`` may see it.

        Raises:
            InstanceNotFound: no such instance, deleted, or another project's (non-admin).
        """
        try:
            instance = self._rt.store.get_instance(uuid)
        except InstanceNotFound:
            raise InstanceNotFound(f"Instance {uuid} could not be found.") from None
        hidden = not caller.is_admin and caller.project_id != instance.project_id
        if hidden or instance.vm_state is VmState.DELETED:
            raise InstanceNotFound(f"Instance {uuid} could not be found.")
        return instance

    def _guarded(
        self, trigger: str, uuid: str, caller: Caller, **changes: Any
    ) -> tuple[Instance, Fired, Instance]:
        """Policy, existence, then the machine's guards (lock, states) for ``trigger``.

        Returns the instance as read, what the machine decided and the instance as it
        would be saved; nothing is written (the machine never mutates a record).
        """
        rule = self._rt.machine.rule(trigger)
        ctx = GuardContext(trigger, caller, None)
        for guard in rule.guards:
            if not guard.needs_instance:
                failure = guard(ctx)
                if failure is not None:
                    raise failure.to_exception()
        instance = self.get_instance(uuid, caller)
        fired = self._rt.fire(trigger, instance, caller=caller)
        return instance, fired, moved(instance, fired, **changes)

    # -- prepare ------------------------------------------------------------------------

    def prepare_migrate(
        self, uuid: str, caller: Caller, host: str | None = None
    ) -> PreparedRequest:
        instance, fired, updated = self._guarded("migrate", uuid, caller, progress=0)
        if host is not None:
            if self._rt.store.get_host(host) is None:
                raise ComputeHostNotFound(f"Compute host {host} could not be found.")
            if host == instance.host:
                raise CannotMigrateToSameHost(
                    f"Cannot migrate instance {instance.describe()} to its current host {host}"
                )
        return self._move(fired, instance, updated, caller, instance.flavor, host)

    def prepare_resize(self, uuid: str, flavor_id: str, caller: Caller) -> PreparedRequest:
        instance, fired, updated = self._guarded("resize", uuid, caller, progress=0)
        # Nova's order: zero disk, disabled flavor, same flavor, quota, image minimum disk.
        new = self._rt.store.get_flavor(flavor_id)
        if new is None:
            raise FlavorNotFound(f"Flavor {flavor_id} could not be found.")
        old = self._rt.flavor(instance.flavor)
        if new.root_gb == 0 and old.root_gb != 0:
            raise CannotResizeDisk(
                "Server disk was unable to be resized because: "
                "Resize to zero disk flavor is not allowed."
            )
        if new.disabled:
            raise FlavorNotFound(f"Flavor {flavor_id} could not be found.")
        if new.id == instance.flavor:
            raise CannotResizeToSameFlavor(
                f"Instance {instance.describe()} already has flavor {new.id}"
            )
        self._check_quota(instance, old, new)
        if new.root_gb < instance.image_min_disk_gb:
            raise FlavorDiskSmallerThanMinDisk(
                f"Flavor's disk is smaller than the minimum size specified in image "
                f"metadata. Flavor disk is {new.root_gb} GB, minimum size is "
                f"{instance.image_min_disk_gb} GB."
            )
        return self._move(fired, instance, updated, caller, new.id, None)

    def _move(
        self,
        fired: Fired,
        instance: Instance,
        updated: Instance,
        caller: Caller,
        flavor_id: str,
        host: str | None,
    ) -> PreparedRequest:
        prepared = PreparedRequest(fired.trigger, caller, instance, updated, None, fired)
        message = messages.MigrateServer(
            prepared.request_id, instance.uuid, flavor_id=flavor_id, target_host=host
        )
        return replace(prepared, message=message)

    def _check_quota(self, instance: Instance, old: Flavor, new: Flavor) -> None:
        project = self._rt.store.get_project(instance.project_id)
        if project is None:
            return
        grow_cores = max(0, new.vcpus - old.vcpus)
        grow_ram = max(0, new.ram_mb - old.ram_mb)
        # What the project's instances and their migrations hold: an aggregate the store
        # keeps with each allocation change (Nova counts it from placement's usages).
        held = self._rt.store.project_usage(instance.project_id)
        used_cores, used_ram = held.vcpus, held.ram_mb
        for limit, used, grow, what in (
            (project.cores, used_cores, grow_cores, "cores"),
            (project.ram_mb, used_ram, grow_ram, "ram"),
        ):
            if grow and limit is not None and used + grow > limit:
                raise QuotaError(
                    f"Quota exceeded for {what}: requested {grow}, but already used {used} "
                    f"of {limit} {what} (project {instance.project_id})"
                )

    def _finished_migration(self, instance: Instance, trigger: str) -> Migration:
        """The migration a ``resized`` instance waits on (its migration context), when
        ``trigger``'s rule accepts its status (``finished``)."""
        if instance.migration_id is not None:
            migration = self._rt.store.get_migration(instance.migration_id)
            if self._rt.machine.accepts(trigger, migration.status):
                return migration
        raise MigrationNotFoundByStatus(
            f"Instance {instance.describe()} has no migration in status finished"
        )

    def prepare_confirm_resize(self, uuid: str, caller: Caller) -> PreparedRequest:
        instance, fired, updated = self._guarded("confirm_resize", uuid, caller)
        migration = self._finished_migration(instance, "confirm_resize")
        prepared = PreparedRequest(
            "confirm_resize", caller, instance, updated, None, fired, migration
        )
        message = messages.ConfirmResize(
            prepared.request_id, instance.uuid, migration.source_compute, migration.id
        )
        return replace(prepared, message=message)

    def prepare_revert_resize(self, uuid: str, caller: Caller) -> PreparedRequest:
        instance, fired, updated = self._guarded("revert_resize", uuid, caller)
        migration = self._finished_migration(instance, "revert_resize")
        prepared = PreparedRequest(
            "revert_resize", caller, instance, updated, None, fired, migration
        )
        dest = migration.dest_compute
        assert dest is not None  # a finished migration has a destination
        message = messages.RevertResize(prepared.request_id, instance.uuid, dest, migration.id)
        return replace(prepared, message=message)

    def prepare_abort_migration(self, uuid: str, caller: Caller) -> PreparedRequest:
        """Cancel a move that has not reached ``finish_resize`` (not in Nova).

        Raises:
            InstanceInvalidState: no move in progress, or it is past the point of no
                return (``finish_resize`` started: revert is the way back).
        """
        instance, fired, same = self._guarded("abort_migration", uuid, caller)
        store = self._rt.store
        candidates = [m for m in store.list_migrations(instance.uuid) if not m.status.is_final]
        if not candidates:
            # The conductor has not run yet: nothing to undo but the task_state.
            move = self._pending_move(instance)
            undone = self._rt.fire("rolled_back", instance, caller=caller)
            return PreparedRequest(
                "abort_migration",
                caller,
                instance,
                moved(instance, undone),
                None,
                undone,
                cancels=move,
            )
        migration = candidates[-1]
        try:
            self._rt.machine.migration_after("abort_migration", migration.status, instance)
        except UnexpectedMigrationStatusError:
            raise InstanceInvalidState(
                f"Cannot 'abort_migration' instance {instance.describe()}: its move is "
                f"{migration.status.value}"
                + (", already being aborted" if migration.status.is_cancelling else "")
            ) from None
        prepared = PreparedRequest(
            "abort_migration", caller, instance, same, None, fired, migration
        )
        # The destination removes what the copy left there first, then the source.
        first = rollback_hosts(migration, instance.task_state)[0]
        message = messages.AbortMigration(
            prepared.request_id,
            instance.uuid,
            first,
            migration.id,
            on_source=first == migration.source_compute,
        )
        return replace(prepared, message=message)

    def _pending_move(self, instance: Instance) -> str | None:
        for request in reversed(self._rt.store.list_requests(instance.uuid)):
            if request.outcome is Outcome.PENDING and request.action in ("migrate", "resize"):
                return request.request_id
        return None

    def prepare_power(self, trigger: str, uuid: str, caller: Caller) -> PreparedRequest:
        """``stop``, ``start`` or ``delete``."""
        instance, fired, updated = self._guarded(trigger, uuid, caller)
        prepared = PreparedRequest(trigger, caller, instance, updated, None, fired)
        kinds: dict[str, type[messages.StopInstance | messages.StartInstance]] = {
            "stop": messages.StopInstance,
            "start": messages.StartInstance,
        }
        message: messages.Message
        if trigger == "delete":
            migration = self._deleting_resized(instance)
            if migration is None:
                message = messages.TerminateInstance(
                    prepared.request_id, instance.uuid, instance.host
                )
            else:  # confirmed first, on the move's source
                message = messages.TerminateInstance(
                    prepared.request_id,
                    instance.uuid,
                    migration.source_compute,
                    confirm_request_id=f"req-{uuidlib.uuid4()}",
                    migration_id=migration.id,
                    phase=messages.DeletePhase.CONFIRM,
                )
            prepared = replace(prepared, migration=migration)
        else:
            message = kinds[trigger](prepared.request_id, instance.uuid, instance.host)
        return replace(prepared, message=message)

    def _deleting_resized(self, instance: Instance) -> Migration | None:
        """The migration a delete confirms first: the instance waits in ``resized``."""
        if instance.vm_state is not VmState.RESIZED or instance.task_state is not None:
            return None
        try:
            return self._finished_migration(instance, "delete")
        except MigrationNotFoundByStatus:
            return None

    # -- submit -------------------------------------------------------------------------

    def submit(self, prepared: PreparedRequest) -> str:
        """Save, record and send ``prepared`` atomically; return its request id.

        Raises:
            UnexpectedTaskStateError: the instance's task_state changed since it was read.
            MigrationNotFoundByStatus: (confirm/revert) the migration left ``finished``.
        """
        store = self._rt.store
        instance = prepared.instance
        with store.atomic():
            self._rt.save(prepared.fired, prepared.updated)
            migration = prepared.migration
            if migration is not None:
                try:
                    self._rt.save_migration(prepared.fired, migration)
                except UnexpectedMigrationStatusError:
                    if prepared.trigger == "abort_migration":
                        raise InstanceInvalidState(
                            f"Cannot 'abort_migration' instance {instance.describe()}: the "
                            "move went on meanwhile"
                        ) from None
                    raise MigrationNotFoundByStatus(
                        f"Instance {instance.describe()} has no migration in status finished "
                        "(a concurrent request took it)"
                    ) from None
            message = prepared.message
            if isinstance(message, messages.TerminateInstance) and message.confirm_request_id:
                self._record(
                    message.confirm_request_id, "confirm_resize", instance, prepared.caller
                )
            self._record(prepared.request_id, prepared.trigger, instance, prepared.caller)
            if prepared.message is not None:
                store.push_message(prepared.message)
            if prepared.cancels is not None:
                # Nothing had happened yet: the abort is complete as it is saved.
                cancelled = MigrationCancelled(
                    f"Migration of instance {instance.describe()} cancelled before it started"
                )
                self._rt.event(prepared.request_id, "api_abort_migration", None)
                self._rt.settle(prepared.cancels, Outcome.ROLLED_BACK, cancelled)
                self._rt.settle(prepared.request_id, Outcome.SUCCEEDED)
        return prepared.request_id

    def _record(self, request_id: str, trigger: str, instance: Instance, caller: Caller) -> None:
        action = ACTION_NAMES[trigger]
        self._rt.store.add_action(
            InstanceAction(
                request_id=request_id,
                instance_uuid=instance.uuid,
                action=action,
                project_id=caller.project_id or instance.project_id,
                user_id=caller.user_id,
                start_time=self._rt.clock.now(),
            )
        )
        self._rt.open_request(RequestRecord(request_id, action, instance.uuid))

    # -- one-call entry points ----------------------------------------------------------

    def prepare(
        self, op: Op | str, uuid: str, caller: Caller, argument: str | None = None
    ) -> PreparedRequest:
        """Run ``op``'s guards and build its request without writing anything.

        ``argument`` is what :data:`~coldmig_fsm.operations.OPERATIONS` says ``op`` takes
        (a target host, a flavor). ``lock``/``unlock`` have nothing to prepare: they are
        one write (:meth:`request`).

        Raises:
            ColdmigError: the guard error the request would raise.
            ValueError: ``op`` is not an operation that changes the machine state, or a
                required argument is missing.
        """
        spec = OPERATIONS[Op(op)]
        if not spec.changes_state:
            raise ValueError(f"{spec.op} is a single write: use request()")
        if spec.required and argument is None:
            raise ValueError(f"{spec.op} needs its {spec.argument}")
        if spec.op is Op.MIGRATE:
            return self.prepare_migrate(uuid, caller, argument)
        if spec.op is Op.RESIZE:
            assert argument is not None  # checked above: required
            return self.prepare_resize(uuid, argument, caller)
        if spec.op is Op.CONFIRM_RESIZE:
            return self.prepare_confirm_resize(uuid, caller)
        if spec.op is Op.REVERT_RESIZE:
            return self.prepare_revert_resize(uuid, caller)
        if spec.op is Op.ABORT_MIGRATION:
            return self.prepare_abort_migration(uuid, caller)
        return self.prepare_power(spec.op.value, uuid, caller)

    def request(self, op: Op | str, uuid: str, caller: Caller, argument: str | None = None) -> str:
        """Ask for ``op`` on the instance; returns the request id.

        Raises:
            ColdmigError: a guard refused (nothing changed).
            ValueError: an unknown operation or a missing required argument.
        """
        spec = OPERATIONS[Op(op)]
        if not spec.changes_state:
            return self._set_lock(uuid, caller, locked=spec.op is Op.LOCK)
        return self.submit(self.prepare(spec.op, uuid, caller, argument))

    def migrate(self, uuid: str, caller: Caller, host: str | None = None) -> str:
        return self.submit(self.prepare_migrate(uuid, caller, host))

    def resize(self, uuid: str, flavor_id: str, caller: Caller) -> str:
        return self.submit(self.prepare_resize(uuid, flavor_id, caller))

    def confirm_resize(self, uuid: str, caller: Caller) -> str:
        return self.submit(self.prepare_confirm_resize(uuid, caller))

    def revert_resize(self, uuid: str, caller: Caller) -> str:
        return self.submit(self.prepare_revert_resize(uuid, caller))

    def abort_migration(self, uuid: str, caller: Caller) -> str:
        return self.submit(self.prepare_abort_migration(uuid, caller))

    def stop(self, uuid: str, caller: Caller) -> str:
        return self.submit(self.prepare_power("stop", uuid, caller))

    def start(self, uuid: str, caller: Caller) -> str:
        return self.submit(self.prepare_power("start", uuid, caller))

    def delete(self, uuid: str, caller: Caller) -> str:
        return self.submit(self.prepare_power("delete", uuid, caller))

    def lock(self, uuid: str, caller: Caller) -> str:
        """Lock the instance (owner or admin); records who locked it."""
        return self._set_lock(uuid, caller, locked=True)

    def unlock(self, uuid: str, caller: Caller) -> str:
        """Unlock; only an admin may unlock what an admin locked."""
        return self._set_lock(uuid, caller, locked=False)

    def _set_lock(self, uuid: str, caller: Caller, *, locked: bool) -> str:
        trigger = Op.LOCK if locked else Op.UNLOCK
        policy = require_policy(OPERATIONS[trigger].policy)
        failure = policy(GuardContext(trigger, caller, None))
        if failure is not None:
            raise failure.to_exception()
        instance = self.get_instance(uuid, caller)
        if not locked and instance.locked_by == "admin" and not caller.is_admin:
            raise PolicyNotAuthorized(
                f"Instance {instance.describe()} was locked by an admin; only an admin "
                "may unlock it"
            )
        updated = replace(instance, locked=locked, locked_by=caller.role if locked else None)
        request_id = f"req-{uuidlib.uuid4()}"
        with self._rt.store.atomic():
            self._rt.store.save_instance(updated)
            self._record(request_id, trigger, instance, caller)
            self._rt.event(request_id, f"api_{trigger}", None)
            self._rt.notify(f"instance.{trigger}", updated, updated.host)
            self._rt.settle(request_id, Outcome.SUCCEEDED)
        return request_id
