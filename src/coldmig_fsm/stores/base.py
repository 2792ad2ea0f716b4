"""The store port: every read and write the roles make, and the contract of each.

:class:`Store` is an abstract base class. Its public methods (records, placement, the
message queue, the logs) are written once here on top of a few ``_`` primitives that a
backend implements; a backend may override a public method when it can do better (the
SQL backend does for placement). Two backends ship: :class:`~coldmig_fsm.stores.memory.
MemoryStore` and :class:`~coldmig_fsm.stores.sql.SqlStore` (with
:class:`~coldmig_fsm.stores.sqlite.SqliteStore` for a file). Every backend passes
:func:`coldmig_fsm.testing.check_store`, which is this contract as executable checks.

The contract, in short (each method's docstring has the details):

* **Compare-and-swap saves.** :meth:`Store.save_instance` with ``expected_task_state``
  and :meth:`Store.save_migration` with ``expected_status`` write only when the stored
  value is one of the expected ones, else raise and write nothing.
* **Atomic blocks.** :meth:`Store.atomic` blocks nest. When a block raises, every write
  made inside it (its inner blocks' included) is undone: records, allocations and
  usage aggregates, generations, counters, messages pushed and taken, log entries and the
  outbox cursor. An inner block that raises undoes only its own writes, so an enclosing
  block may catch the error and go on. Writes outside any block take effect at once.
* **The message queue.** FIFO over all destinations; :meth:`Store.take_message` takes
  the oldest message for a set of destinations, in the caller's atomic block: a handler
  whose block rolls back puts its message back. :meth:`Store.delivery` hands a message
  to a handler and takes it in the transaction of the handler's first write, whatever
  that write is: a handler whose first transaction rolls back, or that raises before it
  wrote, leaves the message queued. :meth:`Store.pending_messages` with an instance's
  uuid lists that instance's queued messages by index, in step with every push and take.
* **Placement.** Allocations per consumer and host; per-host and per-project usage are
  aggregates kept in the same transaction as every allocation change; each host has a
  generation that every allocation change on it increments, and
  :meth:`Store.set_allocations` can compare-and-swap on it (see
  :func:`coldmig_fsm.roles.claims.try_claim`): two processes can never both fill the
  last room on a host.
* **The logs.** Notifications, instance actions and events, and faults are written in
  the transaction of the state change they describe; notifications form an outbox
  (:meth:`Store.notifications_after`, :meth:`Store.take_outbox`) that a publisher reads
  later, each notification handed out once.
* **Lookups by key or index.** Every read a hop or an API call makes is by key or by
  index (uuid, name, instance, request, consumer, host, project, destination, the
  queued messages of an instance: :meth:`Store.pending_messages` with an
  ``instance_uuid``, the hosts whose compute service is down: :meth:`Store.down_hosts`);
  the ``list_*`` methods and ``pending_messages`` without an argument read the whole
  cloud (or queue) and are for views, checks and tools, not for the workflow's paths.
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
from collections.abc import Collection, Iterator, Mapping
from typing import Any, ClassVar

import attrs

from coldmig_fsm.exceptions import (
    InstanceNotFound,
    MigrationNotFound,
    UnexpectedMigrationStatusError,
    UnexpectedTaskStateError,
)
from coldmig_fsm.messages import CONDUCTOR, Message
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
    replace,
)
from coldmig_fsm.states import MigrationStatus, TaskState

__all__ = [
    "CONDUCTOR",
    "GenerationConflict",
    "HostUsage",
    "MessageTaken",
    "Store",
    "compute_destination",
    "liveness_index",
    "task_index",
]

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
# The counter that holds the outbox's cursor (the last notification handed out).
OUTBOX = "outbox"

_NO_TASK = ""

RANGED = frozenset({HOST})
"""The kinds whose index a backend keeps in order, for :meth:`Store._outside`."""

_MARKED_DOWN = "-"  # sorts before every timestamp (they start with a digit)
_NEVER_REPORTED = ""


def task_index(task_state: TaskState | None) -> str:
    """How a task_state is stored in the compare-and-swap index column."""
    return _NO_TASK if task_state is None else task_state.value


def _stamp(moment: dt.datetime) -> str:
    """``moment`` as a string whose order is the order of time: UTC (a naive time is
    taken as UTC), ISO 8601 with microseconds, always 26 characters."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds")


def _shifted(moment: dt.datetime, seconds: float) -> dt.datetime:
    try:
        return moment + dt.timedelta(seconds=seconds)
    except OverflowError:
        return dt.datetime.max if seconds > 0 else dt.datetime.min


