"""Power actions and delete: ``stop_instance``, ``start_instance`` and the phases of
``terminate_instance`` (each on the host whose guest it touches)."""

from __future__ import annotations

from collections.abc import Callable

from coldmig_fsm import messages
from coldmig_fsm.exceptions import InstanceNotFound
from coldmig_fsm.machine import Role
from coldmig_fsm.records import Instance, Outcome, replace
from coldmig_fsm.roles import claims
from coldmig_fsm.roles.compute.hops import Failure, Hop, HopRunner, Step, drop_move_state
from coldmig_fsm.roles.moves import guest_hosts
from coldmig_fsm.roles.runtime import moved
from coldmig_fsm.states import PowerState, VmState

__all__ = ["START_INSTANCE", "STOP_INSTANCE", "PowerAndDelete"]


def _power_on(step: Step) -> None:
    """power_on"""
    step.driver.power_on(step.instance)


START_INSTANCE = Hop(
    name="start_instance",
    side=Role.COMPUTE,
    trigger="powered_on",
    event="compute_start_instance",
    start="instance.power_on.start",
    end="instance.power_on.end",
    effect=_power_on,
    refresh_power=True,
    on_failure=Failure.REVERT_POWER,
)
"""The instance's host: power the guest on."""


def _power_off(step: Step) -> None:
    """power_off"""
    config = step.runtime.config
    step.driver.power_off(step.instance, config.shutdown_timeout, config.shutdown_retry_interval)


def _end_of_revert(step: Step, stopped: Instance) -> None:
    """(start-up recovery) the stop that ends a ``resized`` instance's revert ends the
    revert too; the request is then settled."""
    if step.instance.vm_state is VmState.RESIZED:
        step.runtime.notify("instance.resize_revert.end", stopped, step.service.host)


STOP_INSTANCE = Hop(
    name="stop_instance",
    side=Role.COMPUTE,
    trigger="powered_off",
    event="compute_stop_instance",
    start="instance.power_off.start",
    end="instance.power_off.end",
    effect=_power_off,
    refresh_power=True,
    then=_end_of_revert,
    on_failure=Failure.REVERT_POWER,
)
"""The instance's host: power the guest off."""


class PowerAndDelete(HopRunner):
    """Power and delete hops of one compute service."""

    def stop_instance(self, message: messages.StopInstance) -> None:
        """Power the guest off (:data:`STOP_INSTANCE`)."""
        self.run_hop(STOP_INSTANCE, message)

    def start_instance(self, message: messages.StartInstance) -> None:
        """Power the guest on (:data:`START_INSTANCE`)."""
        self.run_hop(START_INSTANCE, message)

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
            hosts = guest_hosts(instance, store.list_migrations(instance.uuid), rt.machine)
            remaining = tuple(sorted(hosts - {self.host}))
        else:
            remaining = message.clean
        if remaining:
            store.push_message(
                replace(
                    message,
                    host=remaining[0],
                    phase=messages.DeletePhase.CLEAN,
                    clean=remaining[1:],
                )
            )
        elif phase is messages.DeletePhase.CLEAN:
            store.push_message(
                replace(message, host=instance.host, phase=messages.DeletePhase.FINISH)
            )
        else:
            self._finish_delete(message, instance)

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
            gone = replace(
                drop_move_state(moved(instance, fired)),
                power_state=PowerState.NOSTATE,
                old_flavor=None if confirmed else instance.old_flavor,
                new_flavor=None if confirmed else instance.new_flavor,
            )
            rt.save(fired, gone)
            rt.notify("instance.shutdown.end", gone, self.host)
            rt.notify("instance.delete.end", gone, self.host)
            rt.event(message.request_id, "compute_terminate_instance", self.host)
            self._settle_recovery(message, Outcome.SUCCEEDED, None)
            # Whatever else was still under way on this instance ends with it, also a
            # request whose message is still queued (for a host that is down, say): when
            # it is delivered, its hop finds the instance deleted and changes nothing.
            gone_error = InstanceNotFound(f"Instance {instance.uuid} was deleted meanwhile.")
            for request in store.list_requests(instance.uuid):
                if request.outcome is Outcome.PENDING:
                    rt.event(
                        request.request_id, "compute_terminate_instance", self.host, gone_error
                    )
                    rt.settle(request.request_id, Outcome.FAILED, gone_error)

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
            confirm = replace(message, request_id=message.confirm_request_id)
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
            # The move is over: no migration context or stashed flavors stay behind for a
            # later step (a failed delete, a recovery) to take for a move in progress.
            rt.keep(instance, drop_move_state(instance))
            rt.notify("instance.resize_confirm.end", instance, self.host)
            rt.event(message.confirm_request_id, "compute_confirm_resize", self.host)
            rt.settle(message.confirm_request_id, Outcome.SUCCEEDED)
            store.push_message(
                replace(message, host=instance.host, phase=messages.DeletePhase.DELETE)
            )
