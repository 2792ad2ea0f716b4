"""The in-memory store: dictionaries, their indexes, and an undo journal.

:class:`MemoryStore` is the default backend, for tests, harnesses and one-process runs.
Every lookup the port promises by index is a dictionary here, kept with every write and
restored with it when an atomic block is undone: name and instance groups, host (and for
a migration its destination) by index value, logs by group, the message queue per
destination and per instance, usage and generation per host, usage per project, and the
hosts' liveness in order (a sorted list, for
:meth:`~coldmig_fsm.stores.base.Store.down_hosts`).

``Store`` is re-exported from here for the modules that imported it before the port
moved to :mod:`coldmig_fsm.stores.base`.
"""

from __future__ import annotations

import bisect
import contextlib
from collections import deque
from collections.abc import Callable, Collection, Mapping
from typing import Any, NamedTuple

from coldmig_fsm.messages import Message
from coldmig_fsm.records import Allocation, Resources
from coldmig_fsm.stores.base import RANGED, GenerationConflict, HostUsage, MessageTaken, Store

__all__ = ["MemorySnapshot", "MemoryStore", "Store"]

_Sum = tuple[int, int, int]  # vcpus, ram_mb, disk_gb: an aggregate
_Queued = tuple[int, Message]  # (order of push, message): an entry of the queue
_ZERO: _Sum = (0, 0, 0)
_NO_BLOCK = contextlib.nullcontext()


class _Block:
    """One ``atomic()`` block of a :class:`MemoryStore` (a plain context manager: blocks
    are opened several times per hop, and a generator-based one costs more)."""

    __slots__ = ("_mark", "_store")

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._mark = 0

    def __enter__(self) -> None:
        self._mark = self._store._enter_block()

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self._store._exit_block(self._mark, committed=kind is None)


def _first(entry: tuple[int, Message]) -> int:
    return entry[0]


class _Row(NamedTuple):
    value: Any
    idx: str  # what a compare-and-swap compares
    group: str | None
    hosts: tuple[str | None, str | None]
    seq: int  # order of first insertion


def _total(per_host: Mapping[str, Resources] | None) -> _Sum:
    if not per_host:
        return _ZERO
    vcpus = ram_mb = disk_gb = 0
    for r in per_host.values():  # one pass, no generators: this runs on every claim
        vcpus += r.vcpus
        ram_mb += r.ram_mb
        disk_gb += r.disk_gb
    return vcpus, ram_mb, disk_gb


def _shift(sums: dict[str, _Sum], key: str, by: _Sum, sign: int) -> None:
    v, r, d = sums.get(key, _ZERO)
    sums[key] = (v + sign * by[0], r + sign * by[1], d + sign * by[2])


_CONTAINERS = (
    "_records",
    "_groups",
    "_hosted_keys",
    "_ranged",
    "_logs",
    "_log_groups",
    "_counters",
    "_allocations",
    "_host_usage",
    "_generations",
    "_project_usage",
    "_owners",
    "_queues",
    "_by_instance",
)
"""A :class:`MemoryStore`'s top-level containers: a snapshot holds a copy of each. Below
them, a value is either immutable (a record, a consumer's allocations, an instance's
tuple of queued entries, a sum) or a container the store copies before it first writes
it after a snapshot (:meth:`MemoryStore._mine`)."""
_SCALARS = ("_row_seq", "_log_seq", "_message_seq", "_pending")
"""The rest of a snapshot: sequence numbers, and the cached tuple of queued messages."""


class MemorySnapshot:
    """What a :class:`MemoryStore` held at one moment (:meth:`MemoryStore.snapshot`).

    Opaque: only :meth:`MemoryStore.restore` reads it. It holds its own copy of the
    store's top-level containers and shares everything below them (the tables, index
    sets, logs and queues, and the immutable records in them) with the store and with
    other snapshots; nothing ever writes a shared container (see
    :meth:`MemoryStore.snapshot`).
    """

    __slots__ = ("state",)

    def __init__(self, state: tuple[Any, ...]) -> None:
        self.state = state


