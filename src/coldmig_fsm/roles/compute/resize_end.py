"""The end of a move: ``confirm_resize`` (source), ``revert_resize`` (destination) and
``finish_revert_resize`` (source)."""

from __future__ import annotations

from coldmig_fsm import messages
from coldmig_fsm.machine import Role
from coldmig_fsm.records import Instance, Outcome, replace
from coldmig_fsm.roles import claims
from coldmig_fsm.roles.compute.hops import Hop, HopRunner, Step, drop_move_state, release_source
from coldmig_fsm.roles.runtime import moved
from coldmig_fsm.states import PowerState, VmState

__all__ = ["CONFIRM_RESIZE", "FINISH_REVERT_RESIZE", "REVERT_RESIZE", "ResizeEndHops"]


def _remove_source_guest(step: Step) -> None:
    """confirm_migration"""
    step.driver.confirm_migration(step.instance, step.move)


def _running_or_not(step: Step) -> str:
    running = step.instance.power_state is not PowerState.SHUTDOWN
    return "confirmed_running" if running else "confirmed_shutdown"


CONFIRM_RESIZE = Hop(
    name="confirm_resize",
    side=Role.SOURCE,
    operations=("confirm",),
    trigger="confirmed_running",
    choose=_running_or_not,
    event="compute_confirm_resize",
    start="instance.resize_confirm.start",
    end="instance.resize_confirm.end",
    effect=_remove_source_guest,
    record=lambda _step, instance: drop_move_state(instance),
    claims=release_source,
    failure_claims=release_source,
    failure_changes=lambda _step: {"migration_id": None, "old_flavor": None, "new_flavor": None},
)
"""Source: remove the source guest and release the source claim."""


def _destroy_new_guest(step: Step) -> None:
    """destroy"""
    step.driver.destroy(step.instance, destroy_disks=True)


def _release_here(step: Step) -> None:
    claims.release(step.runtime.store, step.instance.uuid, step.service.host)


def _finish_on_source(step: Step, instance: Instance) -> messages.Message:
    migration = step.move
    return messages.FinishRevertResize(
        step.message.request_id, instance.uuid, migration.source_compute, migration.id
    )


REVERT_RESIZE = Hop(
    name="revert_resize",
    side=Role.DEST,
    operations=("revert",),
    trigger="revert_resize_on_dest",
    event="compute_revert_resize",
    start="instance.exists",
    effect=_destroy_new_guest,
    claims=_release_here,
    then=_finish_on_source,
)
"""Destination: destroy the new guest and release this host's claim."""


def _restore_guest(step: Step) -> None:
    """finish_revert_migration"""
    power_on = step.instance.old_vm_state is not VmState.STOPPED
    step.driver.finish_revert_migration(step.instance, step.move, power_on)


def _reverted(step: Step) -> str:
    stopped = step.instance.old_vm_state is VmState.STOPPED
    return "reverted_stopping" if stopped else "reverted_active"


def _as_restored(step: Step) -> dict[str, object]:
    return {
        "flavor": step.instance.flavor,
        "host": step.instance.host,
        "node": step.instance.node,
        "old_flavor": None,
        "new_flavor": None,
    }


FINISH_REVERT_RESIZE = Hop(
    name="finish_revert_resize",
    side=Role.SOURCE,
    operations=("revert",),
    trigger="reverted_active",
    choose=_reverted,
    event="compute_finish_revert_resize",
    start="instance.resize_revert.start",
    end="instance.resize_revert.end",
    effect=_restore_guest,
    refresh_power=True,
    failure_changes=_as_restored,
)
"""Source: bring the original guest back, with the old flavor and this host. Its
handler saves the record and the claim back here before the driver call (so that a crash
in it leaves an instance whose host is where its claim is), and a guest that was stopped
goes through the ordinary stop path after it, as Nova does."""


class ResizeEndHops(HopRunner):
    """Confirm and revert hops of one compute service."""

    def confirm_resize(self, message: messages.ConfirmResize) -> None:
        """Remove the source guest and release the source claim (:data:`CONFIRM_RESIZE`)."""
        self.run_hop(CONFIRM_RESIZE, message)

    def revert_resize(self, message: messages.RevertResize) -> None:
        """Destroy the guest here and release this host's claim (:data:`REVERT_RESIZE`)."""
        self.run_hop(REVERT_RESIZE, message)

    def finish_revert_resize(self, message: messages.FinishRevertResize) -> None:
        """Bring the original guest back here, with the old flavor and this host."""
        rt, store = self._rt, self._rt.store
        migration = store.get_migration(message.migration_id)
        instance = store.get_instance(message.instance_uuid)
        hop = FINISH_REVERT_RESIZE
        power_on = instance.old_vm_state is not VmState.STOPPED
        step = Step(self, message, instance, migration)
        trigger = hop.trigger if hop.choose is None else hop.choose(step)
        if self._refused(message, trigger, instance):
            return
        assert hop.start is not None and hop.end is not None
        rt.notify(hop.start, instance, self.host)
        restored = replace(
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
        step.instance = restored
        try:
            effect = hop.effect
            assert effect is not None
            fired = rt.fire(trigger, restored, effect=lambda: effect(step), migration=migration)
        except Exception as error:
            assert hop.failure_changes is not None
            changes = hop.failure_changes(step)
            self.fail_step(message, instance, migration, error, hop.event, changes=changes)
            return
        with store.atomic():
            reverted = drop_move_state(moved(restored, fired))
            reverted = replace(reverted, power_state=self._power_state(reverted))
            rt.save(fired, reverted, migration)
            rt.event(message.request_id, hop.event, self.host)
        if not power_on:
            # Nova stops a reverted guest that was stopped through the ordinary stop path.
            if not self._power_off(message, reverted, migration):
                return
            reverted = store.get_instance(instance.uuid)
        with store.atomic():
            rt.notify(hop.end, reverted, self.host)
            rt.settle(message.request_id, Outcome.SUCCEEDED)
