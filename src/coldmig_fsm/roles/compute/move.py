"""The move's hops: ``prep_resize`` (destination), ``resize_instance`` (source) and
``finish_resize`` (destination), up to ``resized``."""

from __future__ import annotations

from coldmig_fsm import messages
from coldmig_fsm.drivers.base import DiskInfo
from coldmig_fsm.exceptions import (
    ColdmigError,
    ComputeResourcesUnavailable,
    UnableToMigrateToSelf,
)
from coldmig_fsm.machine import Role
from coldmig_fsm.records import Instance, replace
from coldmig_fsm.roles import claims
from coldmig_fsm.roles.compute.hops import Failure, Hop, HopRunner, Step, release_source
from coldmig_fsm.states import VmState
from coldmig_fsm.stores.base import GenerationConflict

__all__ = ["FINISH_RESIZE", "PREP_RESIZE", "RESIZE_INSTANCE", "MoveHops"]


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


def _claim_here(step: Step) -> None:
    message, instance = step.message, step.instance
    store, here = step.runtime.store, step.service.host
    if (
        message.host == instance.host
        and message.flavor_id == instance.flavor
        and not step.driver.capabilities.supports_migrate_to_same_host
    ):
        raise UnableToMigrateToSelf(
            f"Unable to migrate instance {instance.uuid} to current host ({here})."
        )
    # The fit and the claim in one compare-and-swap on the host's generation: two
    # conductors' moves can never oversubscribe this host.
    flavor = step.runtime.flavor(step.message.flavor_id)
    host = store.get_host(here)
    try:
        claimed = host is not None and claims.try_claim(
            store, host, step.instance.uuid, flavor.resources
        )
    except GenerationConflict as storm:
        # Other writers kept changing this host's allocations: as a host without room,
        # the move goes on to the next alternate (nothing was claimed here).
        raise ComputeResourcesUnavailable(
            f"Could not claim on {here} for flavor {flavor.id}: its allocations changed "
            f"under {claims.MAX_CONFLICTS} claims in a row"
        ) from storm
    if not claimed:
        raise ComputeResourcesUnavailable(
            f"Insufficient compute resources on {here} for flavor {flavor.id}"
        )


def _prepared(step: Step, instance: Instance) -> Instance:
    metadata = {**instance.system_metadata, "old_vm_state": step.instance.vm_state.value}
    return replace(
        instance,
        system_metadata=metadata,
        new_flavor=step.message.flavor_id,
        migration_id=step.move.id,
    )


def _resize_on_source(step: Step, instance: Instance) -> messages.Message:
    return messages.ResizeInstance(
        step.message.request_id, instance.uuid, instance.host, step.move.id
    )


def _reschedule(step: Step, error: ColdmigError) -> None:
    """This host failed: the request goes back to the conductor for the next alternate
    (a fresh migration record), the claims back to the instance."""
    rt, store, message = step.runtime, step.runtime.store, step.message
    with store.atomic():
        fired = rt.fire("reschedule", step.instance, migration=step.move)
        rt.save_migration(fired, step.move)
        claims.move_allocations(store, step.move.uuid, step.instance.uuid)
        rt.event(message.request_id, "compute_prep_resize", step.service.host, error)
        store.push_message(
            messages.MigrateServer(
                message.request_id,
                step.instance.uuid,
                flavor_id=message.flavor_id,
                hosts=message.alternates,
                attempt=message.attempt + 1,
            )
        )


PREP_RESIZE = Hop(
    name="prep_resize",
    side=Role.DEST,
    trigger="prep_resize",
    event="compute_prep_resize",
    announce=("instance.exists",),
    start="instance.resize_prep.start",
    end="instance.resize_prep.end",
    claims=_claim_here,
    record=_prepared,
    migration_record=lambda step: {"dest_compute": step.service.host},
    then=_resize_on_source,
    on_failure=Failure.COMPENSATE,
    compensate=_reschedule,
    compensate_on=(ComputeResourcesUnavailable, UnableToMigrateToSelf),
)
"""Destination: claim the new flavor here, stash ``old_vm_state``, set the flavors; a
host without room (or a move to itself the driver cannot do) reschedules."""


class MoveHops(HopRunner):
    """The move's hops of one compute service."""

    def prep_resize(self, message: messages.PrepResize) -> None:
        """Claim the new flavor here (:data:`PREP_RESIZE`)."""
        self.run_hop(PREP_RESIZE, message)

    def resize_instance(self, message: messages.ResizeInstance) -> None:
        """Power off and copy the disks to the destination (:data:`RESIZE_INSTANCE`)."""
        self.run_hop(RESIZE_INSTANCE, message)

    def finish_resize(self, message: messages.FinishResize) -> None:
        """Define the guest here with the new flavor (:data:`FINISH_RESIZE`)."""
        self.run_hop(FINISH_RESIZE, message)
