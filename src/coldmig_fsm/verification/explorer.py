"""What the verification tools share: actions on a cloud, its abstraction, the step checks.

Both explorers (the exhaustive model checker in :mod:`coldmig_fsm.verification.model_check` and the
Hypothesis machine in :mod:`coldmig_fsm.testing.stateful`) drive a :class:`~coldmig_fsm.Cloud`
through the same :class:`Action` values and judge every step with the same checks:

* :func:`~coldmig_fsm.verification.invariants.violations` on the cloud after the step
  (the spec's state invariants, always against the *shipped* machine's allowed states,
  so that a mutated machine cannot widen what is allowed);
* :func:`step_violations`, the invariants about a *change*: a stopped instance is never
  powered on by a move, a confirm or a revert; every state change belongs to a request
  recorded in the instance-action history;
* for a race of two requests on one instance (:func:`apply`), exactly one wins and the
  loser changes nothing.

:func:`abstract` maps a cloud to a hashable canonical value: two clouds with the same
abstraction behave the same from then on (ids, uuids, timestamps and append-only logs
are left out; references between records are renumbered in order).
"""

from __future__ import annotations

import copy
import enum
import operator
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any, Final, TypeVar

import attrs

from coldmig_fsm.drivers.fake import FakeFault, FakeGuest, FaultMode
from coldmig_fsm.exceptions import (
    ColdmigError,
    InstanceInvalidState,
    MigrationNotFoundByStatus,
    UnexpectedTaskStateError,
)
from coldmig_fsm.machine import MACHINE, Machine
from coldmig_fsm.messages import CONDUCTOR, KINDS, Message
from coldmig_fsm.operations import OPERATIONS, Argument, Op, admin_only
from coldmig_fsm.records import Caller, Instance, Migration, Outcome
from coldmig_fsm.runners.cloud import Cloud
from coldmig_fsm.states import MigrationStatus, MigrationType, PowerState, TaskState, VmState
from coldmig_fsm.verification import invariants

__all__ = [
    "API_OPS",
    "FAULT_MODES",
    "MESSAGE_FIELDS",
    "MESSAGE_HOLDS",
    "PLACES",
    "QUEUE_PLACES",
    "RACES",
    "Action",
    "Holds",
    "Observation",
    "Part",
    "RaceLost",
    "abstract",
    "apply",
    "attempt",
    "clone",
    "fault_free_violations",
    "injected",
    "next_message",
    "observe",
    "overdue_confirms",
    "prepare",
    "step_violations",
    "submit_race",
]

API_OPS: Final = tuple(op.value for op in OPERATIONS)
"""Every public operation on one instance, from :data:`~coldmig_fsm.operations.OPERATIONS`
(``migrate`` also takes a target host, ``resize`` a flavor)."""

ADMIN_ONLY: Final = frozenset(op.value for op in OPERATIONS if admin_only(op))
"""Operations that only an admin may run; the explorers run every other one as the owner,
so that a lock (taken by the admin) refuses them."""

RACES: Final = (
    ("migrate", "migrate"),
    ("migrate", "resize"),
    ("migrate", "stop"),
    ("confirm_resize", "revert_resize"),
    ("revert_resize", "confirm_resize"),
    ("confirm_resize", "delete"),
    ("stop", "delete"),
    ("abort_migration", "abort_migration"),
)
"""Pairs of requests raced on one instance: both prepared on the same read, then submitted."""

FAULT_MODES: Final = ("raise", "rollback", "hang", "crash")
"""How an injected driver fault behaves (``rollback``: raises ``InstanceFaultRollback``)."""

_RACE_LOSSES: Final = (UnexpectedTaskStateError, MigrationNotFoundByStatus, InstanceInvalidState)


@attrs.frozen
class Action:
    """One move of an explorer.

    ``op`` is an API operation (:data:`API_OPS`), ``race``, ``step`` (deliver the next
    message), ``restart_compute``, ``reconcile`` or ``advance_clock``. A step may carry a
    ``fault``: ``(host, call, mode)`` armed for this step only, or ``"lose"`` to drop the
    message instead of delivering it.
    """

    op: str
    instance: str | None = None
    arg: str | None = None
    second: str | None = None
    fault: tuple[str, str, str] | str | None = None

    def __str__(self) -> str:
        if self.op == "race":
            return f"race {self.arg} / {self.second} on {self.instance}"
        if self.op == "step":
            if self.fault == "lose":
                return "step (message lost)"
            if isinstance(self.fault, tuple):
                host, call, mode = self.fault
                return f"step ({call} on {host}: {mode})"
            return "step"
        text = self.op
        if self.instance is not None:
            text += f" {self.instance}"
        if self.arg is not None:
            text += f" {self.arg}"
        if isinstance(self.fault, tuple):
            host, call, mode = self.fault
            text += f" ({call} on {host}: {mode})"
        return text

    @property
    def is_fault(self) -> bool:
        return self.fault is not None


