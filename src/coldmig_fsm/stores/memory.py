"""State stores: where the records live, with compare-and-swap saves.

:class:`Store` defines every operation the roles use, written once on top of a few
primitives that a backend implements. Two backends ship: :class:`MemoryStore` (the
default, for tests and harnesses) and :class:`coldmig_fsm.stores.sqlite.SqliteStore` (a
real database file, used by the CLI).

Invariants every backend keeps:

* :meth:`Store.save_instance` with ``expected_task_state`` is a compare-and-swap: when the
  stored task_state is not one of the expected values, nothing is written and
  :class:`~coldmig_fsm.exceptions.UnexpectedTaskStateError` is raised.
* Writes inside :meth:`Store.atomic` are all kept or, when the block raises, all undone.
* The message queue is FIFO; a message is removed by the step that handles it, in the
  same atomic block as that step's first writes.
* :meth:`Store.usage` of a host and :meth:`Store.project_usage` of a project are
  aggregates kept with every allocation change, in the same transaction (as Nova's
  placement keeps usages per resource provider): reading one costs the same whatever the
  number of instances, and it always equals the sum of the allocations it covers.
* Every read a hop or an API call makes is by key or by index (uuid, name, instance,
  request, consumer, host, project); the ``list_*`` methods without an argument read the
  whole cloud and are for views, checks and tools, not for the workflow's paths.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Collection, Iterator, Mapping
from typing import Any

import attrs

from coldmig_fsm.exceptions import (
    InstanceNotFound,
    MigrationNotFound,
    UnexpectedMigrationStatusError,
    UnexpectedTaskStateError,
)
from coldmig_fsm.messages import Message
from coldmig_fsm.records import (
    ActionEvent,
    Allocation,
    EventResult,
    Fault,
    Flavor,
    Host,
    Instance,
    InstanceAction,
    Migration,
    Notification,
    Project,
    RequestRecord,
    Resources,
)
from coldmig_fsm.states import MigrationStatus, TaskState

__all__ = ["MemoryStore", "Store"]

# Kinds of keyed records.
HOST, FLAVOR, PROJECT, INSTANCE, MIGRATION, ACTION, REQUEST = (
    "host",
    "flavor",
    "project",
    "instance",
    "migration",
    "action",
    "request",
)
# Kinds of append-only logs.
NOTIFICATION, FAULT = "notification", "fault"

_NO_TASK = ""


def task_index(task_state: TaskState | None) -> str:
    """How a task_state is stored in the compare-and-swap index column."""
    return _NO_TASK if task_state is None else task_state.value


class Store(abc.ABC):
    """Every read and write of the roles. Backends implement the ``_`` primitives."""

    # -- primitives ---------------------------------------------------------------------

    @abc.abstractmethod
    def _get(self, kind: str, key: str) -> Any | None: ...

    @abc.abstractmethod
    def _put(
        self, kind: str, key: str, value: Any, index: str = "", group: str | None = None
    ) -> None:
        """Insert or replace. ``group`` (set on insert, never changed) is a lookup key."""

    @abc.abstractmethod
    def _swap(
        self, kind: str, key: str, value: Any, index: str, expected: Collection[str]
    ) -> str | None:
        """Write ``value`` if the stored index is in ``expected``; else return that index.

        Raises ``KeyError`` when there is no such record.
        """

    @abc.abstractmethod
    def _values(self, kind: str) -> list[Any]:
        """Every record of ``kind``, in the order of first insertion."""

    @abc.abstractmethod
    def _group(self, kind: str, group: str) -> list[Any]:
        """The records of ``kind`` put with ``group``, in the order of first insertion."""

    @abc.abstractmethod
    def _append(self, kind: str, value: Any) -> None: ...

    @abc.abstractmethod
    def _log(self, kind: str) -> list[Any]: ...

    @abc.abstractmethod
    def next_id(self, counter: str) -> int:
        """The next value of a named counter, from 1."""

    @abc.abstractmethod
    def allocations(self, consumer: str) -> dict[str, Resources]:
        """The resources ``consumer`` holds, per host."""

    @abc.abstractmethod
    def set_allocations(self, consumer: str, per_host: Mapping[str, Resources]) -> None:
        """Replace everything ``consumer`` holds (an empty mapping releases all)."""

    @abc.abstractmethod
    def usage(self, host: str) -> Resources:
        """The sum of every consumer's allocation on ``host`` (an aggregate: O(1))."""

    @abc.abstractmethod
    def project_usage(self, project_id: str) -> Resources:
        """The sum of the allocations of every consumer owned by ``project_id`` (O(1)).

        An instance is owned by its project from :meth:`add_instance` on, a migration by
        its instance's project from :meth:`add_migration` on.
        """

    @abc.abstractmethod
    def _own(self, consumer: str, project: str | None = None, like: str | None = None) -> None:
        """Make ``project`` (or the project owning ``like``) the owner of ``consumer``.

        A consumer's owner is set once; what it already holds starts counting for its
        owner's :meth:`project_usage`. Nothing happens when ``like`` has no owner.
        """

    @abc.abstractmethod
    def all_allocations(self) -> list[Allocation]: ...

    @abc.abstractmethod
    def push_message(self, message: Message) -> None: ...

    @abc.abstractmethod
    def pop_message(self) -> Message | None:
        """Remove and return the oldest queued message."""

    @abc.abstractmethod
    def pending_messages(self) -> list[Message]: ...

    @abc.abstractmethod
    def take_message(self, held: Collection[str] = ()) -> Message | None:
        """Remove and return the oldest queued message whose destination is not in ``held``.

        ``held`` lists destinations (``"compute:<host>"``) whose messages must wait.
        """

    @abc.abstractmethod
    def atomic(self) -> contextlib.AbstractContextManager[None]:
        """A block whose writes are all kept, or all undone if it raises. Nests."""

    def close(self) -> None:  # noqa: B027 - an optional hook, not abstract on purpose
        """Release the backend's resources (nothing for the memory store)."""

    # -- configuration records ----------------------------------------------------------

    def put_host(self, host: Host) -> None:
        self._put(HOST, host.name, host)

    def get_host(self, name: str) -> Host | None:
        found: Host | None = self._get(HOST, name)
        return found

    def list_hosts(self) -> list[Host]:
        return list(self._values(HOST))

    def put_flavor(self, flavor: Flavor) -> None:
        self._put(FLAVOR, flavor.id, flavor)

    def get_flavor(self, flavor_id: str) -> Flavor | None:
        found: Flavor | None = self._get(FLAVOR, flavor_id)
        return found

    def list_flavors(self) -> list[Flavor]:
        return list(self._values(FLAVOR))

    def put_project(self, project: Project) -> None:
        self._put(PROJECT, project.id, project)

    def get_project(self, project_id: str) -> Project | None:
        found: Project | None = self._get(PROJECT, project_id)
        return found

    # -- instances ----------------------------------------------------------------------

    def add_instance(self, instance: Instance) -> None:
        if self._get(INSTANCE, instance.uuid) is not None:
            raise ValueError(f"instance {instance.uuid} already exists")
        self._put(INSTANCE, instance.uuid, instance, task_index(instance.task_state), instance.name)
        self._own(instance.uuid, project=instance.project_id)

    def get_instance(self, uuid: str) -> Instance:
        found: Instance | None = self._get(INSTANCE, uuid)
        if found is None:
            raise InstanceNotFound(f"Instance {uuid} could not be found.")
        return found

    def list_instances(self) -> list[Instance]:
        return list(self._values(INSTANCE))

    def find_instance(self, name: str) -> Instance | None:
        """The (first) instance called ``name``, or ``None``."""
        found: list[Instance] = self._group(INSTANCE, name)
        return found[0] if found else None

    def save_instance(
        self,
        instance: Instance,
        expected_task_state: Collection[TaskState | None] | None = None,
    ) -> None:
        """Save ``instance``; with ``expected_task_state``, only if the stored one matches.

        Raises:
            UnexpectedTaskStateError: the stored task_state is not one of the expected.
            InstanceNotFound: there is no such instance.
        """
        index = task_index(instance.task_state)
        if expected_task_state is None:
            if self._get(INSTANCE, instance.uuid) is None:
                raise InstanceNotFound(f"Instance {instance.uuid} could not be found.")
            self._put(INSTANCE, instance.uuid, instance, index)
            return
        expected = {task_index(t) for t in expected_task_state}
        try:
            actual = self._swap(INSTANCE, instance.uuid, instance, index, expected)
        except KeyError:
            raise InstanceNotFound(f"Instance {instance.uuid} could not be found.") from None
        if actual is not None:
            shown = ", ".join(sorted(e or "None" for e in expected))
            raise UnexpectedTaskStateError(
                f"Unexpected task state: expecting [{shown}] but the actual state is "
                f"{actual or 'None'} (instance {instance.describe()})"
            )

    # -- migrations ---------------------------------------------------------------------

    def add_migration(self, migration: Migration) -> None:
        self._put(
            MIGRATION, str(migration.id), migration, migration.status.value, migration.instance_uuid
        )
        self._own(migration.uuid, like=migration.instance_uuid)

    def get_migration(self, migration_id: int) -> Migration:
        found: Migration | None = self._get(MIGRATION, str(migration_id))
        if found is None:
            raise MigrationNotFound(f"Migration {migration_id} could not be found.")
        return found

    def list_migrations(self, instance_uuid: str | None = None) -> list[Migration]:
        if instance_uuid is None:
            return list(self._values(MIGRATION))
        return list(self._group(MIGRATION, instance_uuid))

    def save_migration(
        self,
        migration: Migration,
        expected_status: Collection[MigrationStatus] | None = None,
    ) -> None:
        """Save ``migration``; with ``expected_status``, only if the stored one matches.

        Raises:
            UnexpectedMigrationStatusError: the stored status is not one of the expected.
        """
        key, index = str(migration.id), migration.status.value
        if expected_status is None:
            self._put(MIGRATION, key, migration, index)
            return
        expected = {s.value for s in expected_status}
        try:
            actual = self._swap(MIGRATION, key, migration, index, expected)
        except KeyError:
            raise MigrationNotFound(f"Migration {migration.id} could not be found.") from None
        if actual is not None:
            raise UnexpectedMigrationStatusError(
                f"Migration {migration.id}: expected status in "
                f"[{', '.join(sorted(expected))}] but it is {actual}"
            )

    # -- actions, requests, notifications, faults ---------------------------------------

    def add_action(self, action: InstanceAction) -> None:
        self._put(ACTION, action.request_id, action, group=action.instance_uuid)

    def get_action(self, request_id: str) -> InstanceAction | None:
        found: InstanceAction | None = self._get(ACTION, request_id)
        return found

    def add_action_event(self, request_id: str, event: ActionEvent) -> None:
        action = self.get_action(request_id)
        if action is None:
            raise KeyError(f"no instance action for request {request_id}")
        message = "Error" if event.result is EventResult.ERROR else action.message
        self._put(
            ACTION,
            request_id,
            attrs.evolve(action, events=(*action.events, event), message=message),
        )

    def list_actions(self, instance_uuid: str | None = None) -> list[InstanceAction]:
        if instance_uuid is None:
            return list(self._values(ACTION))
        return list(self._group(ACTION, instance_uuid))

    def put_request(self, request: RequestRecord) -> None:
        self._put(
            REQUEST, request.request_id, request, request.outcome.value, request.instance_uuid
        )

    def settle_request(self, request: RequestRecord) -> bool:
        """Save ``request`` (now settled) only if it is still pending; False otherwise.

        A compare-and-swap, so that a request settles once even with several writers.
        """
        try:
            return (
                self._swap(
                    REQUEST, request.request_id, request, request.outcome.value, ("pending",)
                )
                is None
            )
        except KeyError:
            return False

    def get_request(self, request_id: str) -> RequestRecord | None:
        found: RequestRecord | None = self._get(REQUEST, request_id)
        return found

    def list_requests(self, instance_uuid: str | None = None) -> list[RequestRecord]:
        if instance_uuid is None:
            return list(self._values(REQUEST))
        return list(self._group(REQUEST, instance_uuid))

    def add_notification(self, notification: Notification) -> None:
        self._append(NOTIFICATION, notification)

    def list_notifications(self) -> list[Notification]:
        return list(self._log(NOTIFICATION))

    def add_fault(self, fault: Fault) -> None:
        self._append(FAULT, fault)

    def list_faults(self, instance_uuid: str | None = None) -> list[Fault]:
        every: list[Fault] = self._log(FAULT)
        if instance_uuid is None:
            return every
        return [f for f in every if f.instance_uuid == instance_uuid]


