"""Both stores side by side: compare-and-swap, atomic blocks, the queue, round trips, and
the usage aggregates after random blocks (Hypothesis). The contract suite is
test_contract.py; files, upgrades and several stores on one file: test_sqlite_files.py."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coldmig_fsm import (
    Instance,
    InstanceNotFound,
    MemoryStore,
    Migration,
    MigrationStatus,
    MigrationType,
    Outcome,
    Resources,
    SqliteStore,
    Store,
    TaskState,
    UnexpectedTaskStateError,
    messages,
)
from coldmig_fsm.exceptions import UnexpectedMigrationStatusError


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "s.db")
    yield made
    made.close()


def inst(task: TaskState | None = None) -> Instance:
    return Instance("u1", "vm1", "demo", "host-a", "m1.tiny", task_state=task)


def test_cas_saves_when_the_task_state_matches(store: Store) -> None:
    store.add_instance(inst())
    store.save_instance(inst(TaskState.RESIZE_PREP), expected_task_state=[None])
    assert store.get_instance("u1").task_state is TaskState.RESIZE_PREP


def test_cas_refuses_and_changes_nothing(store: Store) -> None:
    store.add_instance(inst(TaskState.RESIZE_PREP))
    with pytest.raises(UnexpectedTaskStateError, match="actual state is resize_prep"):
        store.save_instance(inst(TaskState.RESIZE_MIGRATING), expected_task_state=[None])
    assert store.get_instance("u1") == inst(TaskState.RESIZE_PREP)


def test_save_of_unknown_instance(store: Store) -> None:
    with pytest.raises(InstanceNotFound):
        store.save_instance(inst(), expected_task_state=[None])
    with pytest.raises(InstanceNotFound):
        store.save_instance(inst())


def test_migration_cas(store: Store) -> None:
    m = Migration(
        1, "m-1", "u1", MigrationType.MIGRATION, MigrationStatus.FINISHED, "a", "t", "t", "b"
    )
    store.add_migration(m)
    confirming = Migration(
        1, "m-1", "u1", MigrationType.MIGRATION, MigrationStatus.CONFIRMING, "a", "t", "t", "b"
    )
    store.save_migration(confirming, expected_status=[MigrationStatus.FINISHED])
    with pytest.raises(UnexpectedMigrationStatusError):
        store.save_migration(confirming, expected_status=[MigrationStatus.FINISHED])
    assert store.get_migration(1).status is MigrationStatus.CONFIRMING


def test_atomic_block_is_undone_on_error(store: Store) -> None:
    store.add_instance(inst())
    store.set_allocations("u1", {"host-a": Resources(1, 512, 1)})
    with pytest.raises(RuntimeError), store.atomic():
        store.save_instance(inst(TaskState.RESIZE_PREP), expected_task_state=[None])
        store.set_allocations("u1", {})
        store.push_message(messages.StopInstance("r", "u1", "host-a"))
        store.next_id("migration")
        raise RuntimeError("boom")
    assert store.get_instance("u1").task_state is None
    assert store.allocations("u1") == {"host-a": Resources(1, 512, 1)}
    assert store.pending_messages() == []
    assert store.next_id("migration") == 1


def test_queue_is_fifo_and_round_trips(store: Store) -> None:
    first = messages.PrepResize("r1", "u1", "host-b", 1, "m1.tiny", alternates=("host-c",))
    second = messages.FinishResize("r1", "u1", "host-b", 1, disks=("d",), bytes_copied=7)
    store.push_message(first)
    store.push_message(second)
    assert store.pending_messages() == [first, second]
    assert store.pop_message() == first
    assert store.pop_message() == second
    assert store.pop_message() is None


def test_a_memory_snapshot_carries_each_instances_queue() -> None:
    store = MemoryStore()
    a1, b1, a2 = (
        messages.StopInstance("a1", "u1", "host-a"),
        messages.StartInstance("b1", "u2", "host-b"),
        messages.MigrateServer("a2", "u1", "m1.tiny"),
    )
    for message in (a1, b1, a2):
        store.push_message(message)
    saved = store.snapshot()
    for _ in range(2):  # the snapshot stays usable: restored twice, the same moment
        assert store.pop_message() == a1
        store.push_message(messages.StopInstance("a3", "u1", "host-a"))
        store.push_message(messages.StopInstance("c1", "u3", "host-c"))
        store.restore(saved)
        assert store.pending_messages("u1") == [a1, a2]
        assert store.pending_messages("u2") == [b1]
        assert store.pending_messages("u3") == []
    # The restored store goes on: a rolled-back take comes back at its place.
    with pytest.raises(RuntimeError), store.atomic():
        assert store.take_message(destinations=["compute:host-a"]) == a1
        assert store.pending_messages("u1") == [a2]
        raise RuntimeError("boom")
    assert store.pending_messages("u1") == [a1, a2]
    assert store.take_message(destinations=["conductor"]) == a2
    assert store.pending_messages("u1") == [a1]


def test_usage_sums_every_consumer(store: Store) -> None:
    store.set_allocations("u1", {"host-a": Resources(1, 512, 1)})
    store.set_allocations("m-1", {"host-a": Resources(2, 1024, 10), "host-b": Resources(1, 1, 1)})
    assert store.usage("host-a") == Resources(3, 1536, 11)
    assert store.usage("host-c") == Resources()
    store.set_allocations("m-1", {})
    assert store.usage("host-a") == Resources(1, 512, 1)
    assert [a.consumer for a in store.all_allocations()] == ["u1"]


def test_message_dicts_round_trip() -> None:
    message = messages.MigrateServer("r", "u", "m1.small", target_host="host-b", attempt=2)
    data = messages.to_dict(message)
    assert data["kind"] == "migrate_server" and data["target_host"] == "host-b"
    assert messages.from_dict(data) == message
    with pytest.raises(ValueError, match="unknown message kind"):
        messages.from_dict({"kind": "teleport"})


def test_lookups_by_group_follow_undo(store: Store) -> None:
    def migration(n: int, instance: str) -> Migration:
        return Migration(
            n,
            f"m-{n}",
            instance,
            MigrationType.MIGRATION,
            MigrationStatus.PRE_MIGRATING,
            "a",
            "t",
            "t",
        )

    with pytest.raises(RuntimeError), store.atomic():
        store.add_migration(migration(store.next_id("migration"), "x"))
        raise RuntimeError("rolled back")
    store.add_migration(migration(store.next_id("migration"), "y"))
    assert store.list_migrations("x") == []
    assert [m.instance_uuid for m in store.list_migrations("y")] == ["y"]
    store.add_instance(inst())
    found = store.find_instance("vm1")
    assert found is not None and found.uuid == "u1"
    assert store.find_instance("nope") is None


def test_a_request_settles_once(store: Store) -> None:
    from coldmig_fsm.records import RequestRecord  # noqa: PLC0415

    store.put_request(RequestRecord("r1", "migrate", "u1"))
    first = RequestRecord("r1", "migrate", "u1", Outcome.SUCCEEDED)
    second = RequestRecord("r1", "migrate", "u1", Outcome.FAILED, "NoValidHost", "none")
    assert store.settle_request(first) is True
    assert store.settle_request(second) is False
    assert store.get_request("r1") == first
    assert store.settle_request(RequestRecord("nope", "stop", "u1", Outcome.FAILED)) is False


# -- usage aggregates ---------------------------------------------------------------------

HOSTS = ("host-a", "host-b", "host-c")
PROJECTS = ("p0", "p1")

resources = st.builds(Resources, st.integers(0, 8), st.integers(0, 4096), st.integers(0, 100))
# One write: ("instance", i) adds instance i (its project: PROJECTS[i % 2]); ("migration",
# n, i) adds migration n of instance i (consumer "mig-n"); ("alloc", consumer, per_host).
consumers = st.sampled_from(["inst-0", "inst-1", "inst-2", "mig-0", "mig-1", "stray"])
writes = st.one_of(
    st.tuples(st.just("instance"), st.integers(0, 2)),
    st.tuples(st.just("migration"), st.integers(0, 1), st.integers(0, 2)),
    st.tuples(
        st.just("alloc"),
        consumers,
        st.dictionaries(st.sampled_from(HOSTS), resources, max_size=3),
    ),
)
blocks = st.lists(
    st.tuples(st.lists(writes, max_size=6), st.booleans()),  # (writes, rolled back)
    max_size=8,
)


def _write(store: Store, write: tuple[Any, ...], owners: dict[str, str]) -> None:
    if write[0] == "instance":
        uuid = f"inst-{write[1]}"
        if uuid not in owners:
            project = PROJECTS[write[1] % 2]
            store.add_instance(Instance(uuid, f"vm-{write[1]}", project, "host-a", "m1.tiny"))
            owners[uuid] = project
    elif write[0] == "migration":
        uuid, instance = f"mig-{write[1]}", f"inst-{write[2]}"
        if uuid not in owners and store.list_migrations(instance) == []:
            store.add_migration(
                Migration(
                    write[1] + 1,
                    uuid,
                    instance,
                    MigrationType.MIGRATION,
                    MigrationStatus.PRE_MIGRATING,
                    "host-a",
                    "m1.tiny",
                    "m1.tiny",
                )
            )
            if instance in owners:
                owners[uuid] = owners[instance]
    else:
        store.set_allocations(write[1], write[2])


def _sums(store: Store, owners: dict[str, str]) -> tuple[dict[str, Resources], ...]:
    """(usage per host, per project) summed from the allocations themselves."""
    per_host = dict.fromkeys(HOSTS, Resources())
    per_project = dict.fromkeys(PROJECTS, Resources())
    for allocation in store.all_allocations():
        per_host[allocation.host] += allocation.resources
        owner = owners.get(allocation.consumer)
        if owner is not None:
            per_project[owner] += allocation.resources
    return per_host, per_project


@settings(max_examples=60, deadline=None)
@given(blocks)
def test_usage_aggregates_equal_the_sums_after_any_blocks(
    plan: list[tuple[list[tuple[Any, ...]], bool]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stores: list[Store] = [MemoryStore(), SqliteStore(Path(tmp) / "s.db")]
        owners: dict[str, str] = {}
        try:
            for block, rolled_back in plan:
                tentative = dict(owners)
                for store in stores:
                    tentative = dict(owners)
                    try:
                        with store.atomic():
                            for write in block:
                                with store.atomic():
                                    _write(store, write, tentative)
                            if rolled_back:
                                raise RuntimeError("rolled back")
                    except RuntimeError:
                        assert rolled_back
                if not rolled_back:
                    owners = tentative
                seen = []
                for store in stores:
                    per_host, per_project = _sums(store, owners)
                    assert {h: store.usage(h) for h in HOSTS} == per_host
                    assert {p: store.project_usage(p) for p in PROJECTS} == per_project
                    seen.append(sorted(store.all_allocations(), key=repr))
                assert seen[0] == seen[1]  # both stores agree
        finally:
            for store in stores:
                store.close()


def test_usage_counts_what_a_consumer_held_before_its_owner(store: Store) -> None:
    store.set_allocations("u1", {"host-a": Resources(1, 512, 1)})
    assert store.project_usage("demo") == Resources()
    store.add_instance(inst())
    assert store.project_usage("demo") == Resources(1, 512, 1)
    m = Migration(
        1, "m-1", "u1", MigrationType.MIGRATION, MigrationStatus.PRE_MIGRATING, "a", "t", "t"
    )
    store.add_migration(m)
    store.set_allocations("m-1", {"host-b": Resources(2, 1024, 20)})
    assert store.project_usage("demo") == Resources(3, 1536, 21)
    assert store.usage("host-b") == Resources(2, 1024, 20)
    store.set_allocations("u1", {})
    assert store.project_usage("demo") == Resources(2, 1024, 20)
    assert store.project_usage("other") == Resources()
