"""The store contract, as checks a third-party store can run.

:func:`check_store` (like :func:`~coldmig_fsm.testing.check_driver`, in the spirit of
trio's ``check_one_way_stream``) takes a factory returning a fresh, empty
:class:`~coldmig_fsm.stores.base.Store`; it runs every rule of the port with plain
``assert`` statements and raises ``AssertionError`` naming the broken rule. Each check
uses a fresh store, closed after it::

    from coldmig_fsm.testing import check_store

    def test_my_store(tmp_path):
        check_store(lambda: MyStore(tmp_path / f"{uuid.uuid4()}.db"))

The checks: compare-and-swap saves of instances and migrations, nested atomic blocks
(an error undoes records, allocations, usage, generations, messages, logs, counters and
the outbox cursor; an inner block undoes only its own writes), the message queue (order,
``held``, ``destinations``, a taken message back after a rollback), the queued messages of
one instance (in step with pushes, takes, deliveries and rollbacks), deliveries (the
message taken in the transaction of the handler's first write), placement
generations and :func:`~coldmig_fsm.roles.claims.try_claim`, usage aggregates against the
sums of the allocations after a seeded random sequence of blocks, the indexed lookups,
the hosts whose service is down (:meth:`~coldmig_fsm.stores.base.Store.down_hosts`), the
outbox, and records read back equal to what was saved.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
from collections.abc import Callable, Iterator

from coldmig_fsm import messages
from coldmig_fsm.exceptions import (
    InstanceNotFound,
    MigrationNotFound,
    UnexpectedMigrationStatusError,
    UnexpectedTaskStateError,
)
from coldmig_fsm.records import (
    ActionEvent,
    EventResult,
    Fault,
    Flavor,
    Host,
    Instance,
    InstanceAction,
    Migration,
    Notification,
    Outcome,
    Project,
    RequestRecord,
    Resources,
)
from coldmig_fsm.roles import claims
from coldmig_fsm.states import MigrationStatus, MigrationType, PowerState, TaskState, VmState
from coldmig_fsm.stores.base import CONDUCTOR, GenerationConflict, HostUsage, Store

__all__ = ["check_store"]

_T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
_SMALL = Resources(1, 512, 10)


class _Boom(Exception):
    """Raised inside a block to roll it back."""


def _instance(n: int = 1, host: str = "host-a", task: TaskState | None = None) -> Instance:
    return Instance(f"inst-{n}", f"vm-{n}", "proj", host, "m1.small", task_state=task)


def _migration(
    n: int = 1,
    instance: str = "inst-1",
    source: str = "host-a",
    dest: str | None = "host-b",
    status: MigrationStatus = MigrationStatus.PRE_MIGRATING,
) -> Migration:
    return Migration(
        n,
        f"mig-{n}",
        instance,
        MigrationType.MIGRATION,
        status,
        source,
        "m1.small",
        "m1.small",
        dest,
        f"req-{n}",
        _T0,
        _T0,
    )


def _notification(event: str, instance: str | None = "inst-1") -> Notification:
    return Notification(event, instance, "host-a", VmState.ACTIVE, None, _T0, {"n": event})


@contextlib.contextmanager
def _rolled_back(store: Store) -> Iterator[None]:
    """An atomic block that raises at its end; the error is swallowed here."""
    try:
        with store.atomic():
            yield
            raise _Boom
    except _Boom:
        pass


# --- the checks --------------------------------------------------------------------------


def _check_round_trip(store: Store) -> None:
    full = Instance(
        "inst-rt",
        "vm-rt",
        "proj",
        "host-a",
        "m1.small",
        vm_state=VmState.RESIZED,
        task_state=TaskState.RESIZE_FINISH,
        power_state=PowerState.RUNNING,
        old_flavor="m1.tiny",
        new_flavor="m1.small",
        locked=True,
        locked_by="admin",
        progress=40,
        system_metadata={"old_vm_state": "active"},
        migration_id=7,
        node="node-a",
    )
    store.add_instance(full)
    assert store.get_instance(full.uuid) == full, "an instance reads back as saved"
    migration = _migration(7, full.uuid)
    store.add_migration(migration)
    assert store.get_migration(7) == migration, "a migration reads back as saved"
    action = InstanceAction("req-rt", full.uuid, "migrate", "proj", "user", _T0)
    store.add_action(action)
    event = ActionEvent("compute_prep_resize", EventResult.ERROR, "host-b", _T0, _T0, "boom")
    store.add_action_event("req-rt", event)
    got = store.get_action("req-rt")
    assert got is not None and got.events == (event,), "an action reads back with its event"
    assert got.message == "Error", "a failed event makes the action's message Error"
    request = RequestRecord("req-rt", "migrate", full.uuid, Outcome.FAILED, "E", "why")
    store.put_request(request)
    assert store.get_request("req-rt") == request, "a request reads back as saved"
    for config in (Host("host-a", 8, 8192, 100), Flavor("m1.small", 1, 512, 10), Project("p", 4)):
        put = getattr(store, f"put_{type(config).__name__.lower()}")
        put(config)
    assert store.get_host("host-a") == Host("host-a", 8, 8192, 100), "a host reads back"
    assert store.get_flavor("m1.small") == Flavor("m1.small", 1, 512, 10), "a flavor too"
    assert store.get_project("p") == Project("p", 4), "and a project"
    assert store.get_host("nope") is None, "an unknown host is None"
    note = _notification("instance.resize.start", full.uuid)
    store.add_notification(note)
    assert store.list_notifications() == [note], "a notification reads back"
    assert store.list_notifications()[0].payload == note.payload, "with its payload"


def _check_instance_cas(store: Store) -> None:
    store.add_instance(_instance())
    try:
        store.add_instance(_instance())
    except ValueError:
        pass
    else:
        raise AssertionError("adding an instance whose uuid exists raises ValueError")
    store.save_instance(_instance(task=TaskState.RESIZE_PREP), expected_task_state=[None])
    assert store.get_instance("inst-1").task_state is TaskState.RESIZE_PREP, (
        "a save whose expected task_state matches is written"
    )
    try:
        store.save_instance(_instance(task=TaskState.RESIZE_MIGRATING), expected_task_state=[None])
    except UnexpectedTaskStateError as refused:
        assert "resize_prep" in str(refused), "the refusal names the actual task_state"
    else:
        raise AssertionError("a save whose expected task_state differs raises")
    assert store.get_instance("inst-1") == _instance(task=TaskState.RESIZE_PREP), (
        "a refused save writes nothing"
    )
    store.save_instance(_instance(task=None))
    assert store.get_instance("inst-1") == _instance(), "a save without expectation writes"
    for expected in ([None], None):
        try:
            store.save_instance(_instance(9), expected_task_state=expected)
        except InstanceNotFound:
            pass
        else:
            raise AssertionError("saving an unknown instance raises InstanceNotFound")


def _check_migration_cas(store: Store) -> None:
    store.add_migration(_migration())
    migrating = _migration(status=MigrationStatus.MIGRATING)
    store.save_migration(migrating, expected_status=[MigrationStatus.PRE_MIGRATING])
    assert store.get_migration(1) == migrating, "a matching status compare-and-swap writes"
    try:
        store.save_migration(
            _migration(status=MigrationStatus.ERROR),
            expected_status=[MigrationStatus.PRE_MIGRATING],
        )
    except UnexpectedMigrationStatusError:
        pass
    else:
        raise AssertionError("a save whose expected status differs raises")
    assert store.get_migration(1) == migrating, "a refused save writes nothing"
    try:
        store.save_migration(_migration(5), expected_status=[MigrationStatus.PRE_MIGRATING])
    except MigrationNotFound:
        pass
    else:
        raise AssertionError("a compare-and-swap of an unknown migration raises")
    try:
        store.get_migration(5)
    except MigrationNotFound:
        pass
    else:
        raise AssertionError("get_migration of an unknown id raises MigrationNotFound")


def _snapshot(store: Store) -> tuple[object, ...]:
    return (
        store.list_instances(),
        store.list_migrations(),
        store.list_actions(),
        store.list_requests(),
        sorted(store.all_allocations(), key=repr),
        [store.host_usage(h) for h in ("host-a", "host-b")],
        store.project_usage("proj"),
        store.pending_messages(),
        [store.pending_messages(i) for i in ("inst-1", "inst-2", "inst-3")],
        store.list_notifications(),
        store.list_faults(),
        store.outbox_cursor(),
    )


def _write_everything(store: Store, n: int) -> None:
    """One write of every kind (``n`` keeps the keys apart)."""
    store.save_instance(
        _instance(task=TaskState.RESIZE_PREP),
        expected_task_state=[None, TaskState.RESIZE_PREP],
    )
    store.add_instance(_instance(n, host="host-b"))
    store.add_migration(_migration(n))
    store.save_migration(_migration(1, status=MigrationStatus.MIGRATING))
    store.add_action_event("req-1", ActionEvent(f"event-{n}", EventResult.SUCCESS))
    store.settle_request(RequestRecord("req-1", "migrate", "inst-1", Outcome.SUCCEEDED))
    claims.claim(store, f"mig-{n}", "host-b", _SMALL)
    store.set_allocations("inst-1", {})
    store.push_message(messages.StopInstance(f"r{n}", "inst-1", "host-a"))
    store.take_message()
    store.add_notification(_notification(f"event-{n}"))
    store.add_fault(Fault("inst-1", 500, "boom", "RuntimeError", "host-a", _T0))
    store.take_outbox(1)
    store.next_id("migration")


def _prepared(store: Store) -> None:
    store.add_instance(_instance())
    store.add_migration(_migration())
    store.add_action(InstanceAction("req-1", "inst-1", "migrate", "proj", "user", _T0))
    store.put_request(RequestRecord("req-1", "migrate", "inst-1"))
    claims.claim(store, "inst-1", "host-a", _SMALL)
    store.push_message(messages.StartInstance("r0", "inst-1", "host-a"))
    store.add_notification(_notification("before"))


def _check_atomic_rollback(store: Store) -> None:
    _prepared(store)
    before, next_id = _snapshot(store), store.next_id("migration")
    with _rolled_back(store):
        _write_everything(store, 2)
        with store.atomic():  # a completed inner block is undone with the outer one
            _write_everything(store, 3)
    assert _snapshot(store) == before, (
        "a block that raises undoes every write: records, allocations, usage, "
        "generations, messages, logs and the outbox cursor"
    )
    assert store.next_id("migration") == next_id + 1, "and the counters"
    assert store.find_instance("vm-2") is None, "and the name index"
    assert store.instances_on("host-b") == [], "and the host index"
    assert store.list_migrations("inst-1") == [_migration()], "and the instance index"
    assert store.list_faults("inst-1") == [], "and the faults' index"


def _check_inner_block(store: Store) -> None:
    _prepared(store)
    before = _snapshot(store)
    with store.atomic():
        with _rolled_back(store):
            _write_everything(store, 2)
        assert _snapshot(store) == before, "an inner block that raises undoes its own writes"
        store.add_instance(_instance(4))
    assert store.get_instance("inst-4") == _instance(4), (
        "the enclosing block goes on and keeps its writes"
    )
    store.add_instance(_instance(5))  # outside any block: written at once
    with _rolled_back(store):
        pass
    assert store.get_instance("inst-5") == _instance(5), "a write outside a block stays"


def _check_queue(store: Store) -> None:
    to_a = [messages.StopInstance(f"a{i}", "inst-1", "host-a") for i in range(2)]
    to_b = messages.StartInstance("b0", "inst-2", "host-b")
    to_conductor = messages.MigrateServer("c0", "inst-3", "m1.small")
    queued = [to_a[0], to_b, to_conductor, to_a[1]]
    for message in queued:
        store.push_message(message)
    assert store.pending_messages() == queued, "pending_messages lists the queue in order"
    assert store.take_message(destinations=[CONDUCTOR]) == to_conductor, (
        'destinations=["conductor"] takes the conductor\'s message'
    )
    assert store.take_message(["compute:host-a"]) == to_b, "held destinations wait"
    assert store.take_message(destinations=["compute:host-b"]) is None, (
        "no message for the destinations: None"
    )
    assert store.take_message(destinations=[]) is None, "no destination: None"
    with _rolled_back(store):
        assert store.take_message(destinations=["compute:host-a"]) == to_a[0], (
            "a destination's oldest message first"
        )
    assert store.pending_messages() == [to_a[0], to_a[1]], (
        "a message taken in a block that rolls back is back at its place"
    )
    assert store.pop_message() == to_a[0], "pop_message takes the oldest"
    assert store.take_message(held=["compute:host-b"]) == to_a[1], "held does not hold others"
    assert store.pop_message() is None, "an empty queue gives None"
    assert store.take_message() is None, "also to take_message"
    store.push_message(to_b)
    with _rolled_back(store):
        store.push_message(to_conductor)
    assert store.pending_messages() == [to_b], "a push in a rolled-back block is undone"
    message = messages.PrepResize("r", "u", "host-b", 3, "m1.small", alternates=("x", "y"))
    store.push_message(message)
    assert store.pending_messages()[-1] == message, "a message reads back as pushed"


def _check_queue_by_instance(store: Store) -> None:
    first = messages.StopInstance("a1", "inst-1", "host-a")
    other = messages.StartInstance("b1", "inst-2", "host-b")
    to_conductor = messages.MigrateServer("c1", "inst-1", "m1.small")
    last = messages.StartInstance("a2", "inst-1", "host-b")
    for message in (first, other, to_conductor, last):
        store.push_message(message)

    def of(instance: str) -> list[messages.Message]:
        return store.pending_messages(instance)

    assert of("inst-1") == [first, to_conductor, last], (
        "pending_messages(instance_uuid): that instance's queued messages, oldest first, "
        "whatever their destination"
    )
    assert of("inst-2") == [other], "only that instance's"
    assert of("inst-9") == [], "an instance with no message queued: none"
    assert store.take_message(destinations=[CONDUCTOR]) == to_conductor
    assert of("inst-1") == [first, last], "a taken message is no longer the instance's"
    later = messages.StopInstance("a3", "inst-1", "host-a")
    stray = messages.StopInstance("x1", "inst-3", "host-c")
    with _rolled_back(store):
        assert store.take_message(destinations=["compute:host-a"]) == first
        store.push_message(later)
        store.push_message(stray)
        assert of("inst-1") == [last, later], "the lookup follows a block's pushes and takes"
        assert of("inst-3") == [stray], "a pushed message is its instance's at once"
    assert of("inst-1") == [first, last], (
        "a block that rolls back: its take is back at its place, its push gone"
    )
    assert of("inst-3") == [], "and so is the push of another instance"
    with store.atomic():
        assert store.take_message(destinations=["compute:host-b"]) == other
        with _rolled_back(store):
            assert store.take_message(destinations=["compute:host-b"]) == last
            assert of("inst-1") == [first]
        assert of("inst-1") == [first, last], "an inner block that rolls back undoes its take"
    assert of("inst-2") == [], "the enclosing block's take stays"
    with store.delivery(destinations=["compute:host-a"]) as handed:
        assert handed == first
        assert of("inst-1") == [first, last], (
            "a delivered message is the instance's until the handler's first write"
        )
        store.add_instance(_instance(1))
        assert of("inst-1") == [last], "which takes it"
    assert store.pop_message() == last
    assert of("inst-1") == [] and store.pending_messages() == [], "an empty queue: none"
    store.push_message(later)
    assert of("inst-1") == [later], "and a later push is found"


def _check_delivery(store: Store) -> None:
    first, second = (messages.StopInstance(f"r{i}", "inst-1", "host-a") for i in range(2))
    other = messages.StartInstance("o", "inst-2", "host-b")
    for message in (first, other, second):
        store.push_message(message)
    with store.delivery(["compute:host-b"]) as handed:
        assert handed == first, "delivery hands the oldest deliverable message"
        assert store.pending_messages() == [first, other, second], (
            "a delivered message stays queued until the handler writes"
        )
        with _rolled_back(store):
            store.add_instance(_instance(1))
            assert store.pending_messages() == [other, second], (
                "the handler's first transaction takes the delivered message"
            )
        assert store.pending_messages() == [first, other, second], (
            "a first transaction that rolls back puts the message back at its place"
        )
        store.add_instance(_instance(2))  # a write outside a block: a transaction of its own
        assert store.pending_messages() == [other, second], "the next write takes it"
    assert store.pending_messages() == [other, second], "and it stays taken"
    try:
        with store.delivery(destinations=["compute:host-b"]) as handed:
            assert handed == other
            raise _Boom
    except _Boom:
        pass
    assert store.pending_messages() == [other, second], (
        "a handler that raises before it writes leaves its message queued"
    )
    with store.delivery(destinations=["compute:host-b"]) as handed:
        assert handed == other
    assert store.pending_messages() == [second], (
        "a handler that writes nothing has its message taken when it returns"
    )
    try:
        with store.delivery() as handed:
            assert handed == second
            store.acknowledge()
            assert store.pending_messages() == [], "acknowledge takes the message at once"
            raise _Boom
    except _Boom:
        pass
    assert store.pending_messages() == [], "an acknowledged message stays taken"
    with store.delivery() as handed:
        assert handed is None, "delivery of an empty queue: None"
    store.push_message(first)
    with store.atomic(), store.delivery() as handed:
        assert handed == first and store.pending_messages() == [], (
            "a delivery inside an open block takes its message in that block"
        )
    assert store.pending_messages() == [], "taken with the block's commit"


def _check_generations(store: Store) -> None:
    host = Host("host-a", 2, 1024, 20)
    store.put_host(host)
    assert store.host_usage("host-a") == HostUsage(Resources(), 0), (
        "a host with no allocation: nothing used, generation 0"
    )
    assert store.host_usage("nowhere") == HostUsage(Resources(), 0), "nor an unknown host"
    store.set_allocations("c1", {"host-a": _SMALL})
    seen = store.host_usage("host-a")
    assert seen == HostUsage(_SMALL, 1), "an allocation change increments the generation"
    store.set_allocations("c1", {"host-a": _SMALL})
    assert store.host_usage("host-a") == seen, "rewriting the same allocation changes nothing"
    store.set_allocations("c2", {"host-a": _SMALL}, generations={"host-a": 1})
    assert store.host_usage("host-a") == HostUsage(_SMALL + _SMALL, 2), (
        "a write with the current generation is made, and moves it"
    )
    try:
        store.set_allocations("c3", {"host-a": _SMALL}, generations={"host-a": 1})
    except GenerationConflict as conflict:
        assert (conflict.host, conflict.expected, conflict.actual) == ("host-a", 1, 2), (
            "the conflict names the host and both generations"
        )
    else:
        raise AssertionError("a write with a stale generation raises GenerationConflict")
    assert store.allocations("c3") == {}, "a conflicting write writes nothing"
    assert store.host_usage("host-a") == HostUsage(_SMALL + _SMALL, 2), "nor usage"
    with _rolled_back(store):
        store.set_allocations("c1", {})
    assert store.host_usage("host-a").generation == 2, "a rolled-back change restores it"
    assert claims.try_claim(store, host, "c4", Resources(1, 1, 1)) is False, (
        "try_claim refuses what does not fit (2 vcpus, both used)"
    )
    store.set_allocations("c2", {})
    assert claims.try_claim(store, host, "c4", _SMALL) is True, "try_claim takes what fits"
    assert store.allocations("c4") == {"host-a": _SMALL}, "and holds it"
    assert store.host_usage("host-a") == HostUsage(_SMALL + _SMALL, 4), "counted and moved"


def _check_aggregates(store: Store) -> None:
    rng = random.Random(13)
    hosts, projects = ("host-a", "host-b", "host-c"), ("p0", "p1")
    owners: dict[str, str] = {}
    consumers = [f"inst-{i}" for i in range(3)] + ["mig-1", "mig-2", "stray"]
    migrations: set[str] = set()
    for _ in range(40):
        rolled_back = rng.random() < 0.3
        tentative, added = dict(owners), set(migrations)
        try:
            with store.atomic():
                for _ in range(rng.randint(1, 5)):
                    what = rng.random()
                    if what < 0.2:
                        i = rng.randrange(3)
                        uuid = f"inst-{i}"
                        if uuid not in tentative:
                            project = projects[i % 2]
                            store.add_instance(
                                Instance(uuid, f"vm-{i}", project, "host-a", "m1.small")
                            )
                            tentative[uuid] = project
                    elif what < 0.3:
                        n, instance = rng.randint(1, 2), f"inst-{rng.randrange(3)}"
                        if f"mig-{n}" not in added:  # owned like its instance, if it is
                            store.add_migration(_migration(n, instance))
                            added.add(f"mig-{n}")
                            if instance in tentative:
                                tentative[f"mig-{n}"] = tentative[instance]
                    else:
                        chosen = rng.sample(hosts, rng.randint(0, 2))
                        store.set_allocations(
                            rng.choice(consumers),
                            {
                                h: Resources(
                                    rng.randint(0, 4), rng.randint(0, 2048), rng.randint(0, 50)
                                )
                                for h in chosen
                            },
                        )
                if rolled_back:
                    raise _Boom
        except _Boom:
            pass
        else:
            owners, migrations = tentative, added
        per_host = dict.fromkeys(hosts, Resources())
        per_project = dict.fromkeys(projects, Resources())
        for allocation in store.all_allocations():
            per_host[allocation.host] += allocation.resources
            owner = owners.get(allocation.consumer)
            if owner is not None:
                per_project[owner] += allocation.resources
        assert {h: store.usage(h) for h in hosts} == per_host, (
            "each host's usage is the sum of its allocations"
        )
        assert {p: store.project_usage(p) for p in projects} == per_project, (
            "each project's usage is the sum of its consumers' allocations"
        )


def _check_lookups(store: Store) -> None:
    store.add_instance(_instance(1, "host-a"))
    store.add_instance(_instance(2, "host-b", TaskState.RESIZE_PREP))
    store.add_instance(_instance(3, "host-a", TaskState.RESIZE_MIGRATING))
    assert store.instances_on("host-a") == [
        _instance(1),
        _instance(3, task=TaskState.RESIZE_MIGRATING),
    ], "instances_on lists the host's instances in the order they were added"
    assert store.instances_on("host-a", busy=True) == [
        _instance(3, task=TaskState.RESIZE_MIGRATING)
    ], "busy=True: only those with a task_state"
    store.save_instance(_instance(1, "host-b", TaskState.RESIZE_FINISH))
    assert [i.uuid for i in store.instances_on("host-b")] == ["inst-1", "inst-2"], (
        "an instance saved with another host is found under that host"
    )
    assert [i.uuid for i in store.instances_on("host-a")] == ["inst-3"], "and no longer here"
    assert store.instances_on("host-z") == [], "an unknown host has none"
    open_ = {MigrationStatus.PRE_MIGRATING, MigrationStatus.MIGRATING}
    store.add_migration(_migration(1, "inst-1", "host-a", None))
    store.add_migration(_migration(2, "inst-2", "host-b", "host-a"))
    store.add_migration(_migration(3, "inst-3", "host-c", "host-c"))
    assert [m.id for m in store.migrations_on("host-a", open_)] == [1, 2], (
        "migrations_on finds a migration by its source and by its destination"
    )
    assert [m.id for m in store.migrations_on("host-c", open_)] == [3], (
        "a migration to its own host is listed once"
    )
    store.save_migration(_migration(1, "inst-1", "host-a", "host-b", MigrationStatus.ERROR))
    assert [m.id for m in store.migrations_on("host-a", open_)] == [2], (
        "a migration whose status moved out of the set is not listed"
    )
    assert [m.id for m in store.migrations_on("host-b", {MigrationStatus.ERROR})] == [1], (
        "a destination set by a later save is found"
    )
    assert store.migrations_on("host-a", ()) == [], "no status: nothing"
    assert [m.id for m in store.list_migrations("inst-2")] == [2], "migrations by instance"
    store.put_request(RequestRecord("r1", "migrate", "inst-1"))
    store.put_request(RequestRecord("r2", "stop", "inst-2"))
    store.put_request(RequestRecord("r3", "start", "inst-1"))
    assert [r.request_id for r in store.list_requests("inst-1")] == ["r1", "r3"], (
        "requests by instance, in the order they were added"
    )
    assert store.find_instance("vm-2") == _instance(2, "host-b", TaskState.RESIZE_PREP), (
        "find_instance by name"
    )
    assert store.find_instance("vm-9") is None, "an unknown name: None"
    fault = Fault("inst-2", 500, "boom", "RuntimeError", "host-b", _T0)
    store.add_fault(Fault("inst-1", 400, "no", "ValueError", "host-a", _T0))
    store.add_fault(fault)
    assert store.list_faults("inst-2") == [fault], "faults by instance"
    assert len(store.list_faults()) == 2, "and every fault"


def _check_down_hosts(store: Store) -> None:
    limit = 60.0

    def down(now: dt.datetime) -> list[str]:
        return [h.name for h in store.down_hosts(now, limit)]

    def beat(seconds: float) -> dt.datetime:
        return _T0 + dt.timedelta(seconds=seconds)

    assert down(_T0) == [], "down_hosts of a store without hosts: none"
    store.put_host(Host("never", 8, 16384, 100))  # no heartbeat: counts as up
    store.put_host(Host("fresh", 8, 16384, 100, heartbeat_at=beat(0)))
    store.put_host(Host("marked", 8, 16384, 100, up=False, heartbeat_at=beat(0)))
    store.put_host(Host("edge", 8, 16384, 100, heartbeat_at=beat(-60)))
    store.put_host(Host("stale", 8, 16384, 100, heartbeat_at=beat(-60.000001)))
    store.put_host(Host("ahead", 8, 16384, 100, heartbeat_at=beat(61)))
    store.put_host(Host("marked-never", 8, 16384, 100, up=False))
    assert down(_T0) == ["marked", "stale", "ahead", "marked-never"], (
        "down_hosts: marked down, or a heartbeat more than service_down_time from now "
        "(either way), in the order the hosts were added; exactly service_down_time is up"
    )
    # Another time zone, the same moments.
    east = dt.timezone(dt.timedelta(hours=5))
    assert down(_T0.astimezone(east)) == down(_T0), "down_hosts compares moments, not zones"
    with _rolled_back(store):
        store.put_host(Host("stale", 8, 16384, 100, heartbeat_at=beat(0)))
        store.put_host(Host("fresh", 8, 16384, 100, up=False, heartbeat_at=beat(0)))
        assert down(_T0) == ["fresh", "marked", "ahead", "marked-never"], (
            "down_hosts follows the writes of the block"
        )
    assert down(_T0) == ["marked", "stale", "ahead", "marked-never"], (
        "down_hosts after a rollback: as before the block"
    )
    store.put_host(Host("marked", 8, 16384, 100, heartbeat_at=beat(0)))  # up again
    assert down(beat(1)) == ["edge", "stale", "marked-never"], (
        "down_hosts at a later time: the heartbeats that became too old"
    )
    assert down(beat(200)) == ["fresh", "marked", "edge", "stale", "ahead", "marked-never"], (
        "down_hosts long after: every host that ever sent a heartbeat, and the marked"
    )


def _check_outbox(store: Store) -> None:
    assert store.take_outbox(10) == [], "an empty outbox gives nothing"
    sent = [_notification(f"n{i}") for i in range(5)]
    for note in sent[:3]:
        store.add_notification(note)
    store.add_fault(Fault("inst-1", 500, "boom", "RuntimeError", "host-a", _T0))
    for note in sent[3:]:
        store.add_notification(note)
    numbered = store.notifications_after(0)
    assert [n for _, n in numbered] == sent, "notifications_after(0): all, oldest first"
    seqs = [s for s, _ in numbered]
    assert seqs == sorted(set(seqs)) and seqs[0] >= 1, "sequence numbers increase from 1"
    assert [n for _, n in store.notifications_after(seqs[1], 2)] == sent[2:4], (
        "after a sequence number, at most limit"
    )
    with _rolled_back(store):
        assert store.take_outbox(2) == sent[:2], "take_outbox hands out the oldest"
    assert store.outbox_cursor() == 0, "a rolled-back take moves no cursor"
    assert store.take_outbox(2) == sent[:2], "the same notifications are handed out again"
    assert store.outbox_cursor() == seqs[1], "the cursor is the last one handed out"
    assert store.take_outbox(10) == sent[2:], "then the rest, once"
    assert store.take_outbox(10) == [], "and nothing twice"
    with store.atomic():
        store.add_notification(sent[0])
        assert store.take_outbox(10) == [sent[0]], "a notification of the block is in it"
    try:
        store.take_outbox(0)
    except ValueError:
        pass
    else:
        raise AssertionError("take_outbox(0) raises ValueError")


CHECKS: tuple[Callable[[Store], None], ...] = (
    _check_round_trip,
    _check_instance_cas,
    _check_migration_cas,
    _check_atomic_rollback,
    _check_inner_block,
    _check_queue,
    _check_queue_by_instance,
    _check_delivery,
    _check_generations,
    _check_aggregates,
    _check_lookups,
    _check_down_hosts,
    _check_outbox,
)


def check_store(factory: Callable[[], Store]) -> None:
    """Run every contract check on a fresh store from ``factory``.

    Args:
        factory: returns a new, empty store (called once per check; each store is
            closed after its check).

    Raises:
        AssertionError: the first broken rule, prefixed with the check's name.
    """
    for check in CHECKS:
        store = factory()
        try:
            check(store)
        except AssertionError as broken:
            raise AssertionError(f"{check.__name__.removeprefix('_check_')}: {broken}") from broken
        finally:
            store.close()