class RaceLost(AssertionError):
    """Both requests of a race won, or the loser changed something."""


def caller_for(op: str, cloud: Cloud, name: str) -> Caller:
    """The caller an explorer uses for ``op``: the admin for admin-only operations and
    for lock/unlock, else the instance's owner."""
    if op in ADMIN_ONLY or op in ("lock", "unlock"):
        return Caller.admin()
    return Caller.owner(cloud.instance(name).project_id)


def prepare(cloud: Cloud, op: str, name: str, arg: str | None = None) -> Any:
    """Run ``op``'s guards without writing anything (lock/unlock: ``None``).

    Raises:
        ColdmigError: the guard error the operation would raise.
    """
    api, uuid, caller = cloud.api, cloud.instance(name).uuid, caller_for(op, cloud, name)
    spec = OPERATIONS[Op(op)]
    if not spec.changes_state:  # lock, unlock: refused when there is nothing to change
        instance = api.get_instance(uuid, caller)
        if instance.locked == (spec.op is Op.LOCK):
            raise InstanceInvalidState(f"{name} is already {op}ed")
        return None
    return api.prepare(spec.op, uuid, caller, arg)


def enabled(
    cloud: Cloud, action: Action, abstraction: Abstraction | None = None
) -> Callable[[], object]:
    """Run the guards of an API request or race ``action`` without writing anything;
    return what submits it (for a race: :func:`submit_race` with ``abstraction``, which
    returns the picture and names the race left).

    Raises:
        ColdmigError: a guard refused it (the cloud is unchanged).
    """
    op, name = action.op, action.instance
    assert name is not None
    if op == "race":
        assert action.arg is not None and action.second is not None
        ops = (action.arg, action.second)
        first = prepare(cloud, ops[0], name, _race_arg(cloud, ops[0], name))
        second = prepare(cloud, ops[1], name, _race_arg(cloud, ops[1], name))
        return lambda: submit_race(cloud, first, second, ops, abstraction)
    request = prepare(cloud, op, name, action.arg)
    if OPERATIONS[Op(op)].changes_state:
        return lambda: cloud.api.submit(request)

    def lock() -> None:  # lock, unlock: one write (a second lock is accepted, as Nova does)
        cloud.request(op, name, action.arg, caller_for(op, cloud, name))

    return lock


def next_message(cloud: Cloud) -> Message | None:
    """The message :meth:`Cloud.step` would deliver next (``None``: nothing deliverable)."""
    for message in cloud.pending():
        if message.destination == CONDUCTOR or cloud.is_up(message.destination.partition(":")[2]):
            return message
    return None


def _arm(cloud: Cloud, fault: tuple[str, str, str], uuid: str | None) -> None:
    assert cloud.hypervisor is not None
    host, call, mode = fault
    rollback = mode == "rollback"
    cloud.hypervisor.arm(
        FakeFault(
            host,
            call,
            FaultMode.RAISE if rollback else FaultMode(mode),
            rollback=rollback,
            instance=uuid,
        )
    )


def apply(cloud: Cloud, action: Action) -> Message | None:
    """Do ``action`` on ``cloud`` (which changes); return the message delivered, if any.

    Raises:
        ColdmigError: an API operation's guard refused it (nothing changed).
        RaceLost: both requests of a race were accepted, or the loser changed something.
    """
    op = action.op
    if op in API_OPS or op == "race":
        enabled(cloud, action)()
        return None
    if op == "step":
        message = next_message(cloud)
        if message is None:
            return None
        if action.fault == "lose":
            host = message.destination.partition(":")[2] or None
            cloud.lose_next(message.kind, host)
        elif isinstance(action.fault, tuple):
            _arm(cloud, action.fault, message.instance_uuid)
        return cloud.step()
    if isinstance(action.fault, tuple):
        _arm(cloud, action.fault, None)
    if op == "restart_compute":
        assert action.arg is not None
        cloud.restart_compute(action.arg)
    elif op == "reconcile":
        cloud.reconcile()
    elif op == "advance_clock":
        cloud.advance_clock(float(action.arg or cloud.config.resize_confirm_window))
    else:
        raise ValueError(f"unknown action {op!r}")
    return None


_T = TypeVar("_T")


def attempt(action: Action, run: Callable[[], _T]) -> tuple[_T | None, str | None] | None:
    """Run ``run`` (``action`` done on a cloud) and sort out what it raised.

    Returns ``None`` when a guard refused ``action`` (an API request or a race:
    ``ColdmigError``); else what ``run`` returned and ``None``, or ``None`` and the
    violation's text when something escaped the cloud (which must never happen: a role's
    error, or :class:`RaceLost`)."""
    try:
        return run(), None
    except ColdmigError as escaped:
        if action.op in API_OPS or action.op == "race":
            return None  # a guard refused it (enabled actions are prepared first)
        return None, f"`{action}` raised {type(escaped).__name__}: {escaped}"
    except Exception as escaped:  # the cloud must never let one out (RaceLost too)
        return None, f"`{action}` raised {type(escaped).__name__}: {escaped}"