class MemoryStore(Store):
    """Everything in dictionaries. Atomic blocks keep an undo journal.

    The journal lists what each write replaced; a block that raises undoes the entries
    written since it started (an inner block its own, the outermost everything).
    """

    def __init__(self) -> None:
        self._records: dict[str, dict[str, _Row]] = {}
        self._groups: dict[tuple[str, str], dict[str, None]] = {}
        # (kind, host) -> index value -> keys: the records found under a host.
        self._hosted_keys: dict[tuple[str, str], dict[str, dict[str, None]]] = {}
        # kind (of RANGED) -> (index value, key), sorted; records with an empty index left out.
        self._ranged: dict[str, list[tuple[str, str]]] = {kind: [] for kind in RANGED}
        self._row_seq = 0
        self._logs: dict[str, list[tuple[int, Any]]] = {}
        self._log_groups: dict[tuple[str, str], list[int]] = {}  # positions in the log
        self._log_seq = 0
        self._counters: dict[str, int] = {}
        self._allocations: dict[str, dict[str, Resources]] = {}
        self._host_usage: dict[str, _Sum] = {}
        self._generations: dict[str, int] = {}
        self._project_usage: dict[str, _Sum] = {}
        self._owners: dict[str, str] = {}  # consumer -> project
        self._queues: dict[str, deque[_Queued]] = {}  # per destination
        # instance uuid -> its queued entries, oldest first (the entries of the queues,
        # shared). Tuples, replaced on every change and never changed in place, so that a
        # snapshot copies the dictionary only; an instance with none queued has no key.
        self._by_instance: dict[str, tuple[_Queued, ...]] = {}
        self._message_seq = 0
        # Every queued message, oldest first, while no push or take has changed the queues.
        self._pending: tuple[Message, ...] | None = None
        self._journal: list[tuple[Any, ...]] = []
        self._depth = 0
        # Copy-on-write, once a snapshot was taken or restored: the inner containers
        # (tables, index sets, logs, queues) this store may change in place, by id (the
        # values keep them alive, so no id is reused while listed). Any other is shared
        # with a snapshot and is copied before its first write (see _mine).
        self._shared = False
        self._owned: dict[int, Any] = {}

    # -- snapshots ------------------------------------------------------------------------

    def snapshot(self) -> MemorySnapshot:
        """Everything this store holds, as a value that later writes do not change.

        Records, log entries and messages are immutable values. The snapshot copies the
        store's top-level containers only (:data:`_CONTAINERS`: a reference per kind of
        record, index group, log, queue, host and consumer) and shares the tables, index
        sets, logs and queues below them; from then on the store copies one of those
        before it first writes it (copy-on-write). A snapshot does not copy the records
        of a kind, and a write after it copies the container it changes.

        Raises:
            RuntimeError: inside an atomic block (its journal would not survive).
        """
        if self._depth:
            raise RuntimeError("a MemoryStore snapshot is taken outside atomic blocks")
        self._share()
        return MemorySnapshot(self._copy_state())

    def restore(self, snapshot: MemorySnapshot) -> None:
        """Make this store hold exactly what it held when ``snapshot`` was taken.

        ``snapshot`` stays usable: the store shares its inner containers and copies one
        before it first writes it.

        Raises:
            RuntimeError: inside an atomic block.
        """
        if self._depth:
            raise RuntimeError("a MemoryStore is restored outside atomic blocks")
        self._share()
        state = snapshot.state
        for name, container in zip(_CONTAINERS, state[: len(_CONTAINERS)], strict=True):
            setattr(self, name, dict(container))
        for name, value in zip(_SCALARS, state[len(_CONTAINERS) :], strict=True):
            setattr(self, name, value)
        self._journal = []

    def _share(self) -> None:
        """From now on every inner container may be a snapshot's: none is owned."""
        self._shared = True
        self._owned = {}

    def _copy_state(self) -> tuple[Any, ...]:
        containers = tuple(dict(getattr(self, name)) for name in _CONTAINERS)
        return containers + tuple(getattr(self, name) for name in _SCALARS)

    def _mine(self, parent: dict[Any, Any], key: Any, factory: Callable[[], Any] = dict) -> Any:
        """``parent[key]`` (a new ``factory()`` if missing), made this store's own to
        write in place: copied first if a snapshot may share it. ``parent`` is this
        store's own (a top-level container, or what ``_mine`` returned)."""
        child = parent.get(key)
        if child is None:
            child = parent[key] = factory()
            if self._shared:
                self._owned[id(child)] = child
        elif self._shared and id(child) not in self._owned:
            child = parent[key] = child.copy()
            self._owned[id(child)] = child
        return child

    # -- journal --------------------------------------------------------------------------

    def _enter_block(self) -> int:
        """Open a (possibly nested) block; return its journal mark."""
        mark = len(self._journal)
        self._depth += 1
        if self._depth == 1 and self._handed is not None:
            try:
                self._take_handed()  # a delivery's message, in its first transaction
            except BaseException:
                self._exit_block(mark, committed=False)
                raise
        return mark

    def _exit_block(self, mark: int, *, committed: bool) -> None:
        """Close the block opened at ``mark``: undone unless ``committed``; the outermost
        one ends the transaction."""
        try:
            if not committed:
                self._undo(mark)
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._journal.clear()
                self._block_ended(committed)

    def _in_block(self) -> bool:
        return self._depth > 0

    def atomic(self) -> contextlib.AbstractContextManager[None]:
        return _Block(self)

    def _batch(self) -> contextlib.AbstractContextManager[None]:
        # The port's methods here cannot fail between their writes: no journal needed.
        return _NO_BLOCK

    def _note(self, *entry: Any) -> None:
        if self._depth:
            self._journal.append(entry)
        elif self._handed is not None:
            self._take_handed()  # a write outside a block takes a delivery's message

    def _undo(self, mark: int) -> None:
        journal = self._journal
        while len(journal) > mark:
            entry = journal.pop()
            what = entry[0]
            if what == "record":
                _, kind, key, previous = entry
                self._set_row(kind, key, previous)
            elif what == "log":
                kind, group = entry[1], entry[2]
                self._mine(self._logs, kind, list).pop()
                if group is not None:
                    self._mine(self._log_groups, (kind, group), list).pop()
            elif what == "counter":
                self._counters[entry[1]] = entry[2]
            elif what == "alloc":
                _, consumer, previous = entry
                self._replace_allocations(consumer, previous)
            elif what == "generation":
                self._generations[entry[1]] = entry[2]
            elif what == "owner":
                consumer = entry[1]
                held = _total(self._allocations.get(consumer))
                _shift(self._project_usage, self._owners.pop(consumer), held, -1)
            elif what == "push":
                self._unindex(self._mine(self._queues, entry[1], deque).pop())
                self._pending = None
            elif what == "take":
                self._mine(self._queues, entry[1], deque).appendleft(entry[2])
                self._index(entry[2])
                self._pending = None

    # -- records --------------------------------------------------------------------------

    def _set_row(self, kind: str, key: str, row: _Row | None) -> None:
        """Make ``row`` the record (``None``: none), its indexes following (not journaled)."""
        table = self._mine(self._records, kind)
        previous = table.get(key)
        if kind in RANGED:
            self._rerange(kind, key, previous, row)
        if previous is not None and row is not None:
            table[key] = row
            hosts = row.hosts
            if previous.hosts == hosts:  # the common save: at most an index value moves
                if previous.idx != row.idx:
                    for host in hosts if hosts[0] != hosts[1] else hosts[:1]:
                        if host is not None:
                            by_index = self._mine(self._hosted_keys, (kind, host))
                            del self._mine(by_index, previous.idx)[key]
                            self._mine(by_index, row.idx)[key] = None
                return
        if previous is not None:
            for host in set(previous.hosts):
                if host is not None:
                    by_index = self._mine(self._hosted_keys, (kind, host))
                    del self._mine(by_index, previous.idx)[key]
        if row is None:
            del table[key]
            if previous is not None and previous.group is not None:
                del self._mine(self._groups, (kind, previous.group))[key]
            return
        if previous is None:
            table[key] = row
            if row.group is not None:
                self._mine(self._groups, (kind, row.group))[key] = None
        for host in set(row.hosts):
            if host is not None:
                by_index = self._mine(self._hosted_keys, (kind, host))
                self._mine(by_index, row.idx)[key] = None

    def _rerange(self, kind: str, key: str, previous: _Row | None, row: _Row | None) -> None:
        """Move ``key`` in the ordered index of ``kind`` from ``previous``'s index value
        to ``row``'s (a bisection and a list shift: hosts are few)."""
        old = None if previous is None or not previous.idx else (previous.idx, key)
        new = None if row is None or not row.idx else (row.idx, key)
        if old == new:
            return
        ordered = self._mine(self._ranged, kind, list)
        if old is not None:
            del ordered[bisect.bisect_left(ordered, old)]
        if new is not None:
            bisect.insort(ordered, new)

    def _outside(self, kind: str, low: str, high: str) -> list[Any]:
        ordered = self._ranged[kind]
        below = ordered[: bisect.bisect_left(ordered, (low,))]
        above = ordered[bisect.bisect_right(ordered, (high, "\U0010ffff")) :]
        if not below and not above:
            return []
        table = self._records[kind]
        rows = sorted((table[key] for _, key in (*below, *above)), key=lambda r: r.seq)
        return [row.value for row in rows]

    def _get(self, kind: str, key: str) -> Any | None:
        row = self._records.get(kind, {}).get(key)
        return row.value if row is not None else None

    def _put(
        self,
        kind: str,
        key: str,
        value: Any,
        index: str = "",
        group: str | None = None,
        hosts: tuple[str | None, str | None] = (None, None),
    ) -> None:
        table = self._records.get(kind)
        previous = None if table is None else table.get(key)
        if self._depth:
            self._journal.append(("record", kind, key, previous))
        elif self._handed is not None:
            self._take_handed()
        if previous is None:
            self._row_seq += 1
            self._set_row(kind, key, _Row(value, index, group, hosts, self._row_seq))
            return
        self._set_row(kind, key, _Row(value, index, previous.group, hosts, previous.seq))

    def _swap(
        self,
        kind: str,
        key: str,
        value: Any,
        index: str,
        expected: Collection[str] | None,
        hosts: tuple[str | None, str | None] = (None, None),
    ) -> str | None:
        table = self._records.get(kind, {})
        current = table[key]
        if expected is not None and current.idx not in expected:
            return current.idx
        if self._depth:
            self._journal.append(("record", kind, key, current))
        elif self._handed is not None:
            self._take_handed()
        self._set_row(kind, key, _Row(value, index, current.group, hosts, current.seq))
        return None

    def _values(self, kind: str) -> list[Any]:
        return [row.value for row in self._records.get(kind, {}).values()]

    def _group(self, kind: str, group: str) -> list[Any]:
        table = self._records.get(kind, {})
        return [table[key].value for key in self._groups.get((kind, group), ())]

    def _hosted(
        self,
        kind: str,
        host: str,
        indexes: Collection[str] | None = None,
        exclude: str | None = None,
    ) -> list[Any]:
        by_index = self._hosted_keys.get((kind, host), {})
        wanted = by_index if indexes is None else indexes
        keys = {key for index in wanted if index != exclude for key in by_index.get(index, ())}
        table = self._records[kind] if keys else {}
        return [row.value for row in sorted((table[k] for k in keys), key=lambda r: r.seq)]

    # -- logs and counters ----------------------------------------------------------------

    def _append(self, kind: str, value: Any, group: str | None = None) -> None:
        self._log_seq += 1
        log = self._mine(self._logs, kind, list)
        log.append((self._log_seq, value))
        if group is not None:
            self._mine(self._log_groups, (kind, group), list).append(len(log) - 1)
        self._note("log", kind, group)

    def _log(self, kind: str, group: str | None = None) -> list[Any]:
        log = self._logs.get(kind, [])
        if group is None:
            return [value for _, value in log]
        return [log[position][1] for position in self._log_groups.get((kind, group), ())]

    def _log_after(self, kind: str, seq: int, limit: int | None) -> list[tuple[int, Any]]:
        log = self._logs.get(kind, [])
        # Sequence numbers increase along the log: bisect to the first one above ``seq``.
        low, high = 0, len(log)
        while low < high:
            middle = (low + high) // 2
            if log[middle][0] <= seq:
                low = middle + 1
            else:
                high = middle
        return log[low:] if limit is None else log[low : low + limit]

    def _counter(self, name: str) -> int:
        return self._counters.get(name, 0)

    def _swap_counter(self, name: str, expected: int, value: int) -> bool:
        previous = self._counters.get(name, 0)
        if previous != expected:
            return False
        self._note("counter", name, previous)
        self._counters[name] = value
        return True

    def next_id(self, counter: str) -> int:
        previous = self._counters.get(counter, 0)
        self._note("counter", counter, previous)
        self._counters[counter] = previous + 1
        return previous + 1

    # -- placement ------------------------------------------------------------------------

    def allocations(self, consumer: str) -> dict[str, Resources]:
        return dict(self._allocations.get(consumer, {}))

    def set_allocations(
        self,
        consumer: str,
        per_host: Mapping[str, Resources],
        *,
        generations: Mapping[str, int] | None = None,
    ) -> None:
        if generations:
            for host, expected in generations.items():
                actual = self._generations.get(host, 0)
                if actual != expected:
                    raise GenerationConflict(host, expected, actual)
        previous = self._allocations.get(consumer)
        held = dict(per_host) if per_host else None
        old, new = previous or {}, held or {}
        moved = [h for h in old.keys() | new.keys() if old.get(h) != new.get(h)]
        if generations:
            moved.extend(h for h in generations if h not in moved)
        counts = self._generations
        for host in moved:
            generation = counts.get(host, 0)
            self._note("generation", host, generation)
            counts[host] = generation + 1
        self._note("alloc", consumer, previous)
        self._replace_allocations(consumer, held)

    def _replace_allocations(self, consumer: str, held: dict[str, Resources] | None) -> None:
        """Make ``held`` what ``consumer`` holds, the aggregates following (not journaled)."""
        previous = self._allocations.pop(consumer, None)
        if held:
            self._allocations[consumer] = held
        usage = self._host_usage
        dv = dr = dd = 0  # what the consumer's total changes by
        if previous:
            for host, resources in previous.items():
                v, r, d = usage[host]
                usage[host] = (v - resources.vcpus, r - resources.ram_mb, d - resources.disk_gb)
                dv, dr, dd = dv - resources.vcpus, dr - resources.ram_mb, dd - resources.disk_gb
        if held:
            for host, resources in held.items():
                v, r, d = usage.get(host, _ZERO)
                usage[host] = (v + resources.vcpus, r + resources.ram_mb, d + resources.disk_gb)
                dv, dr, dd = dv + resources.vcpus, dr + resources.ram_mb, dd + resources.disk_gb
        project = self._owners.get(consumer)
        if project is not None and (dv or dr or dd):
            _shift(self._project_usage, project, (dv, dr, dd), 1)

    def _own(self, consumer: str, project: str | None = None, like: str | None = None) -> None:
        owner = project if like is None else self._owners.get(like)
        if owner is None or consumer in self._owners:
            return
        self._owners[consumer] = owner
        self._note("owner", consumer)
        _shift(self._project_usage, owner, _total(self._allocations.get(consumer)), 1)

    def host_usage(self, host: str) -> HostUsage:
        return HostUsage(
            Resources(*self._host_usage.get(host, _ZERO)), self._generations.get(host, 0)
        )

    def usage(self, host: str) -> Resources:
        return Resources(*self._host_usage.get(host, _ZERO))

    def project_usage(self, project_id: str) -> Resources:
        return Resources(*self._project_usage.get(project_id, _ZERO))

    def all_allocations(self) -> list[Allocation]:
        return [
            Allocation(consumer, host, resources)
            for consumer, per_host in self._allocations.items()
            for host, resources in per_host.items()
        ]

    # -- the message queue ----------------------------------------------------------------

    def push_message(self, message: Message) -> None:
        destination = message.destination
        self._message_seq += 1
        entry = (self._message_seq, message)
        self._mine(self._queues, destination, deque).append(entry)
        by_instance = self._by_instance
        by_instance[message.instance_uuid] = (*by_instance.get(message.instance_uuid, ()), entry)
        self._pending = None
        self._note("push", destination)

    def _index(self, entry: _Queued) -> None:
        """Put a queued ``entry`` back in its instance's index, at its place in the order
        of push (not journaled: an undone take)."""
        uuid = entry[1].instance_uuid
        queued = self._by_instance.get(uuid, ())
        at = bisect.bisect(queued, entry[0], key=lambda e: e[0])
        self._by_instance[uuid] = (*queued[:at], entry, *queued[at:])

    def _unindex(self, entry: _Queued) -> None:
        """Take ``entry`` (pushed, now taken or undone) out of its instance's index: a
        pass over that instance's entries only (not journaled)."""
        uuid = entry[1].instance_uuid
        kept = tuple(e for e in self._by_instance[uuid] if e[0] != entry[0])
        if kept:
            self._by_instance[uuid] = kept
        else:
            del self._by_instance[uuid]

    def pop_message(self) -> Message | None:
        return self.take_message()

    def pending_messages(self, instance_uuid: str | None = None) -> list[Message]:
        if instance_uuid is not None:
            return [message for _, message in self._by_instance.get(instance_uuid, ())]
        if self._pending is None:
            # A few short queues: sorted by sequence number faster than merged.
            entries = [entry for queue in self._queues.values() for entry in queue]
            entries.sort(key=_first)
            self._pending = tuple(message for _, message in entries)
        return list(self._pending)

    def take_message(
        self, held: Collection[str] = (), *, destinations: Collection[str] | None = None
    ) -> Message | None:
        found = self._peek_message(held, destinations)
        if found is None:
            return None
        self._remove_message(found[0])
        return found[1]

    def _peek_message(
        self, held: Collection[str], destinations: Collection[str] | None
    ) -> tuple[Any, Message] | None:
        # The oldest head among the queues that may deliver: one look per destination.
        best: deque[_Queued] | None = None
        best_name = ""
        for name in self._queues if destinations is None else destinations:
            queue = self._queues.get(name)
            if queue and name not in held and (best is None or queue[0][0] < best[0][0]):
                best, best_name = queue, name
        if best is None:
            return None
        seq, message = best[0]
        return (best_name, seq), message

    def _remove_message(self, ref: Any) -> None:
        name, seq = ref
        queue = self._queues.get(name)
        if not queue or queue[0][0] != seq:
            raise MessageTaken(f"message {seq} to {name} is no longer queued")
        entry = self._mine(self._queues, name, deque).popleft()
        self._unindex(entry)
        self._pending = None
        if self._depth:
            self._journal.append(("take", name, entry))
