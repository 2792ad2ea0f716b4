"""Facts about a move that more than one role needs, derived from the transition table.

A move that has not reached ``finish_resize`` can be undone: the guest comes back on the
source. Whether the destination must be visited first depends on how far the move got:
from ``resize_migrating`` on, the source guest is powered off and the disks are being
(or have been) copied to the destination, so the destination's compute removes what the
copy left there before the source's compute brings the guest back.
"""

from __future__ import annotations

from typing import Final

from coldmig_fsm.machine import MACHINE, Machine
from coldmig_fsm.records import Migration
from coldmig_fsm.states import TaskState

__all__ = ["guest_touched", "rollback_hosts"]

# The steps that run with the source guest powered off and disks on their way.
_COPY_STEPS: Final = ("resize_migrated", "finish_resize")


def guest_touched(task_state: TaskState | None, machine: Machine = MACHINE) -> bool:
    """Has a move in ``task_state`` powered off the source guest or copied disks?"""
    return any(
        task_state is source.task_state
        for trigger in _COPY_STEPS
        for source in machine.rule(trigger).sources
    )


def rollback_hosts(migration: Migration | None, task_state: TaskState | None) -> tuple[str, ...]:
    """The compute services that undo a move, in order: the destination (when the copy
    may have left something there), then the source. ``migration`` ``None``: the
    conductor never created a record, so there is nothing but the source's records."""
    if migration is None:
        return ()
    source, dest = migration.source_compute, migration.dest_compute
    if dest is not None and dest != source and guest_touched(task_state):
        return (dest, source)
    return (source,)