def submit_race(
    cloud: Cloud,
    first: Any,
    second: Any,
    ops: tuple[str, str],
    abstraction: Abstraction | None = None,
) -> tuple[tuple[Any, ...], list[Any]]:
    """Submit two requests prepared on the same read (``ops`` names them): the first wins,
    the second must be refused as a lost race and change nothing.

    Returns :meth:`Abstraction.picture_and_names` of the cloud after the race (the same
    before and after the loser: what a caller keying the state need not compute again),
    by ``abstraction`` (default: a new one).

    Raises:
        RaceLost: both were accepted, or the loser changed the cloud.
        ColdmigError: the first was refused, or the second by a guard that is not a race
            loss (what a fresh read would refuse).
    """
    reader = Abstraction() if abstraction is None else abstraction
    cloud.api.submit(first)
    before = reader.picture_and_names(cloud)
    try:
        cloud.api.submit(second)
    except _RACE_LOSSES:
        after = reader.picture_and_names(cloud)
        if after[0] != before[0]:
            raise RaceLost(f"the losing {ops[1]} changed the cloud") from None
        return after
    raise RaceLost(f"both {ops[0]} and {ops[1]} were accepted")


def other_flavor(cloud: Cloud, name: str) -> str | None:
    """The first enabled flavor (by id) that ``name`` does not have: what explorers resize to."""
    current = cloud.instance(name).flavor
    for flavor in sorted(cloud.store.list_flavors(), key=lambda f: f.id):
        if flavor.id != current and not flavor.disabled:
            return flavor.id
    return None


def _race_arg(cloud: Cloud, op: str, name: str) -> str | None:
    return other_flavor(cloud, name) if OPERATIONS[Op(op)].argument is Argument.FLAVOR else None


def clone(cloud: Cloud) -> Cloud:
    """A deep copy of ``cloud`` (store, fake hypervisor, clock) that shares what is immutable.

    The machine and every frozen record (instances, migrations, actions, requests,
    notifications, faults, messages, hosts, flavors, guests) never change in place, so
    the copy shares them and copies only the containers that hold them: about 5 times
    faster than a plain ``deepcopy``.
    """
    store = cloud.store
    shared: list[object] = [cloud.runtime.machine, cloud.config]
    shared += store.list_instances()
    shared += store.list_migrations()
    shared += store.list_actions()
    shared += store.list_requests()
    shared += store.list_notifications()
    shared += store.list_faults()
    shared += store.list_hosts()
    shared += store.list_flavors()
    shared += cloud.pending()
    if cloud.hypervisor is not None:
        hv = cloud.hypervisor
        shared += hv.calls
        shared += hv.armed
        for host, uuids in hv.domains().items():
            shared += [hv.guest(host, uuid) for uuid in uuids]
    memo: dict[int, Any] = {id(item): item for item in shared}
    return copy.deepcopy(cloud, memo)


# --- the abstraction -------------------------------------------------------------------


def _guest(guest: FakeGuest | None, names: dict[str, str]) -> Hashable:
    if guest is None:
        return None
    return (
        names.get(guest.uuid, guest.uuid),
        guest.power_state.value,
        guest.vcpus,
        guest.ram_mb,
        guest.disk_gb,
        _guest(guest.backup, names),
    )


def _rename(text: str, names: dict[str, str]) -> str:
    for uuid, name in names.items():
        text = text.replace(uuid, name)
    return text


class _Ref(enum.Enum):
    """How a message field is written in a picture."""

    VALUE = enum.auto()  # as it is (an enum member: its value; a tuple: uuids renamed)
    INSTANCE = enum.auto()  # an instance uuid: the instance's name
    REQUEST = enum.auto()  # a request id: its index among the pending requests
    REQUESTS = enum.auto()  # a tuple of request ids, each renumbered alike
    MIGRATION = enum.auto()  # a migration id: its index among the migrations kept


_REFS: Final = {
    "instance_uuid": _Ref.INSTANCE,
    "request_id": _Ref.REQUEST,
    "confirm_request_id": _Ref.REQUEST,
    "also_settles": _Ref.REQUESTS,
    "migration_id": _Ref.MIGRATION,
}


class Holds(enum.Enum):
    """What names a place of a picture holds (what symmetry reduction renames)."""

    NOTHING = "nothing"  # never a host's or an instance's name
    HOST = "host"  # a host's name, or None
    HOSTS = "hosts"  # a tuple of host names
    INSTANCE = "instance"  # an instance's name (or what stands where there is none)
    TEXT = "text"  # a string in which host and instance names are words
    TEXTS = "texts"  # a tuple of such strings


