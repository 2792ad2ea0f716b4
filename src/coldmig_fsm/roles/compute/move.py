"""The move's hops: ``prep_resize`` (destination), ``resize_instance`` (source) and
``finish_resize`` (destination), up to ``resized``."""

from __future__ import annotations

from coldmig_fsm import messages
from coldmig_fsm.drivers.base import DiskInfo
from coldmig_fsm.exceptions import (
    ColdmigError,
    ComputeResourcesUnavailable,
    RequestRefused,
    UnableToMigrateToSelf,
)
from coldmig_fsm.machine import Role
from coldmig_fsm.records import Instance, Migration, Outcome, replace
from coldmig_fsm.roles import claims
from coldmig_fsm.roles.compute.hops import Failure, Hop, HopRunner, Step, release_source
from coldmig_fsm.roles.runtime import moved
from coldmig_fsm.states import VmState

__all__ = ["FINISH_RESIZE", "RESIZE_INSTANCE", "MoveHops"]


def _copy_disks(step: Step) -> DiskInfo:
    """migrate_disk_and_power_off"""
    migration = step.move
    dest = migration.dest_compute
    assert dest is not None  # prep_resize filled it in
    config = step.runtime.config
    return step.driver.migrate_disk_and_power_off(
        step.instance,
        dest,
        step.runtime.flavor(migration.new_flavor),
        config.shutdown_timeout,
        config.shutdown_retry_interval,
    )


def _at_dest(step: Step, instance: Instance) -> Instance:
    dest = step.move.dest_compute
    assert dest is not None  # prep_resize filled it in
    return replace(instance, host=dest, node=dest)


def _finish_on_dest(step: Step, instance: Instance) -> messages.Message:
    migration = step.move
    info: DiskInfo = step.result
    assert migration.dest_compute is not None
    return messages.FinishResize(
        step.message.request_id,
        instance.uuid,
        migration.dest_compute,
        migration.id,
        disks=info.disks,
        bytes_copied=info.bytes_copied,
    )


def _claims_back_on_source(step: Step) -> None:
    """Drop the destination claim and give the source claim back to the instance."""
    claims.back_on_source(step.runtime.store, step.instance.uuid, step.move.uuid)


RESIZE_INSTANCE = Hop(
    name="resize_instance",
    side=Role.SOURCE,
    operations=("migrate", "resize"),
    trigger="resize_migrated",
    begin="resize_instance",
    event="compute_resize_instance",
    start="instance.resize.start",
    end="instance.resize.end",
    effect=_copy_disks,
    record=_at_dest,
    then=_finish_on_dest,
    on_failure=Failure.ROLL_BACK_IF_INTACT,
    failure_claims=_claims_back_on_source,
)
"""Source: power off and copy the disks to the destination; the instance moves there."""


def _new_flavor(step: Step, instance: Instance) -> Instance:
    # Nova stashes the old flavor only now (a move failed earlier has none).
    migration = step.move
    return replace(instance, flavor=migration.new_flavor, old_flavor=migration.old_flavor)


def _define_guest(step: Step) -> None:
    """finish_migration"""
    migration = step.move
    step.driver.finish_migration(
        step.instance,
        migration,
        DiskInfo(step.message.disks, step.message.bytes_copied),
        step.runtime.flavor(migration.new_flavor),
        migration.old_flavor != migration.new_flavor,
        step.instance.old_vm_state is not VmState.STOPPED,
    )


FINISH_RESIZE = Hop(
    name="finish_resize",
    side=Role.DEST,
    operations=("migrate", "resize"),
    trigger="resize_finished",
    begin="finish_resize",
    begin_record=_new_flavor,
    event="compute_finish_resize",
    start="instance.resize_finish.start",
    end="instance.resize_finish.end",
    effect=_define_guest,
    refresh_power=True,
    # As a failed finish_migration in Nova: the source claim goes, the destination keeps
    # its claim, and the instance's flavor goes back to the old one (the stashed
    # old_flavor and new_flavor stay set).
    failure_claims=release_source,
    failure_changes=lambda step: {"flavor": step.move.old_flavor},
)
"""Destination: apply the new flavor and define the guest here; the instance is
``resized``."""


class MoveHops(HopRunner):
    """The move's hops of one compute service."""

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
                # The fit and the claim in one compare-and-swap on the host's generation:
                # two conductors' moves can never oversubscribe this host.
                host = store.get_host(self.host)
                if host is None or not claims.try_claim(
                    store, host, instance.uuid, new_flavor.resources
                ):
                    raise ComputeResourcesUnavailable(
                        f"Insufficient compute resources on {self.host} for flavor {new_flavor.id}"
                    )
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

    def resize_instance(self, message: messages.ResizeInstance) -> None:
        """Power off and copy the disks to the destination (:data:`RESIZE_INSTANCE`)."""
        self.run_hop(RESIZE_INSTANCE, message)

    def finish_resize(self, message: messages.FinishResize) -> None:
        """Define the guest here with the new flavor (:data:`FINISH_RESIZE`)."""
        self.run_hop(FINISH_RESIZE, message)
