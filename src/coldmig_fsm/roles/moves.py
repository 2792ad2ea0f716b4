"""Facts about a move that more than one role needs, derived from the transition table.

A move that has not reached ``finish_resize`` can be undone: the guest comes back on the
source. Whether the destination must be visited first depends on how far the move got:
from ``resize_migrating`` on, the source guest is powered off and the disks are being
(or have been) copied to the destination, so the destination's compute removes what the
copy left there before the source's compute brings the guest back.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from coldmig_fsm.machine import MACHINE, Machine
from coldmig_fsm.records import Instance, Migration
from coldmig_fsm.states import MigrationStatus, TaskState

__all__ = [
    "LEAVING_STATUSES",
    "guest_hosts",
    "guest_touched",
    "may_leave_guest",
    "rollback_hosts",
]

LEAVING_STATUSES: Final = tuple(
    s for s in MigrationStatus if not s.is_final or s.is_failed or s is MigrationStatus.REVERTED
)
"""The statuses in which a move may still have left a guest or disks on its hosts (see
:func:`may_leave_guest`): what a host's start-up recovery looks up by its index."""

# The steps that run with the source guest powered off and disks on their way.
_COPY_STEPS: Final = ("resize_migrated", "finish_resize")


def guest_touched(task_state: TaskState | None, machine: Machine = MACHINE) -> bool:
    """Has a move in ``task_state`` powered off the source guest or copied disks?"""
    return any(
        task_state is source.task_state
        for trigger in _COPY_STEPS
        for source in machine.rule(trigger).sources
    )


def may_leave_guest(migration: Migration, instance: Instance, machine: Machine = MACHINE) -> bool:
    """May ``migration`` have left a guest or disks of ``instance`` on its hosts?

    Yes while it is open or after it failed; no once it was confirmed, cancelled or
    completely reverted. A ``reverted`` move that is still the instance's context may have
    been reverted on the destination only (its source half, ``reverted_active``, not done
    yet). Invariant: a yes implies the status is in :data:`LEAVING_STATUSES`.
    """
    status = migration.status
    if not status.is_final or status.is_failed:
        return True
    current = migration.id == instance.migration_id
    return current and machine.accepts("reverted_active", status)


def guest_hosts(
    instance: Instance, migrations: Iterable[Migration], machine: Machine = MACHINE
) -> set[str]:
    """Every host that may hold a guest or disks of ``instance``: its own, and both hosts
    of each of its ``migrations`` that :func:`may_leave_guest`. A delete visits exactly
    these hosts, and so a start-up recovery of the delete waits for exactly these."""
    hosts = {instance.host}
    for migration in migrations:
        if may_leave_guest(migration, instance, machine):
            hosts.update(h for h in (migration.source_compute, migration.dest_compute) if h)
    return hosts


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
