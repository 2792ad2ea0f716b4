"""The spec's invariants, checked on a whole cloud: pure functions returning violations.

:func:`violations` returns a list of readable sentences (empty when everything holds). It
is what the tests assert after every fault, what the stateful and exhaustive explorers
check after every step, and what an operator can run on a live store.

Invariants (from the spec):

1. ``(vm_state, task_state)`` is a state of the machine.
2. Claims: a live instance's resources are claimed on exactly one host, except while a
   move is under way or ``resized`` (then on its source and its destination, each at most
   once) or after a failed step left it in ``error`` (then at most those two, as the
   step left them, until it is deleted); nothing is claimed for a deleted instance; a
   migration that has ended holds nothing, unless it ended in ``error`` (what the failed
   step left is kept, as Nova keeps it, until the instance is deleted, and counts as a
   move under way); the instance's own host is always one of the claimed hosts.
3. At most one host runs the guest; an instance that is ``active`` with no task runs on
   its own host; a ``stopped`` instance's guest is not running anywhere; a deleted
   instance's guest is defined nowhere (added by the verification kit).
4. A migration is ``finished`` only while its instance is ``resized``, and at most one
   migration per instance is open.
5. Every request was recorded as an instance action, and none is left pending while the
   cloud is idle.
6. A migration in progress (``pre-migrating``, ``migrating``, ``post-migrating``,
   ``reverting``) belongs to a busy instance (task_state not null); a ``confirming`` one
   to a ``resized`` instance (added by the verification kit: a step that fires in the
   wrong state leaves exactly this behind).
7. A move's request tells how the move ended (the spec: a result tells success, rolled
   back and error apart): once settled, the request of a ``cancelled`` migration is
   ``rolled_back`` (or ``failed`` with ``InstanceNotFound`` or ``MoveInterrupted`` when
   the instance was deleted during the move); a move request that ``succeeded`` has a
   migration that reached ``finished`` (it may be confirmed, reverted, or in ``error``
   after a failed confirm or revert since), and one that ``rolled_back`` has a migration
   that did not (added by the verification kit: the mutants of issue 14's campaign that
   settled a move's request by the wrong path broke nothing else).
8. A running guest is claimed on its host: the instance, or one of its migrations, holds
   an allocation there (added by the verification kit: a guest that runs where nothing
   is claimed lets the scheduler place another instance on resources already in use).
9. An ``active``, ``stopped`` or ``resized`` instance with no task records the power
   state of its guest on its host (``nostate`` when it has none there): each step that
   changes a guest's power saves what the driver then reports (added by the verification
   kit: a start that forgot to read it back left a running guest recorded as shut down).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from coldmig_fsm.machine import MACHINE, Machine
from coldmig_fsm.records import Outcome
from coldmig_fsm.states import MigrationStatus, PowerState, TaskState, VmState

if TYPE_CHECKING:
    from coldmig_fsm.records import Migration
    from coldmig_fsm.runners.cloud import Cloud

__all__ = ["violations"]

_MOVING = frozenset(
    {
        TaskState.RESIZE_PREP,
        TaskState.RESIZE_MIGRATING,
        TaskState.RESIZE_MIGRATED,
        TaskState.RESIZE_FINISH,
        TaskState.RESIZE_REVERTING,
    }
)

_REACHED_FINISHED = frozenset(
    {
        MigrationStatus.FINISHED,
        MigrationStatus.CONFIRMING,
        MigrationStatus.CONFIRMED,
        MigrationStatus.REVERTING,
        MigrationStatus.REVERTED,
    }
)
"""Where a migration is once its move has finished (and ``error``, which a failed confirm
or revert also leaves)."""

_OVERTAKEN_BY_DELETE = frozenset({"InstanceNotFound", "MoveInterrupted"})
"""The errors of a move request that a delete of its instance ended."""

_SETTLED_POWER = frozenset({VmState.ACTIVE, VmState.STOPPED, VmState.RESIZED})
"""The states with no task in which the record's power state is the guest's (invariant 9;
``error`` is left out: a failed step may not know what the guest did)."""

_IN_PROGRESS = frozenset(
    {
        MigrationStatus.PRE_MIGRATING,
        MigrationStatus.MIGRATING,
        MigrationStatus.POST_MIGRATING,
        MigrationStatus.REVERTING,
    }
)


def violations(cloud: Cloud, machine: Machine = MACHINE, *, idle: bool = True) -> list[str]:
    """Every invariant violated by ``cloud`` as it is now.

    ``idle`` says the message queue has been drained, so that no request may still be
    pending (pass ``False`` when checking between two hops).
    """
    store = cloud.store
    found: list[str] = []
    migrations = store.list_migrations()
    by_instance: dict[str, list[str]] = {}
    for migration in migrations:
        by_instance.setdefault(migration.instance_uuid, []).append(migration.uuid)
    guests = cloud.hypervisor.domains() if cloud.hypervisor is not None else {}
    for instance in store.list_instances():
        name = instance.describe()
        if instance.state not in machine.states:
            found.append(f"{name}: state {instance.state.name} is not a state of the machine")
        held = Counter(
            host
            for consumer in (instance.uuid, *by_instance.get(instance.uuid, ()))
            for host in store.allocations(consumer)
        )
        # What a failed move left (its migration in error still holding a claim) stays
        # until the instance is deleted, as in Nova: it counts like a move under way.
        left_over = any(
            m.status is MigrationStatus.ERROR and store.allocations(m.uuid)
            for m in store.list_migrations(instance.uuid)
        )
        moving = (
            instance.task_state in _MOVING
            or instance.vm_state in (VmState.RESIZED, VmState.ERROR)
            or left_over
        )
        if instance.vm_state is VmState.DELETED:
            if held:
                found.append(f"{name}: deleted but still claims {sorted(held)}")
        elif not held:
            found.append(f"{name}: claims nothing")
        elif not moving and sum(held.values()) != 1:
            found.append(f"{name}: claims {dict(held)} with no move under way")
        elif moving and sum(held.values()) > 2:
            found.append(f"{name}: claims {dict(held)}: more than source and destination")
        elif instance.host not in held:
            found.append(f"{name}: on {instance.host} but claims only {sorted(held)}")
        if cloud.hypervisor is not None and instance.vm_state is VmState.DELETED:
            left = [host for host, uuids in guests.items() if instance.uuid in uuids]
            if left:
                found.append(f"{name}: deleted but its guest is still defined on {left}")
        if cloud.hypervisor is not None and instance.vm_state is not VmState.DELETED:
            running = [
                host
                for host, uuids in guests.items()
                if instance.uuid in uuids
                and _power(cloud, host, instance.uuid) is PowerState.RUNNING
            ]
            if len(running) > 1:
                found.append(f"{name}: guest running on {running}")
            unclaimed = [host for host in running if host not in held]
            if unclaimed:
                found.append(f"{name}: guest running on {unclaimed}, which it claims nothing on")
            if instance.task_state is None:
                if instance.vm_state is VmState.ACTIVE and running != [instance.host]:
                    found.append(f"{name}: active but running on {running}")
                if instance.vm_state is VmState.STOPPED and running:
                    found.append(f"{name}: stopped but running on {running}")
                if instance.vm_state in _SETTLED_POWER:
                    actual = _power(cloud, instance.host, instance.uuid) or PowerState.NOSTATE
                    if instance.power_state is not actual:
                        found.append(
                            f"{name}: records power state {instance.power_state.label} but "
                            f"its guest on {instance.host} is {actual.label}"
                        )
    open_moves: Counter[str] = Counter()
    for migration in migrations:
        if not migration.status.is_final:
            open_moves[migration.instance_uuid] += 1
            if migration.status is MigrationStatus.FINISHED:
                instance = store.get_instance(migration.instance_uuid)
                if instance.vm_state is not VmState.RESIZED:
                    found.append(
                        f"migration {migration.id}: finished but its instance is "
                        f"{instance.vm_state.value}"
                    )
        elif store.allocations(migration.uuid) and migration.status is not MigrationStatus.ERROR:
            found.append(
                f"migration {migration.id}: {migration.status.value} but still holds "
                f"{sorted(store.allocations(migration.uuid))}"
            )
    for migration in migrations:
        if migration.status in _IN_PROGRESS:
            instance = store.get_instance(migration.instance_uuid)
            if instance.task_state is None:
                found.append(
                    f"migration {migration.id}: {migration.status.value} but its instance is "
                    f"{instance.vm_state.value} with no task"
                )
        elif migration.status is MigrationStatus.CONFIRMING:
            instance = store.get_instance(migration.instance_uuid)
            if instance.vm_state is not VmState.RESIZED:
                found.append(
                    f"migration {migration.id}: confirming but its instance is "
                    f"{instance.vm_state.value}"
                )
    found += _outcome_violations(cloud, migrations)
    for uuid, count in open_moves.items():
        if count > 1:
            found.append(f"instance {uuid}: {count} migrations open at once")
    for request in store.list_requests():
        if store.get_action(request.request_id) is None:
            found.append(f"request {request.request_id}: no instance action recorded")
        if idle and request.outcome is Outcome.PENDING:
            target = request.instance_uuid
            host = store.get_instance(target).host if target else None
            if host is None or cloud.is_up(host):
                found.append(f"request {request.request_id} ({request.action}) still pending")
    return found


def _outcome_violations(cloud: Cloud, migrations: list[Migration]) -> list[str]:
    """Invariant 7: a settled move request agrees with its migration's status."""
    found = []
    for migration in migrations:
        if migration.request_id is None:
            continue
        request = cloud.store.get_request(migration.request_id)
        if request is None or request.outcome is Outcome.PENDING:
            continue
        status, outcome = migration.status, request.outcome
        what = f"migration {migration.id}: {status.value} but its {request.action} request"
        if status is MigrationStatus.CANCELLED and outcome is not Outcome.ROLLED_BACK:
            if _deleted_under_it(cloud, migration, request.error_type):
                continue
            found.append(f"{what} {outcome.value} ({request.error_type})")
        elif outcome is Outcome.SUCCEEDED and not (
            status in _REACHED_FINISHED or status is MigrationStatus.ERROR
        ):
            found.append(f"{what} succeeded")
        elif outcome is Outcome.ROLLED_BACK and status in _REACHED_FINISHED:
            found.append(f"{what} rolled back")
    return found


def _deleted_under_it(cloud: Cloud, migration: Migration, error_type: str | None) -> bool:
    """Whether a move's request failed because its instance was deleted during the move
    (the move found no instance, or a delete resumed by recovery overtook it)."""
    instance = cloud.store.get_instance(migration.instance_uuid)
    return instance.vm_state is VmState.DELETED and error_type in _OVERTAKEN_BY_DELETE


def _power(cloud: Cloud, host: str, uuid: str) -> PowerState | None:
    assert cloud.hypervisor is not None
    guest = cloud.hypervisor.guest(host, uuid)
    return guest.power_state if guest is not None else None
