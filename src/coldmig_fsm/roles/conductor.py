"""The conductor role: creates the migration record and schedules the move.

One step, :meth:`Conductor.migrate_server`:

1. check that the instance still expects this step (task_state ``resize_prep``);
2. create a migration record (``pre-migrating``) and move the instance's source
   allocation to it (the migration now holds the source side);
3. ask the scheduler for a host and alternates (notifications
   ``scheduler.select_destinations.start/end``; the start only once placement has offered
   candidates, as on Nova: when no host has the resources at all, or the target host is
   too small or disabled, the only notification is ``compute_task.migrate_server.error``),
   unless this is a reschedule that already
   carries its host list. The source host is a candidate only with
   ``allow_resize_to_same_host`` and, for a migrate (flavor unchanged), only when the
   source's driver supports a move to its own host (as Nova 34 does): the capability its
   compute service registered in the host record (:mod:`coldmig_fsm.roles.services`);
   the conductor holds no driver;
4. send ``prep_resize`` to the chosen host; event ``conductor_migrate_server``.

When no host fits (``NoValidHost``, or ``MaxRetriesExceeded`` on a reschedule with no
alternate left) the move ends at once: task_state back to ``null``, the migration
``error``, the allocation back on the instance, a fault, the notification
``compute_task.migrate_server.error`` and the events ``conductor_migrate_server`` and
``cold_migrate`` with result ``Error``. The request's outcome is ``rolled_back``.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable, Collection

from coldmig_fsm import messages
from coldmig_fsm.exceptions import ColdmigError, MaxRetriesExceeded, NoValidHost
from coldmig_fsm.records import Instance, Migration, Outcome
from coldmig_fsm.roles import claims, scheduler
from coldmig_fsm.roles.runtime import Runtime, moved
from coldmig_fsm.states import MigrationType

__all__ = ["Conductor"]


class Conductor:
    """The conductor role."""

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime

    def _leftover(self, instance: Instance) -> Migration | None:
        """The instance's last move when it failed and its migration (in ``error``) still
        holds a claim, say after a failed revert; ``None`` otherwise. A failed step keeps
        the instance's migration context, so this is one lookup by key."""
        if instance.migration_id is None:
            return None
        store = self._rt.store
        migration = store.get_migration(instance.migration_id)
        held = migration.status.is_failed and store.allocations(migration.uuid)
        return migration if held else None

    def leftover_hosts(self, instance: Instance) -> set[str]:
        """Hosts where a failed move of ``instance`` still holds a claim, and may have left
        a guest: a new move does not go there."""
        left = self._leftover(instance)
        return set() if left is None else set(self._rt.store.allocations(left.uuid))

    def _may_stay(self, instance: Instance, flavor_id: str) -> bool:
        """Is the source host a candidate? (Nova: a same-host *migrate* needs the driver's
        capability, as the source's service registered it in its host record.)"""
        if not self._rt.config.allow_resize_to_same_host:
            return False
        if flavor_id != instance.flavor:
            return True
        source = self._rt.store.get_host(instance.host)
        return source is not None and source.supports_migrate_to_same_host

    def handle(self, message: messages.Message) -> None:
        if not isinstance(message, messages.MigrateServer):
            raise TypeError(f"the conductor does not handle {message.kind}")
        self.migrate_server(message)

    def migrate_server(self, message: messages.MigrateServer) -> None:
        rt, store = self._rt, self._rt.store
        request = store.get_request(message.request_id)
        if request is not None and request.outcome is not Outcome.PENDING:
            return  # settled already (aborted before it got here): a stale message
        try:
            instance = store.get_instance(message.instance_uuid)
            rt.transition("migrate_server", instance)
        except ColdmigError as error:
            # The move lost a race (deleted, reset): the state that won stands.
            rt.settle(message.request_id, Outcome.FAILED, error)
            return
        with store.atomic():
            migration = Migration(
                id=store.next_id("migration"),
                uuid=str(uuidlib.uuid4()),
                instance_uuid=instance.uuid,
                migration_type=(
                    MigrationType.MIGRATION
                    if message.flavor_id == instance.flavor
                    else MigrationType.RESIZE
                ),
                status=rt.machine.created_status("migrate_server"),
                source_compute=instance.host,
                old_flavor=instance.flavor,
                new_flavor=message.flavor_id,
                request_id=message.request_id,
                created_at=rt.clock.now(),
                updated_at=rt.clock.now(),
            )
            # A new move abandons what an earlier failed one left (its migration in
            # error still holding a claim, say after a failed revert): released here, so
            # that no host counts the instance twice. Those hosts are not candidates
            # either (``candidates``): the failed move may have left a guest there.
            left = self._leftover(instance)
            avoid = set() if left is None else set(store.allocations(left.uuid))
            if left is not None:
                claims.release(store, left.uuid)
            store.add_migration(migration)
            claims.move_allocations(store, instance.uuid, migration.uuid)
        try:
            hosts = list(message.hosts) or self._schedule(instance, message, avoid)
        except NoValidHost as error:
            self._no_valid_host(instance, migration, message.request_id, error)
            return
        with store.atomic():
            rt.event(message.request_id, "conductor_migrate_server", None)
            rt.event(message.request_id, "cold_migrate", None)
            store.push_message(
                messages.PrepResize(
                    message.request_id,
                    instance.uuid,
                    hosts[0],
                    migration.id,
                    message.flavor_id,
                    alternates=tuple(hosts[1:]),
                    attempt=message.attempt,
                )
            )

    def _schedule(
        self, instance: Instance, message: messages.MigrateServer, avoid: Collection[str]
    ) -> list[str]:
        rt = self._rt
        if message.attempt > 1:
            raise MaxRetriesExceeded(
                f"Exceeded maximum number of retries. Exhausted all hosts available for "
                f"retrying build failures for instance {instance.uuid}."
            )
        hosts = self.candidates(
            instance,
            message.flavor_id,
            message.target_host,
            on_filtering=lambda: rt.notify("scheduler.select_destinations.start", None, None),
            avoid=avoid,
        )
        rt.notify("scheduler.select_destinations.end", None, None)
        return hosts

    def candidates(
        self,
        instance: Instance,
        flavor_id: str,
        target_host: str | None = None,
        on_filtering: Callable[[], None] | None = None,
        avoid: Collection[str] | None = None,
    ) -> list[str]:
        """The hosts the scheduler offers for this move, best first.

        Writes nothing itself; ``on_filtering`` runs once placement has offered candidates
        (where Nova notifies ``scheduler.select_destinations.start``). ``avoid`` are hosts
        that are not candidates (default: :meth:`leftover_hosts`).

        Raises:
            NoValidHost: none fits.
        """
        rt = self._rt
        ignore = set(self.leftover_hosts(instance) if avoid is None else avoid)
        if not self._may_stay(instance, flavor_id):
            ignore.add(instance.host)
        return scheduler.select_destinations(
            rt.store,
            rt.flavor(flavor_id).resources,
            now=rt.clock.now(),
            service_down_time=rt.config.service_down_time,
            ignore_hosts=ignore,
            target_host=target_host,
            limit=rt.config.max_attempts,
            on_filtering=on_filtering,
        )

    def _no_valid_host(
        self, instance: Instance, migration: Migration, request_id: str, error: NoValidHost
    ) -> None:
        rt, store = self._rt, self._rt.store
        with store.atomic():
            current = store.get_instance(instance.uuid)
            fired = rt.fire("schedule_failed", current, migration=migration)
            rolled = moved(current, fired)
            rt.save(fired, rolled, migration)
            claims.move_allocations(store, migration.uuid, instance.uuid)
            rt.fault(rolled, error, None)
            rt.notify("compute_task.migrate_server.error", rolled, None)
            rt.event(request_id, "conductor_migrate_server", None, error)
            rt.event(request_id, "cold_migrate", None, error)
            rt.settle(request_id, Outcome.ROLLED_BACK, error)