MESSAGE_HOLDS: Final = {
    "request_id": Holds.NOTHING,
    "instance_uuid": Holds.INSTANCE,
    "confirm_request_id": Holds.NOTHING,
    "migration_id": Holds.NOTHING,
    "also_settles": Holds.NOTHING,
    "flavor_id": Holds.NOTHING,
    "target_host": Holds.HOST,
    "hosts": Holds.HOSTS,
    "attempt": Holds.NOTHING,
    "alternates": Holds.HOSTS,
    "disks": Holds.TEXTS,  # "<uuid>.disk": "<name>.disk" once uuids are renamed
    "bytes_copied": Holds.NOTHING,
    "on_source": Holds.NOTHING,
    "reason": Holds.TEXT,  # names the host that restarted and the instance
    "phase": Holds.NOTHING,
    "clean": Holds.HOSTS,
}
"""What names each message field holds. Every field of every message but ``host``
(written as the destination) is listed: a message with a field missing here fails at
import, so that symmetry reduction cannot miss a name."""


def _message_fields(cls: type[Message]) -> tuple[tuple[str, _Ref], ...]:
    fields = tuple(f.name for f in attrs.fields(cls) if f.name != "host")
    missing = [name for name in fields if name not in MESSAGE_HOLDS]
    if missing:
        raise TypeError(
            f"message {cls.__name__} has fields {missing} that MESSAGE_HOLDS does not "
            "list: say what names each holds (Holds.NOTHING if none)"
        )
    return tuple((name, _REFS.get(name, _Ref.VALUE)) for name in fields)


MESSAGE_FIELDS: Final = {kind: _message_fields(cls) for kind, cls in KINDS.items()}
"""Per message kind, the fields written in a picture's queue element after ``kind`` and
``destination``, in order, with how each is written."""


class Part(enum.IntEnum):
    """The parts of an :func:`abstract` picture, in order."""

    INSTANCES = 0
    MIGRATIONS = 1
    CLAIMS = 2
    QUEUE = 3
    REQUESTS = 4
    HOSTS = 5
    GUESTS = 6
    ARMED = 7


PLACES: Final = {
    Part.INSTANCES: ((0, Holds.INSTANCE), (4, Holds.HOST), (5, Holds.HOST)),  # + node
    Part.MIGRATIONS: ((0, Holds.INSTANCE), (3, Holds.HOST), (4, Holds.HOST)),
    Part.CLAIMS: ((0, Holds.INSTANCE), (1, Holds.HOST)),  # consumer (or migration#<n>)
    Part.REQUESTS: ((1, Holds.INSTANCE),),
    Part.HOSTS: ((0, Holds.HOST),),
    Part.GUESTS: ((0, Holds.HOST),),  # each guest: (instance, ..., backup guest or None)
    Part.ARMED: ((0, Holds.HOST), (5, Holds.INSTANCE)),
}
"""Where the elements of each part of a picture hold names (the queue's: per kind,
:data:`QUEUE_PLACES`); nothing else in a picture is a host's or an instance's name."""

QUEUE_PLACES: Final = {
    kind: (
        (1, Holds.TEXT),  # the destination: "conductor" or "compute:<host>"
        *(
            (2 + k, MESSAGE_HOLDS[name])
            for k, (name, _) in enumerate(fields)
            if MESSAGE_HOLDS[name] is not Holds.NOTHING
        ),
    )
    for kind, fields in MESSAGE_FIELDS.items()
}
"""Per message kind, where its queue element holds names."""


class _MessageShape:
    """How one message class is written in a picture (computed once per class).

    ``get`` reads its fields but ``host`` (one tuple, in :data:`MESSAGE_FIELDS` order),
    ``hows`` says how each is written and ``named`` which places of the queue element
    hold names (:data:`QUEUE_PLACES`).
    """

    __slots__ = ("get", "hows", "named", "texts")

    def __init__(self, kind: str, fields: tuple[tuple[str, _Ref], ...]) -> None:
        getter = operator.attrgetter(*(name for name, _ in fields))
        if len(fields) == 1:
            self.get: Callable[[Message], tuple[Any, ...]] = lambda m: (getter(m),)
        else:
            self.get = getter
        self.hows = tuple(how for _, how in fields)
        self.named = QUEUE_PLACES[kind]
        # Fields that are text naming instances (by uuid): written with names instead.
        self.texts = tuple(MESSAGE_HOLDS[name] in (Holds.TEXT, Holds.TEXTS) for name, _ in fields)


_SHAPES: Final = {kind: _MessageShape(kind, fields) for kind, fields in MESSAGE_FIELDS.items()}

_VALUE: Final[dict[Any, Any]] = {
    member: member.value
    for kind in (VmState, TaskState, PowerState, MigrationStatus, MigrationType, FaultMode)
    for member in kind
}
"""Each state enum member's value (a lookup is several times cheaper than ``.value``)."""
_VALUE[None] = None


def named_values(element: tuple[Any, ...], places: Iterable[tuple[int, Holds]]) -> list[Any]:
    """What the places of ``element`` that hold hosts or text hold, in order (a tuple
    place's items one by one): where :mod:`~coldmig_fsm.verification.symmetry` looks
    for the hosts, in the order it reads them."""
    found: list[Any] = []
    for at, holds in places:
        if holds in (Holds.HOST, Holds.TEXT):
            found.append(element[at])
        elif holds in (Holds.HOSTS, Holds.TEXTS):
            found.extend(element[at])
    return found


