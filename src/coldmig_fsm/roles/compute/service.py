"""The compute role: one :class:`ComputeService` per host.

Its hops are declared by job, each module with its hops and their handlers, all run by
the hop runner (:mod:`~coldmig_fsm.roles.compute.hops`):

* :mod:`~coldmig_fsm.roles.compute.move`: ``prep_resize``, ``resize_instance``,
  ``finish_resize``;
* :mod:`~coldmig_fsm.roles.compute.resize_end`: ``confirm_resize``, ``revert_resize``,
  ``finish_revert_resize``;
* :mod:`~coldmig_fsm.roles.compute.power`: ``stop_instance``, ``start_instance``, the
  phases of ``terminate_instance``;
* :mod:`~coldmig_fsm.roles.compute.recovery`: ``abort_migration``, ``roll_back_move``,
  ``init_host``, the periodic tasks, :func:`reconcile`.

Failure of a driver call ends in the state the spec's failure table gives (see
``docs/failures.md``): a guest left intact (``InstanceFaultRollback``) rolls the move
back where the hop says so; anything else puts the instance in ``error`` with a fault,
the notification ``compute.exception``, the migration in ``error`` and the claims where
the table says.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from coldmig_fsm import messages
from coldmig_fsm.drivers.base import HypervisorDriver
from coldmig_fsm.roles.compute.hops import Hop
from coldmig_fsm.roles.compute.move import FINISH_RESIZE, PREP_RESIZE, RESIZE_INSTANCE, MoveHops
from coldmig_fsm.roles.compute.power import START_INSTANCE, STOP_INSTANCE, PowerAndDelete
from coldmig_fsm.roles.compute.recovery import Recovery, reconcile
from coldmig_fsm.roles.compute.resize_end import (
    CONFIRM_RESIZE,
    FINISH_REVERT_RESIZE,
    REVERT_RESIZE,
    ResizeEndHops,
)
from coldmig_fsm.roles.runtime import Runtime

__all__ = ["HOPS", "ComputeService", "reconcile"]

HOPS: tuple[Hop, ...] = (
    PREP_RESIZE,
    RESIZE_INSTANCE,
    FINISH_RESIZE,
    CONFIRM_RESIZE,
    REVERT_RESIZE,
    FINISH_REVERT_RESIZE,
    STOP_INSTANCE,
    START_INSTANCE,
)
"""Every declared hop, a move's in the order it meets them (the failure table's driver
rows are those of the hops an operation's path runs: ``Hop.operations``)."""


class ComputeService(MoveHops, ResizeEndHops, PowerAndDelete, Recovery):
    """The compute service of one host.

    Args:
        runtime: the shared store, clock, configuration and machine.
        driver: this host's hypervisor driver.

    It calls only its own host's driver: what must happen on another host is a message
    to that host's service.
    """

    def __init__(self, runtime: Runtime, driver: HypervisorDriver) -> None:
        super().__init__(runtime, driver)
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

    def handle(self, message: messages.Message) -> None:
        handler = self._handlers.get(type(message))
        if handler is None:
            raise TypeError(f"compute services do not handle {message.kind}")
        handler(message)