_Sum = tuple[int, int, int]  # vcpus, ram_mb, disk_gb: an aggregate, added to in place


def _total(per_host: Mapping[str, Resources] | None) -> _Sum:
    if not per_host:
        return (0, 0, 0)
    return (
        sum(r.vcpus for r in per_host.values()),
        sum(r.ram_mb for r in per_host.values()),
        sum(r.disk_gb for r in per_host.values()),
    )


def _shift(sums: dict[str, _Sum], key: str, by: _Sum, sign: int) -> None:
    v, r, d = sums.get(key, (0, 0, 0))
    sums[key] = (v + sign * by[0], r + sign * by[1], d + sign * by[2])


class MemoryStore(Store):
    """Everything in dictionaries. Atomic blocks keep an undo journal.

    The usage aggregates (per host, per project) change with every allocation change
    and are restored with it when a block is undone.
    """

    def __init__(self) -> None:
        self._records: dict[str, dict[str, tuple[Any, str]]] = {}
        self._groups: dict[tuple[str, str], dict[str, None]] = {}
        self._logs: dict[str, list[Any]] = {}
        self._counters: dict[str, int] = {}
        self._allocations: dict[str, dict[str, Resources]] = {}
        self._host_usage: dict[str, _Sum] = {}
        self._project_usage: dict[str, _Sum] = {}
        self._owners: dict[str, str] = {}  # consumer -> project
        self._queue: list[Message] = []
        self._queue_head = 0
        self._journal: list[tuple[Any, ...]] | None = None
        self._depth = 0

    # -- journal --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _atomic(self) -> Iterator[None]:
        outer = self._depth == 0
        if outer:
            self._journal = []
        self._depth += 1
        try:
            yield
        except BaseException:
            if outer:
                self._undo()
            raise
        finally:
            self._depth -= 1
            if outer:
                self._journal = None

    def atomic(self) -> contextlib.AbstractContextManager[None]:
        return self._atomic()

    def _note(self, *entry: Any) -> None:
        if self._journal is not None:
            self._journal.append(entry)

    def _undo(self) -> None:
        assert self._journal is not None
        for entry in reversed(self._journal):
            what = entry[0]
            if what == "record":
                _, kind, key, previous = entry
                if previous is None:
                    self._records[kind].pop(key, None)
                else:
                    self._records[kind][key] = previous
            elif what == "group":
                _, kind, group, key = entry
                self._groups[(kind, group)].pop(key, None)
            elif what == "log":
                self._logs[entry[1]].pop()
            elif what == "counter":
                self._counters[entry[1]] = entry[2]
            elif what == "alloc":
                _, consumer, previous = entry
                self._replace_allocations(consumer, previous)
            elif what == "owner":
                consumer = entry[1]
                held = _total(self._allocations.get(consumer))
                _shift(self._project_usage, self._owners.pop(consumer), held, -1)
            elif what == "push":
                self._queue.pop()
            elif what == "pop":
                self._queue_head -= 1
            elif what == "take":
                self._queue.insert(entry[1], entry[2])

    # -- primitives -----------------------------------------------------------------------

    def _get(self, kind: str, key: str) -> Any | None:
        entry = self._records.get(kind, {}).get(key)
        return entry[0] if entry is not None else None

    def _put(
        self, kind: str, key: str, value: Any, index: str = "", group: str | None = None
    ) -> None:
        table = self._records.setdefault(kind, {})
        previous = table.get(key)
        self._note("record", kind, key, previous)
        table[key] = (value, index)
        if previous is None and group is not None:
            self._groups.setdefault((kind, group), {})[key] = None
            self._note("group", kind, group, key)

    def _swap(
        self, kind: str, key: str, value: Any, index: str, expected: Collection[str]
    ) -> str | None:
        table = self._records.get(kind, {})
        current = table[key]
        if current[1] not in expected:
            return current[1]
        self._note("record", kind, key, current)
        table[key] = (value, index)
        return None

    def _values(self, kind: str) -> list[Any]:
        return [value for value, _ in self._records.get(kind, {}).values()]

    def _group(self, kind: str, group: str) -> list[Any]:
        table = self._records.get(kind, {})
        return [table[key][0] for key in self._groups.get((kind, group), ()) if key in table]

    def _append(self, kind: str, value: Any) -> None:
        self._logs.setdefault(kind, []).append(value)
        self._note("log", kind)

    def _log(self, kind: str) -> list[Any]:
        return self._logs.get(kind, [])

    def next_id(self, counter: str) -> int:
        previous = self._counters.get(counter, 0)
        self._note("counter", counter, previous)
        self._counters[counter] = previous + 1
        return previous + 1

    def allocations(self, consumer: str) -> dict[str, Resources]:
        return dict(self._allocations.get(consumer, {}))

    def set_allocations(self, consumer: str, per_host: Mapping[str, Resources]) -> None:
        self._note("alloc", consumer, self._allocations.get(consumer))
        self._replace_allocations(consumer, dict(per_host) if per_host else None)

    def _replace_allocations(self, consumer: str, held: dict[str, Resources] | None) -> None:
        """Make ``held`` what ``consumer`` holds, the aggregates following (not journaled)."""
        previous = self._allocations.pop(consumer, None)
        if held:
            self._allocations[consumer] = held
        usage = self._host_usage
        for host, resources in (previous or {}).items():
            v, r, d = usage[host]
            usage[host] = (v - resources.vcpus, r - resources.ram_mb, d - resources.disk_gb)
        for host, resources in (held or {}).items():
            v, r, d = usage.get(host, (0, 0, 0))
            usage[host] = (v + resources.vcpus, r + resources.ram_mb, d + resources.disk_gb)
        project = self._owners.get(consumer)
        if project is not None:
            _shift(self._project_usage, project, _total(previous), -1)
            _shift(self._project_usage, project, _total(held), 1)

    def _own(self, consumer: str, project: str | None = None, like: str | None = None) -> None:
        owner = project if like is None else self._owners.get(like)
        if owner is None or consumer in self._owners:
            return
        self._owners[consumer] = owner
        self._note("owner", consumer)
        _shift(self._project_usage, owner, _total(self._allocations.get(consumer)), 1)

    def usage(self, host: str) -> Resources:
        return Resources(*self._host_usage.get(host, (0, 0, 0)))

    def project_usage(self, project_id: str) -> Resources:
        return Resources(*self._project_usage.get(project_id, (0, 0, 0)))

    def all_allocations(self) -> list[Allocation]:
        return [
            Allocation(consumer, host, resources)
            for consumer, per_host in self._allocations.items()
            for host, resources in per_host.items()
        ]

    def push_message(self, message: Message) -> None:
        self._queue.append(message)
        self._note("push")

    def pop_message(self) -> Message | None:
        if self._queue_head >= len(self._queue):
            return None
        message = self._queue[self._queue_head]
        self._queue_head += 1
        self._note("pop")
        if self._journal is None and self._queue_head > 1024:
            del self._queue[: self._queue_head]
            self._queue_head = 0
        return message

    def pending_messages(self) -> list[Message]:
        return self._queue[self._queue_head :]

    def take_message(self, held: Collection[str] = ()) -> Message | None:
        for position in range(self._queue_head, len(self._queue)):
            message = self._queue[position]
            if message.destination not in held:
                if position == self._queue_head:
                    return self.pop_message()
                del self._queue[position]
                self._note("take", position, message)
                return message
        return None
