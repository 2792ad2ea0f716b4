"""Both stores: compare-and-swap, atomic blocks, the queue, round trips."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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


def test_usage_sums_every_consumer(store: Store) -> None:
    store.set_allocations("u1", {"host-a": Resources(1, 512, 1)})
    store.set_allocations("m-1", {"host-a": Resources(2, 1024, 10), "host-b": Resources(1, 1, 1)})
    assert store.usage("host-a") == Resources(3, 1536, 11)
    assert store.usage("host-c") == Resources()
    store.set_allocations("m-1", {})
    assert store.usage("host-a") == Resources(1, 512, 1)
    assert [a.consumer for a in store.all_allocations()] == ["u1"]


def test_sqlite_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    first = SqliteStore(path)
    first.add_instance(inst())
    first.push_message(messages.StopInstance("r", "u1", "host-a"))
    first.close()
    second = SqliteStore(path)
    assert second.get_instance("u1") == inst()
    assert [m.kind for m in second.pending_messages()] == ["stop_instance"]
    second.close()


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