class _Message:
    """What a picture takes of one message, whatever the rest of the state: its queue
    element but the ids numbered per state (``numbered``: their place, how each is
    numbered and the id), and :func:`named_values` of it."""

    __slots__ = ("by_numbers", "message", "migration_id", "named", "numbered", "values")

    def __init__(self, message: Message, names: dict[str, str]) -> None:
        shape = _SHAPES[message.kind]
        values: list[Any] = [message.kind, message.destination]
        numbered: list[tuple[int, _Ref, Any]] = []
        for raw, how, text in zip(shape.get(message), shape.hows, shape.texts, strict=True):
            value = raw
            if how is _Ref.VALUE:
                if isinstance(raw, tuple):
                    value = tuple(_rename(str(v), names) for v in raw)
                elif text and isinstance(raw, str):  # e.g. a reason naming the instance
                    value = _rename(raw, names)
                elif isinstance(raw, enum.Enum):
                    value = raw.value
            elif how is _Ref.INSTANCE:
                value = names.get(raw, raw)
            elif raw is not None:  # an id: numbered per state (None stays None)
                numbered.append((len(values), how, raw))
            values.append(value)
        self.message = message  # kept: the cache's key is its id
        self.values = tuple(values)
        self.numbered = tuple(numbered)
        self.named = tuple(named_values(self.values, shape.named))
        self.migration_id: int | None = getattr(message, "migration_id", None)
        self.by_numbers: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    def element(self, req_ref: dict[str, int], mig_ref: dict[int, int]) -> tuple[Any, ...]:
        if not self.numbered:
            return self.values
        numbers: list[Any] = []
        for _, how, value in self.numbered:
            if how is _Ref.REQUEST:
                numbers.append(req_ref.get(value, "settled"))
            elif how is _Ref.MIGRATION:
                numbers.append(mig_ref.get(value, "gone"))
            else:  # _Ref.REQUESTS
                numbers.append(tuple(req_ref.get(v, "settled") for v in value))
        key = tuple(numbers)
        element = self.by_numbers.get(key)
        if element is None:
            filled = list(self.values)
            for (at, _, _), number in zip(self.numbered, key, strict=True):
                filled[at] = number
            element = self.by_numbers[key] = tuple(filled)
        return element


_KEPT = 1 << 15  # entries per cache before it starts again empty (memory stays bounded)