def liveness_index(host: Host) -> str:
    """How a host's liveness is stored in its index (what :meth:`Store.down_hosts`
    reads): ``"-"`` when it is marked down, ``""`` when its service never sent a
    heartbeat (it counts as up), else its last heartbeat as an ordered timestamp."""
    if not host.up:
        return _MARKED_DOWN
    if host.heartbeat_at is None:
        return _NEVER_REPORTED
    return _stamp(host.heartbeat_at)


def compute_destination(host: str) -> str:
    """The queue destination of ``host``'s compute service: ``"compute:<host>"``.

    The conductor's destination is :data:`CONDUCTOR` (``"conductor"``): one queue that
    any conductor process may take from, as Nova's conductors share one RPC topic.
    """
    return f"compute:{host}"


class GenerationConflict(RuntimeError):
    """A host's generation is not the one expected: its allocations changed meanwhile.

    Placement's ``resource provider generation conflict`` (HTTP 409): re-read the
    host's usage and decide again. Nothing was written.
    """

    code: ClassVar[int] = 409

    def __init__(self, host: str, expected: int, actual: int) -> None:
        super().__init__(
            f"host {host}: generation {actual}, expected {expected} (its allocations "
            "changed meanwhile: read its usage again)"
        )
        self.host = host
        self.expected = expected
        self.actual = actual


class MessageTaken(RuntimeError):
    """The message of a :meth:`Store.delivery` was taken by another consumer of its
    destination before this handler's first write: that write's transaction is rolled
    back, and the handler must stop (the other consumer handles the message)."""


@attrs.frozen
class HostUsage:
    """What a host's allocations add up to, and the generation of that sum.

    ``generation`` is 0 for a host nothing was ever allocated on, and every allocation
    change on the host increments it (Nova placement's resource provider generation).
    """

    used: Resources
    generation: int