class Abstraction:
    """Builds :func:`abstract` pictures, remembering what a message or a guest gives.

    Messages and guests are frozen records shared by every snapshot of a search (most
    stay the same across a transition), so what one gives is computed once and found
    again by the record's identity; each entry keeps the record, so that its ``id``
    is not reused while the entry lives. The other records change with almost every
    transition, or cost less to read than to look up.

    Invariant: :meth:`picture` of a cloud equals :func:`abstract` of it, whatever the
    clouds seen before: the caches start again when the instances' names or uuids
    change (what a message or guest gives depends on them), and each when it grows past
    ``_KEPT`` entries.
    """

    def __init__(self) -> None:
        self._names: dict[str, str] = {}
        self._messages: dict[int, _Message] = {}
        self._guests: dict[int, tuple[FakeGuest, Hashable]] = {}

    def picture(self, cloud: Cloud) -> tuple[Any, ...]:
        """:func:`abstract` of ``cloud``."""
        return self.picture_and_names(cloud)[0]

    def picture_and_names(self, cloud: Cloud) -> tuple[tuple[Any, ...], list[Any]]:
        """:func:`abstract` of ``cloud``, and what the places of the instances (by name),
        the migrations and the queue that hold hosts or text hold, in order
        (:func:`named_values` of each element): what
        :func:`~coldmig_fsm.verification.symmetry.canonical` reads first."""
        store = cloud.store
        value = _VALUE
        instances = store.list_instances()
        instances.sort(key=_by_name)
        names = {i.uuid: i.name for i in instances}
        if names != self._names:
            self._messages = {}
            self._guests = {}
            self._names = names
        cache = self._messages
        queue = []
        for message in cloud.pending():
            entry = cache.get(id(message))
            if entry is None:
                if len(cache) > _KEPT:
                    cache.clear()
                entry = cache[id(message)] = _Message(message, names)
            queue.append(entry)
        migrations = store.list_migrations()
        allocations = store.all_allocations()
        kept = migrations
        if migrations:
            migrations.sort(key=_by_id)
            referenced = {entry.migration_id for entry in queue}
            referenced.update(i.migration_id for i in instances)
            latest: dict[str, int] = {}
            for migration in migrations:
                if not migration.status.is_final or migration.status is MigrationStatus.CANCELLED:
                    latest[migration.instance_uuid] = migration.id
            claimed = {a.consumer for a in allocations}  # store.allocations(uuid) not empty
            kept = [
                m
                for m in migrations
                if not m.status.is_final
                or m.id in referenced
                or latest.get(m.instance_uuid) == m.id
                or m.uuid in claimed
            ]
        mig_ref = {m.id: index for index, m in enumerate(kept)}
        pending = [r for r in store.list_requests() if r.outcome is Outcome.PENDING]
        req_ref = {r.request_id: index for index, r in enumerate(pending)}

        named: list[Any] = []
        inst_part = []
        for i in instances:
            named += (i.host, i.node)
            inst_part.append(
                (
                    i.name,
                    value[i.vm_state],
                    value[i.task_state],
                    value[i.power_state],
                    i.host,
                    i.node,
                    i.flavor,
                    i.old_flavor,
                    i.new_flavor,
                    i.locked,
                    i.locked_by,
                    i.progress,
                    tuple(sorted(i.system_metadata.items())),
                    None if i.migration_id is None else mig_ref.get(i.migration_id, "gone"),
                )
            )
        mig_part = []
        if kept:
            now = cloud.clock.now()
            window = cloud.config.resize_confirm_window
            for m in kept:
                named += (m.source_compute, m.dest_compute)
                mig_part.append(
                    (
                        names.get(m.instance_uuid, m.instance_uuid),
                        value[m.migration_type],
                        value[m.status],
                        m.source_compute,
                        m.dest_compute,
                        m.old_flavor,
                        m.new_flavor,
                        None if m.request_id is None else req_ref.get(m.request_id, "settled"),
                        m.status is MigrationStatus.FINISHED
                        and window > 0
                        and m.updated_at is not None
                        and (now - m.updated_at).total_seconds() >= window,
                    )
                )
        consumer = {m.uuid: f"migration#{index}" for index, m in enumerate(kept)}
        consumer.update(names)
        claims = [
            (consumer.get(a.consumer, "?"), a.host, a.resources.vcpus, a.resources.ram_mb)
            for a in allocations
        ]
        claims.sort()
        queue_part = []
        for entry in queue:
            queue_part.append(entry.element(req_ref, mig_ref))
            named += entry.named
        req_part = tuple((r.action, names.get(r.instance_uuid, r.instance_uuid)) for r in pending)
        hosts = tuple((h.name, h.up, up) for h, up in cloud.hosts_up())
        guests: tuple[Any, ...] = ()
        armed: tuple[Any, ...] = ()
        if cloud.hypervisor is not None:
            hv = cloud.hypervisor
            seen = self._guests
            on_hosts = []
            for host, on_host in hv.guests_by_host().items():
                elements = []
                for g in on_host:
                    found = seen.get(id(g))
                    if found is None:
                        if len(seen) > _KEPT:
                            seen.clear()
                        found = seen[id(g)] = (g, _guest(g, names))
                    elements.append(found[1])
                on_hosts.append((host, tuple(elements)))
            guests = tuple(on_hosts)
            faults = hv.armed
            if faults:
                armed = tuple(
                    (
                        f.host,
                        f.call,
                        value[f.mode],
                        f.rollback,
                        f.times,
                        names.get(f.instance or "", ""),
                    )
                    for f in faults
                )
        picture = (
            tuple(inst_part),
            tuple(mig_part),
            tuple(claims),
            tuple(queue_part),
            req_part,
            hosts,
            guests,
            armed,
        )
        return picture, named


def _by_name(instance: Instance) -> str:
    return instance.name


def _by_id(migration: Migration) -> int:
    return migration.id


def abstract(cloud: Cloud) -> Hashable:
    """A canonical, hashable picture of everything in ``cloud`` that decides its future.

    Kept: every instance's record (states, host, flavors, lock, stashed old_vm_state,
    migration context), the migrations that can still matter (open, holding a claim,
    named by a message or an instance, or the latest open-or-cancelled one of an
    instance), whether a ``finished`` one is due for auto-confirm, every claim, the
    queue, the pending requests in order, which compute services are down, the guests
    on each host and the armed faults. Left out: uuids and ids (renumbered, also the
    request ids a message settles besides its own), timestamps,
    notifications, faults, settled requests and closed migrations nothing refers to.

    The picture is a tuple of eight parts (:class:`Part`), each a tuple of elements:
    the instances by name, the migrations kept by id, the claims (sorted), the queue in
    order (each message as its ``kind``, its ``destination`` and its
    :data:`MESSAGE_FIELDS`), the pending requests in order, the hosts, the guests on
    each host and the armed faults. :data:`PLACES` says where it holds names.
    """
    return Abstraction().picture(cloud)


# --- the step checks -------------------------------------------------------------------


@attrs.frozen
class Observation:
    """What the step checks need to know about a cloud before a step."""

    states: dict[str, tuple[Any, ...]]
    stopped_origin: frozenset[str]
    running: frozenset[str]
    events: dict[str, int]
    queued: frozenset[str]


_MOVE_TASKS: Final = frozenset(
    {
        TaskState.RESIZE_PREP,
        TaskState.RESIZE_MIGRATING,
        TaskState.RESIZE_MIGRATED,
        TaskState.RESIZE_FINISH,
        TaskState.RESIZE_REVERTING,
    }
)


def _stopped_origin(instance: Instance) -> bool:
    """Is this a stopped instance, or the move (or revert) of one, not being started?"""
    if instance.task_state is TaskState.POWERING_ON:
        return False
    if instance.vm_state is VmState.STOPPED:
        return True
    moving = instance.vm_state is VmState.RESIZED or instance.task_state in _MOVE_TASKS
    return moving and instance.old_vm_state is VmState.STOPPED


def _running_somewhere(cloud: Cloud, instance: Instance) -> bool:
    hv = cloud.hypervisor
    if hv is not None:  # the fake's guests, read directly: what its get_info reports
        for host in cloud.hosts:
            guest = hv.guest(host, instance.uuid)
            if guest is not None and guest.power_state is PowerState.RUNNING:
                return True
        return False
    for host in cloud.hosts:
        try:
            info = cloud.driver(host).get_info(instance)
        except ColdmigError:
            continue
        if info.power_state is PowerState.RUNNING:
            return True
    return False


def observe(cloud: Cloud) -> Observation:
    """Take what :func:`step_violations` compares, before a step."""
    states: dict[str, tuple[Any, ...]] = {}
    origin: set[str] = set()
    running: set[str] = set()
    for instance in cloud.store.list_instances():
        states[instance.uuid] = _state_of(instance)
        if _stopped_origin(instance):
            origin.add(instance.uuid)
        if instance.vm_state is not VmState.DELETED and _running_somewhere(cloud, instance):
            running.add(instance.uuid)
    queued = {m.request_id for m in cloud.pending()}
    queued.update(
        c for m in cloud.pending() if (c := getattr(m, "confirm_request_id", None)) is not None
    )
    return Observation(
        states, frozenset(origin), frozenset(running), _events(cloud), frozenset(queued)
    )


def _state_of(instance: Instance) -> tuple[Any, ...]:
    return (instance.vm_state, instance.task_state, instance.host, instance.flavor)


def _events(cloud: Cloud) -> dict[str, int]:
    return {a.request_id: len(a.events) for a in cloud.store.list_actions()}


def step_violations(
    before: Observation, cloud: Cloud, action: Action, delivered: Message | None = None
) -> list[str]:
    """The invariants about one step, from ``before`` to ``cloud`` as it is now.

    * a stopped instance (or the move or revert of one) that was not being started is
      not running anywhere after the step, unless it already was;
    * every instance whose ``(vm_state, task_state, host, flavor)`` changed has an
      instance action touched by this step: recorded by it, given an event by it, or the
      request of a message it delivered;
    * while no fault was injected, nothing failed but by the scheduler
      (:func:`fault_free_violations`);
    * after a clock advance, no move is left ``finished`` past the confirm window
      (:func:`overdue_confirms`).
    """
    found: list[str] = []
    after = _events(cloud)
    touched = {rid for rid, count in after.items() if count != before.events.get(rid)}
    if action.op in ("advance_clock", "reconcile", "restart_compute"):
        # These deliver (or resume) any number of the queued messages.
        touched |= before.queued
    if delivered is not None:
        touched.add(delivered.request_id)
        confirm = getattr(delivered, "confirm_request_id", None)
        if confirm is not None:
            touched.add(confirm)
    owners = set()
    for rid in touched:
        recorded = cloud.store.get_action(rid)
        if recorded is not None:
            owners.add(recorded.instance_uuid)
    for instance in cloud.store.list_instances():
        uuid = instance.uuid
        name = instance.describe()
        if (
            uuid in before.stopped_origin
            and uuid not in before.running
            and instance.vm_state is not VmState.DELETED
            and _running_somewhere(cloud, instance)
        ):
            found.append(f"{name}: stopped, but powered on by `{action}`")
        old = before.states.get(uuid)
        if old is not None and old != _state_of(instance) and uuid not in owners:
            found.append(
                f"{name}: changed {_show(old)} -> {_show(_state_of(instance))} by `{action}` "
                "with no instance action recording it"
            )
    if action.op == "advance_clock":
        found += overdue_confirms(cloud)
    return found + fault_free_violations(cloud)


def overdue_confirms(cloud: Cloud) -> list[str]:
    """After the periodic tasks ran: no move is left ``finished`` past the confirm window.

    With ``resize_confirm_window`` > 0, a ``finished`` migration whose instance is
    ``resized`` with no task, whose destination's compute service is up and which has
    been finished for at least the window is confirmed by the periodic task (Nova's
    ``_poll_unconfirmed_resizes``); :meth:`Cloud.advance_clock` runs the tasks and
    delivers what they send, so such a migration left ``finished`` is a violation.
    """
    window = cloud.config.resize_confirm_window
    if window <= 0:
        return []
    now = cloud.clock.now()
    found = []
    for migration in cloud.store.list_migrations():
        if migration.status is not MigrationStatus.FINISHED or migration.updated_at is None:
            continue
        waited = (now - migration.updated_at).total_seconds()
        instance = cloud.store.get_instance(migration.instance_uuid)
        dest = migration.dest_compute
        if (
            waited >= window
            and instance.vm_state is VmState.RESIZED
            and instance.task_state is None
            and dest is not None
            and cloud.is_up(dest)
        ):
            found.append(
                f"migration {migration.id}: finished {waited:g} s ago, past the confirm window"
                f" of {window} s, and not confirmed by the periodic tasks"
            )
    return found