class Store(abc.ABC):
    """Every read and write of the roles. Backends implement the ``_`` primitives.

    Records are frozen ``attrs`` values: a store returns equal values to those saved, and
    callers never change a returned record in place.
    """

    # The message of the delivery under way (Store.delivery), until a write takes it;
    # then, while the transaction that took it is open, that message (a rollback of the
    # transaction hands it back).
    _handed: tuple[Any, Message] | None = None
    _handed_in_block: tuple[Any, Message] | None = None
    # The last cutoffs down_hosts computed: (now, service_down_time, low, high).
    _liveness_cut: tuple[dt.datetime | None, float, str, str] = (None, 0.0, "", "")

    # -- primitives ---------------------------------------------------------------------

    @abc.abstractmethod
    def _get(self, kind: str, key: str) -> Any | None: ...

    @abc.abstractmethod
    def _put(
        self,
        kind: str,
        key: str,
        value: Any,
        index: str = "",
        group: str | None = None,
        hosts: tuple[str | None, str | None] = (None, None),
    ) -> None:
        """Insert or replace.

        ``index`` is what a compare-and-swap reads (and a lookup filters on); ``group``
        (set on insert, never changed) is a lookup key; ``hosts`` are the one or two hosts
        the record is found under by :meth:`_hosted` (changed with every write).
        """

    @abc.abstractmethod
    def _swap(
        self,
        kind: str,
        key: str,
        value: Any,
        index: str,
        expected: Collection[str] | None,
        hosts: tuple[str | None, str | None] = (None, None),
    ) -> str | None:
        """Write ``value`` if the stored index is in ``expected`` (``None``: whatever it
        is); else return that index. The record's group does not change.

        Raises ``KeyError`` when there is no such record.
        """

    @abc.abstractmethod
    def _values(self, kind: str) -> list[Any]:
        """Every record of ``kind``, in the order of first insertion."""

    @abc.abstractmethod
    def _group(self, kind: str, group: str) -> list[Any]:
        """The records of ``kind`` put with ``group``, in the order of first insertion."""

    @abc.abstractmethod
    def _hosted(
        self,
        kind: str,
        host: str,
        indexes: Collection[str] | None = None,
        exclude: str | None = None,
    ) -> list[Any]:
        """The records of ``kind`` found under ``host`` (either of their ``hosts``), by
        index, in the order of first insertion, each once.

        ``indexes``: only those whose index is one of them; ``exclude``: not those whose
        index is this one.
        """

    @abc.abstractmethod
    def _outside(self, kind: str, low: str, high: str) -> list[Any]:
        """The records of ``kind`` (one of :data:`RANGED`) whose index is not empty and
        is below ``low`` or above ``high`` (string order), in the order of first
        insertion; by an ordered index, so that the cost grows with the records found
        only."""

    @abc.abstractmethod
    def _append(self, kind: str, value: Any, group: str | None = None) -> None:
        """Append to the log ``kind``; ``group`` is a lookup key (by index)."""

    @abc.abstractmethod
    def _log(self, kind: str, group: str | None = None) -> list[Any]:
        """The log ``kind`` (only the entries appended with ``group``, when given)."""

    @abc.abstractmethod
    def _log_after(self, kind: str, seq: int, limit: int | None) -> list[tuple[int, Any]]:
        """The entries of log ``kind`` whose sequence number is above ``seq``, oldest
        first, at most ``limit``; with their sequence numbers (increasing, from 1, shared
        by every log of the store)."""

    @abc.abstractmethod
    def _counter(self, name: str) -> int:
        """The value of a counter (0 when never set)."""

    @abc.abstractmethod
    def _swap_counter(self, name: str, expected: int, value: int) -> bool:
        """Set a counter to ``value`` if it is ``expected``; False (nothing set) if not."""

    @abc.abstractmethod
    def next_id(self, counter: str) -> int:
        """The next value of a named counter, from 1."""

    @abc.abstractmethod
    def allocations(self, consumer: str) -> dict[str, Resources]:
        """The resources ``consumer`` holds, per host."""

    @abc.abstractmethod
    def set_allocations(
        self,
        consumer: str,
        per_host: Mapping[str, Resources],
        *,
        generations: Mapping[str, int] | None = None,
    ) -> None:
        """Replace everything ``consumer`` holds (an empty mapping releases all).

        Every host whose allocation of ``consumer`` changes gets its generation
        incremented, and its usage aggregate (and the owner's project usage) follows, in
        the same transaction.

        Args:
            generations: a compare-and-swap: for each host named, the generation the
                caller read (with :meth:`host_usage`) before deciding; the write happens
                only if every one is still current.

        Raises:
            GenerationConflict: a host's generation is not the one given; nothing written.
        """

    @abc.abstractmethod
    def host_usage(self, host: str) -> HostUsage:
        """The sum of every allocation on ``host`` and its generation (an aggregate: O(1))."""

    def usage(self, host: str) -> Resources:
        """The sum of every consumer's allocation on ``host`` (an aggregate: O(1))."""
        return self.host_usage(host).used

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
    def all_allocations(self) -> list[Allocation]:
        """Every allocation of the cloud (a view: reads everything; order unspecified)."""

    @abc.abstractmethod
    def push_message(self, message: Message) -> None:
        """Queue ``message`` for its :attr:`~coldmig_fsm.messages.Message.destination`."""

    @abc.abstractmethod
    def pop_message(self) -> Message | None:
        """Remove and return the oldest queued message (``None``: the queue is empty)."""

    @abc.abstractmethod
    def pending_messages(self, instance_uuid: str | None = None) -> list[Message]:
        """The queued messages of ``instance_uuid`` (their
        :attr:`~coldmig_fsm.messages.Message.instance_uuid`), oldest first, whatever
        their destination; every queued message when ``None`` (a view: reads the whole
        queue). Nothing is removed.

        With ``instance_uuid``, by index: the cost grows with that instance's queued
        messages only, not with the queue. The index follows every push and take, in
        the caller's atomic block (a rolled-back push is gone from it, a rolled-back
        take back at its place), and a delivery's message leaves it when the handler's
        first write takes it. This is how a hop finds which requests of one instance
        have a message on its way (a message carries requests of its own instance
        only).
        """

    @abc.abstractmethod
    def take_message(
        self, held: Collection[str] = (), *, destinations: Collection[str] | None = None
    ) -> Message | None:
        """Remove and return the oldest queued message that may be delivered now.

        A destination is a message's :attr:`~coldmig_fsm.messages.Message.destination`:
        ``"conductor"`` (:data:`CONDUCTOR`) or ``"compute:<host>"``
        (:func:`compute_destination`).

        Args:
            held: destinations whose messages must wait (a compute service that is down).
            destinations: only messages for one of these (the services a worker process
                runs); ``None``: any destination.

        The message is removed in the caller's atomic block when there is one: if the
        block rolls back, the message is back in the queue at its place.
        """

    @abc.abstractmethod
    def _peek_message(
        self, held: Collection[str], destinations: Collection[str] | None
    ) -> tuple[Any, Message] | None:
        """The message :meth:`take_message` would take, with a reference for
        :meth:`_remove_message`; nothing removed."""

    @abc.abstractmethod
    def _remove_message(self, ref: Any) -> None:
        """Remove the message ``ref`` names (from :meth:`_peek_message`), in the open
        atomic block if there is one (a rollback puts it back at its place).

        Raises:
            MessageTaken: it is no longer queued (another consumer took it).
        """

    @contextlib.contextmanager
    def delivery(
        self, held: Collection[str] = (), *, destinations: Collection[str] | None = None
    ) -> Iterator[Message | None]:
        """Hand the oldest deliverable message (as :meth:`take_message` would choose it)
        to a handler that runs inside this block; ``None`` when there is none.

        The message is taken in the transaction of the handler's first write: the
        start of its first outermost :meth:`atomic` block, or a write outside any
        block (which then runs in one transaction with the take). So:

        * a handler whose first transaction rolls back leaves the message queued at its
          place, to be taken by the next transaction it writes in;
        * a handler that raises before it wrote anything leaves it queued;
        * a handler that returns without writing anything has it taken when the block
          ends (a handled message is never delivered twice);
        * :meth:`acknowledge` takes it at once (a runner that drops the message, or
          whose handler died holding it).

        Inside an open atomic block the message is taken at once, in that block (as
        :meth:`take_message`). One delivery at a time per store. With several consumers
        of one destination, the one that loses the race for a message finds out at its
        first write (:class:`MessageTaken`): a handler acts outside the store only after
        it wrote, or on a destination it alone consumes (a compute host's).

        Raises:
            RuntimeError: a delivery is under way already.
        """
        if self._handed is not None or self._handed_in_block is not None:
            raise RuntimeError("a delivery is under way on this store already")
        found = self._peek_message(held, destinations)
        if found is None:
            yield None
            return
        self._handed = found
        try:
            if self._in_block():
                self._take_handed()
            yield found[1]
            if self._handed is not None:
                self._take_handed()  # the handler wrote nothing
        finally:
            self._handed = None

    def acknowledge(self) -> None:
        """Take the message of the delivery under way now, if no write has taken it yet
        (in the open block, if there is one). Nothing happens outside a delivery."""
        if self._handed is not None:
            self._take_handed()

    def _in_block(self) -> bool:
        """Whether an atomic block is open (backends say)."""
        return False

    def _take_handed(self) -> None:
        """Take the delivery's message now (a backend calls this when a transaction
        opens or a write outside a block happens while a delivery waits to take)."""
        handed = self._handed
        if handed is None:
            return
        self._handed = None
        self._remove_message(handed[0])
        if self._in_block():
            self._handed_in_block = handed

    def _block_ended(self, committed: bool) -> None:
        """The outermost block ended (a backend calls this): a rollback hands back the
        message its transaction took."""
        taken, self._handed_in_block = self._handed_in_block, None
        if not committed and taken is not None:
            self._handed = taken

    @abc.abstractmethod
    def atomic(self) -> contextlib.AbstractContextManager[None]:
        """A block whose writes are all kept, or all undone if it raises. Nests.

        An inner block that raises undoes its own writes only (a savepoint): the
        enclosing block goes on if it catches the error, and is undone whole if the
        error leaves it. The outermost block commits when it ends normally.
        """

    def _batch(self) -> contextlib.AbstractContextManager[None]:
        """Group the few writes of one port method: a transaction when none is open.

        Not a savepoint inside an open block (the method raises before it writes, or the
        error leaves the caller's block): backends may make it cheaper than atomic().
        """
        return self.atomic()

    def close(self) -> None:  # noqa: B027 - an optional hook, not abstract on purpose
        """Release the backend's resources (nothing for the memory store)."""

    # -- configuration records ----------------------------------------------------------

    def put_host(self, host: Host) -> None:
        self._put(HOST, host.name, host, liveness_index(host))

    def get_host(self, name: str) -> Host | None:
        found: Host | None = self._get(HOST, name)
        return found

    def list_hosts(self) -> list[Host]:
        return list(self._values(HOST))

    def down_hosts(self, now: dt.datetime, service_down_time: float) -> list[Host]:
        """The hosts whose compute service is down at ``now``, in the order they were
        added: marked down (``up`` false), or whose last heartbeat is more than
        ``service_down_time`` seconds away from ``now`` (either way, as
        :func:`coldmig_fsm.roles.services.is_up` says). A host that never sent a
        heartbeat is up.

        By an ordered index of the hosts' liveness (:func:`liveness_index`, kept with
        every :meth:`put_host`): the cost grows with the hosts found, not with the
        cloud's hosts, so that a runner may ask at every step.
        """
        cut = self._liveness_cut
        if cut[0] != now or cut[1] != service_down_time:  # (a runner asks at every step)
            low = _stamp(_shifted(now, -service_down_time))
            high = _stamp(_shifted(now, service_down_time))
            cut = self._liveness_cut = (now, service_down_time, low, high)
        return list(self._outside(HOST, cut[2], cut[3]))

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
        """Add a new instance, owned by its project from now on.

        Raises:
            ValueError: an instance with this uuid exists.
        """
        with self._batch():
            if self._get(INSTANCE, instance.uuid) is not None:
                raise ValueError(f"instance {instance.uuid} already exists")
            self._put(
                INSTANCE,
                instance.uuid,
                instance,
                task_index(instance.task_state),
                instance.name,
                (instance.host, None),
            )
            self._own(instance.uuid, project=instance.project_id)

    def get_instance(self, uuid: str) -> Instance:
        """Raises: InstanceNotFound."""
        found: Instance | None = self._get(INSTANCE, uuid)
        if found is None:
            raise InstanceNotFound(f"Instance {uuid} could not be found.")
        return found

    def list_instances(self) -> list[Instance]:
        """Every instance, in the order they were added (a view: reads everything)."""
        return list(self._values(INSTANCE))

    def find_instance(self, name: str) -> Instance | None:
        """The (first) instance called ``name``, or ``None`` (by index)."""
        found: list[Instance] = self._group(INSTANCE, name)
        return found[0] if found else None

    def instances_on(self, host: str, *, busy: bool = False) -> list[Instance]:
        """The instances whose ``host`` is ``host``, in the order they were added (by
        index: the cost grows with that host's instances only).

        Args:
            busy: only those with a task under way (``task_state`` not ``None``).
        """
        found: list[Instance] = self._hosted(INSTANCE, host, exclude=_NO_TASK if busy else None)
        return found

    def save_instance(
        self,
        instance: Instance,
        expected_task_state: Collection[TaskState | None] | None = None,
    ) -> None:
        """Save ``instance``; with ``expected_task_state``, only if the stored one matches.

        Raises:
            UnexpectedTaskStateError: the stored task_state is not one of the expected;
                nothing was written.
            InstanceNotFound: there is no such instance.
        """
        index = task_index(instance.task_state)
        hosts = (instance.host, None)
        expected = (
            None if expected_task_state is None else {task_index(t) for t in expected_task_state}
        )
        try:
            actual = self._swap(INSTANCE, instance.uuid, instance, index, expected, hosts)
        except KeyError:
            raise InstanceNotFound(f"Instance {instance.uuid} could not be found.") from None
        if actual is not None:
            assert expected is not None  # without an expectation a save is never refused
            shown = ", ".join(sorted(e or "None" for e in expected))
            raise UnexpectedTaskStateError(
                f"Unexpected task state: expecting [{shown}] but the actual state is "
                f"{actual or 'None'} (instance {instance.describe()})"
            )

    # -- migrations ---------------------------------------------------------------------

    def add_migration(self, migration: Migration) -> None:
        """Add (or replace) a migration, owned by its instance's project from now on."""
        with self._batch():
            self._put(
                MIGRATION,
                str(migration.id),
                migration,
                migration.status.value,
                migration.instance_uuid,
                (migration.source_compute, migration.dest_compute),
            )
            self._own(migration.uuid, like=migration.instance_uuid)

    def get_migration(self, migration_id: int) -> Migration:
        """Raises: MigrationNotFound."""
        found: Migration | None = self._get(MIGRATION, str(migration_id))
        if found is None:
            raise MigrationNotFound(f"Migration {migration_id} could not be found.")
        return found

    def list_migrations(self, instance_uuid: str | None = None) -> list[Migration]:
        """The migrations of ``instance_uuid`` (by index), oldest first; every migration
        when ``None`` (a view: reads everything)."""
        if instance_uuid is None:
            return list(self._values(MIGRATION))
        return list(self._group(MIGRATION, instance_uuid))

    def migrations_on(self, host: str, statuses: Collection[MigrationStatus]) -> list[Migration]:
        """The migrations from or to ``host`` (``source_compute`` or ``dest_compute``)
        whose status is one of ``statuses``, oldest first (by index: the cost grows with
        the matching migrations only, not with the host's history)."""
        found: list[Migration] = self._hosted(MIGRATION, host, {s.value for s in statuses})
        return found

    def save_migration(
        self,
        migration: Migration,
        expected_status: Collection[MigrationStatus] | None = None,
    ) -> None:
        """Save ``migration``; with ``expected_status``, only if the stored one matches.

        Raises:
            UnexpectedMigrationStatusError: the stored status is not one of the expected;
                nothing was written.
            MigrationNotFound: with ``expected_status``, there is no such migration.
        """
        key, index = str(migration.id), migration.status.value
        hosts = (migration.source_compute, migration.dest_compute)
        if expected_status is None:
            self._put(MIGRATION, key, migration, index, migration.instance_uuid, hosts)
            return
        expected = {s.value for s in expected_status}
        try:
            actual = self._swap(MIGRATION, key, migration, index, expected, hosts)
        except KeyError:
            raise MigrationNotFound(f"Migration {migration.id} could not be found.") from None
        if actual is not None:
            raise UnexpectedMigrationStatusError(
                f"Migration {migration.id}: expected status in "
                f"[{', '.join(sorted(expected))}] but it is {actual}"
            )

    # -- actions, requests ----------------------------------------------------------------

    def add_action(self, action: InstanceAction) -> None:
        self._put(ACTION, action.request_id, action, group=action.instance_uuid)

    def get_action(self, request_id: str) -> InstanceAction | None:
        found: InstanceAction | None = self._get(ACTION, request_id)
        return found

    def add_action_event(self, request_id: str, event: ActionEvent) -> None:
        """Append ``event`` to the action of ``request_id`` (its message becomes
        ``"Error"`` when the event failed, as in Nova).

        Raises:
            KeyError: no action for ``request_id``.
        """
        with self._batch():
            action = self.get_action(request_id)
            if action is None:
                raise KeyError(f"no instance action for request {request_id}")
            message = "Error" if event.result is EventResult.ERROR else action.message
            self._put(
                ACTION,
                request_id,
                replace(action, events=(*action.events, event), message=message),
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
        """The requests on ``instance_uuid`` (by index), oldest first; every request when
        ``None`` (a view: reads everything)."""
        if instance_uuid is None:
            return list(self._values(REQUEST))
        return list(self._group(REQUEST, instance_uuid))

    # -- the logs: notifications (an outbox), faults ------------------------------------

    def add_notification(self, notification: Notification) -> None:
        """Record ``notification``; write it in the atomic block of the change it
        announces, so that it exists exactly when the change does."""
        self._append(NOTIFICATION, notification)

    def list_notifications(self) -> list[Notification]:
        """Every notification, in the order they were added (a view: reads everything)."""
        return list(self._log(NOTIFICATION))

    def notifications_after(
        self, seq: int = 0, limit: int | None = None
    ) -> list[tuple[int, Notification]]:
        """The notifications added after sequence number ``seq``, oldest first, with
        their sequence numbers (by index).

        Sequence numbers increase with every log entry and are never reused, so a
        publisher that keeps the last one it forwarded (in its own storage, or as the
        idempotency key of what it sends) resumes where it stopped. ``limit``: at most
        that many.
        """
        found: list[tuple[int, Notification]] = self._log_after(NOTIFICATION, seq, limit)
        return found

    def take_outbox(self, limit: int = 100) -> list[Notification]:
        """The next notifications not yet handed out (at most ``limit``), oldest first.

        The store keeps the outbox's cursor and moves it past what it returns, in the
        caller's atomic block: publish inside the block, and a failed publish (the block
        rolls back) hands the same notifications out again. Each notification is handed
        out by exactly one committed call, however many publishers there are (the cursor
        is moved by a compare-and-swap).
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        while True:
            with self.atomic():
                cursor = self._counter(OUTBOX)
                batch = self.notifications_after(cursor, limit)
                if not batch:
                    return []
                if self._swap_counter(OUTBOX, cursor, batch[-1][0]):
                    return [notification for _, notification in batch]

    def outbox_cursor(self) -> int:
        """The sequence number of the last notification :meth:`take_outbox` handed out."""
        return self._counter(OUTBOX)

    def add_fault(self, fault: Fault) -> None:
        self._append(FAULT, fault, fault.instance_uuid)

    def list_faults(self, instance_uuid: str | None = None) -> list[Fault]:
        """The faults of ``instance_uuid`` (by index), oldest first; every fault when
        ``None``."""
        found: list[Fault] = self._log(FAULT, instance_uuid)
        return found