SCHEDULER_OUTCOMES: Final = frozenset({"NoValidHost", "MaxRetriesExceeded"})
"""The failures a move may meet with no fault injected: the scheduler found no host."""


def injected(cloud: Cloud) -> bool:
    """Was any fault injected into ``cloud``: a driver fault armed or a message lost?

    Without a fake hypervisor the faults are not known: counted as injected.
    """
    hypervisor = cloud.hypervisor
    return hypervisor is None or hypervisor.faults_armed > 0 or cloud.losses_armed > 0


def fault_free_violations(cloud: Cloud) -> list[str]:
    """While nothing was injected (:func:`injected`), nothing fails but by the scheduler.

    A move, a confirm, a revert, a stop or a delete can only fail because a driver call
    failed, a service crashed or a message was lost, or because no host had room
    (:data:`SCHEDULER_OUTCOMES`). So with no fault injected no instance has a recorded
    fault of another type, and none is in ``error``: a step that fails on its own (a bug
    that a rollback would otherwise hide) is a violation.
    """
    if injected(cloud):
        return []
    found = []
    for instance in cloud.store.list_instances():
        name = instance.describe()
        for fault in cloud.store.list_faults(instance.uuid):
            if fault.exception_type not in SCHEDULER_OUTCOMES:
                found.append(
                    f"{name}: failed with {fault.exception_type} ({fault.message}) although"
                    " no fault was injected"
                )
        if instance.vm_state is VmState.ERROR:
            found.append(f"{name}: in error although no fault was injected")
    return found


def _show(state: tuple[Any, ...]) -> str:
    vm, task, host, flavor = state
    return f"{vm.value}/{'null' if task is None else task.value} on {host} ({flavor})"


def tolerated(cloud: Cloud, violation: str) -> bool:
    """Is ``violation`` one of the two between-hop reports of the Hypothesis kit?

    * a revert: ``revert_resize`` on the destination releases the destination claim
      and marks the migration ``reverted``; ``finish_revert_resize`` on the source gives
      the migration's claim back to the instance and moves it home one hop later: in
      between, "on <dest> but claims only [<source>]" and "reverted but still holds";
    * ``delete`` of an instance with a move under way sets task_state ``deleting``; its
      source and destination claims are released together when the delete finishes:
      until then, "claims ... with no move under way".

    (An accepted abort is ``cancelling``, an open status, until its rollback runs: it is
    no longer a between-hop report.)
    """
    for instance in cloud.store.list_instances():
        in_flight = instance.task_state in (TaskState.RESIZE_REVERTING, TaskState.DELETING)
        if in_flight and instance.migration_id:
            reverted = cloud.store.get_migration(instance.migration_id)
            if reverted.status is MigrationStatus.REVERTED and violation in (
                f"{instance.describe()}: on {instance.host} but claims only "
                f"{[reverted.source_compute]}",
                f"migration {reverted.id}: reverted but still holds {[reverted.source_compute]}",
            ):
                return True
        if (
            instance.task_state is TaskState.DELETING
            and violation.startswith(f"{instance.describe()}: claims ")
            and violation.endswith("with no move under way")
        ):
            return True
    return False


def check_step(
    before: Observation,
    cloud: Cloud,
    action: Action,
    delivered: Message | None,
    *,
    idle: bool,
    machine: Machine = MACHINE,
    state: bool = True,
) -> list[str]:
    """Every invariant after ``action``: the spec's (on the cloud) and the step's.

    :func:`~coldmig_fsm.verification.invariants.violations` is written for a settled cloud; between
    two hops it reports two states that are a hop in flight, not a leak, and
    :func:`tolerated` drops exactly those (see its docstring). ``state=False`` checks the
    step's only: for a step into a state whose spec invariants were checked already
    (the model checker's state seen before).
    """
    spec = []
    if state:
        spec = [
            v for v in invariants.violations(cloud, machine, idle=idle) if not tolerated(cloud, v)
        ]
    return spec + step_violations(before, cloud, action, delivered)


def deliverable_faults(calls: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str, str]]:
    """Each distinct driver call seen, with every fault mode, in a fixed order."""
    seen: list[tuple[str, str]] = []
    for made in calls:
        if made not in seen:
            seen.append(made)
    for host, verb in seen:
        for mode in FAULT_MODES:
            yield (host, verb, mode)
