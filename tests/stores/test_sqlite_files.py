"""SqliteStore files: reopened, upgraded from schemas 0 to 3, refused when newer or
foreign; several stores on one file."""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import threading
from pathlib import Path

import pytest

from coldmig_fsm import (
    Host,
    Instance,
    Migration,
    MigrationStatus,
    MigrationType,
    Resources,
    SqliteStore,
    TaskState,
    messages,
)
from coldmig_fsm.records import Fault, Notification
from coldmig_fsm.roles import claims
from coldmig_fsm.states import VmState
from coldmig_fsm.stores import ForeignDatabaseError
from coldmig_fsm.stores.base import GenerationConflict, HostUsage
from coldmig_fsm.stores.sqlite import SCHEMA_VERSION, SchemaVersionError

from .legacy import as_schema, write_legacy

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def inst(uuid: str = "u1", host: str = "host-a", task: TaskState | None = None) -> Instance:
    return Instance(uuid, f"vm-{uuid}", "demo", host, "m1.tiny", task_state=task)


def mig(n: int, instance: str, source: str, dest: str | None, status: MigrationStatus) -> Migration:
    return Migration(n, f"m-{n}", instance, MigrationType.MIGRATION, status, source, "t", "t", dest)


def user_version(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def layout(path: Path) -> tuple[list[tuple[str, str, str]], dict[str, list[tuple[object, ...]]]]:
    """What a file's schema is made of: its indexes (name, table, partial condition) and
    each table's columns (name, type, not null, default, primary key)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        indexes = db.execute(
            "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name"
        ).fetchall()
        tables = [
            row[0]
            for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        columns = {t: db.execute(f"PRAGMA table_info({t})").fetchall() for t in tables}
    return indexes, columns


def test_a_file_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    first = SqliteStore(path)
    first.add_instance(inst())
    first.push_message(messages.StopInstance("r", "u1", "host-a"))
    first.set_allocations("u1", {"host-a": Resources(1, 512, 1)})
    first.close()
    second = SqliteStore(path)
    assert second.get_instance("u1") == inst()
    assert [m.kind for m in second.pending_messages()] == ["stop_instance"]
    assert second.pending_messages("u1") == second.pending_messages()
    assert second.host_usage("host-a") == HostUsage(Resources(1, 512, 1), 1)
    assert second.project_usage("demo") == Resources(1, 512, 1)
    second.close()
    assert user_version(path) == SCHEMA_VERSION


def test_the_pragmas_are_set(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "p.db")
    cursor = store._cursor
    assert cursor.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert cursor.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    assert cursor.execute("PRAGMA busy_timeout").fetchone() == (5000,)
    store.close()


@pytest.mark.parametrize("version", [0, 1])
def test_a_file_of_an_older_schema_is_upgraded(tmp_path: Path, version: int) -> None:
    path = tmp_path / f"v{version}.db"
    note = Notification("instance.exists", "u1", "host-a", VmState.ACTIVE, None, T0)
    fault = Fault("u2", 500, "boom", "RuntimeError", "host-b", T0)
    write_legacy(
        path,
        version,
        instances=[inst("u1"), inst("u2", "host-b", TaskState.RESIZE_PREP)],
        migrations=[mig(1, "u2", "host-b", "host-a", MigrationStatus.PRE_MIGRATING)],
        allocations={
            "u1": {"host-a": Resources(1, 512, 1)},
            "m-1": {"host-b": Resources(2, 1024, 20)},
            "stray": {"host-a": Resources(4, 4, 4)},
        },
        notifications=[note],
        faults=[fault],
        queued=[
            messages.StopInstance("r", "u1", "host-a"),
            messages.StartInstance("r2", "u2", "host-b"),
            messages.StartInstance("r3", "u1", "host-a"),
        ],
    )
    store = SqliteStore(path)
    assert user_version(path) == SCHEMA_VERSION
    assert [i.uuid for i in store.list_instances()] == ["u1", "u2"]
    assert store.find_instance("vm-u2") == inst("u2", "host-b", TaskState.RESIZE_PREP)
    assert [i.uuid for i in store.instances_on("host-b", busy=True)] == ["u2"]
    open_ = [MigrationStatus.PRE_MIGRATING]
    assert [m.id for m in store.migrations_on("host-a", open_)] == [1]  # by destination
    assert store.usage("host-a") == Resources(5, 516, 5)
    assert store.host_usage("host-b") == HostUsage(Resources(2, 1024, 20), 1)
    assert store.project_usage("demo") == Resources(3, 1536, 21)
    assert store.list_faults("u2") == [fault]
    assert store.notifications_after(0) == [(1, note)]
    assert [m.request_id for m in store.pending_messages()] == ["r", "r2", "r3"]
    assert [m.request_id for m in store.pending_messages("u1")] == ["r", "r3"]
    assert [m.request_id for m in store.pending_messages("u2")] == ["r2"]
    store.set_allocations("m-1", {})  # the aggregates go on from there, in code
    assert store.project_usage("demo") == Resources(1, 512, 1)
    assert store.usage("host-b") == Resources()
    with contextlib.closing(sqlite3.connect(path)) as db:
        triggers = db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
        statuses = db.execute(
            "SELECT idx FROM record WHERE kind = 'migration' ORDER BY rowid"
        ).fetchall()
        indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert triggers == []
    assert "queue_instance" in indexes
    assert statuses == [("pre-migrating",)]
    store.close()
    SqliteStore(path).close()  # and opens again as a current file


def test_a_file_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    SqliteStore(path).close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        db.commit()
    newer = rf"schema version {SCHEMA_VERSION + 1} is newer than .* \({SCHEMA_VERSION}\)"
    with pytest.raises(SchemaVersionError, match=newer):
        SqliteStore(path)


def test_a_foreign_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
        db.execute("INSERT INTO notes VALUES ('keep me')")
        db.commit()
    before = path.read_bytes()
    with pytest.raises(ForeignDatabaseError, match=r"not a coldmig database .* notes"):
        SqliteStore(path)
    assert path.read_bytes() == before


def test_an_unreadable_file_raises_sqlite_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a database, just text" * 200)
    with pytest.raises(sqlite3.DatabaseError):
        SqliteStore(path)


def test_two_stores_on_one_file_see_each_others_writes(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    first, second = SqliteStore(path), SqliteStore(path)
    first.add_instance(inst())
    assert second.get_instance("u1") == inst()
    second.save_instance(inst(task=TaskState.RESIZE_PREP), expected_task_state=[None])
    with pytest.raises(Exception, match="actual state is resize_prep"):
        first.save_instance(inst(task=TaskState.RESIZE_MIGRATING), expected_task_state=[None])
    assert first.get_instance("u1").task_state is TaskState.RESIZE_PREP
    first.push_message(messages.StopInstance("r", "u1", "host-a"))
    assert second.take_message(destinations=["compute:host-a"]) is not None
    assert first.take_message() is None
    first.close()
    second.close()


def test_a_stale_generation_from_another_store_is_a_conflict(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    first, second = SqliteStore(path), SqliteStore(path)
    host = Host("host-a", 1, 1024, 10)
    first.put_host(host)
    seen_first, seen_second = first.host_usage("host-a"), second.host_usage("host-a")
    assert seen_first == seen_second == HostUsage(Resources(), 0)
    one = Resources(1, 512, 5)
    second.set_allocations("b", {"host-a": one}, generations={"host-a": seen_second.generation})
    with pytest.raises(GenerationConflict, match="host host-a: generation 1, expected 0"):
        first.set_allocations("a", {"host-a": one}, generations={"host-a": seen_first.generation})
    assert first.allocations("a") == {}
    assert claims.try_claim(first, host, "a", one) is False  # read again: no room left
    assert first.usage("host-a") == one
    first.close()
    second.close()


@pytest.mark.timeout(60)
def test_claims_from_two_threads_never_oversubscribe_a_host(tmp_path: Path) -> None:
    path = tmp_path / "threads.db"
    setup = SqliteStore(path)
    host = Host("host-a", 8, 8 * 1024, 80)
    setup.put_host(host)
    setup.close()
    one = Resources(1, 1024, 10)
    won: dict[str, list[str]] = {"a": [], "b": []}
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def scheduler(name: str) -> None:
        store = SqliteStore(path)
        try:
            start.wait()
            for n in range(12):
                # The fit is read outside any transaction, as a scheduler does.
                if claims.try_claim(store, host, f"{name}-{n}", one):
                    won[name].append(f"{name}-{n}")
        except BaseException as error:
            errors.append(error)
        finally:
            store.close()

    threads = [threading.Thread(target=scheduler, args=(n,)) for n in won]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    check = SqliteStore(path)
    assert len(won["a"]) + len(won["b"]) == 8
    assert check.usage("host-a") == Resources(8, 8 * 1024, 80)
    assert check.host_usage("host-a").generation == 8
    assert sorted(a.consumer for a in check.all_allocations()) == sorted(won["a"] + won["b"])
    check.close()


def test_on_commit_is_called_after_each_commit_only(tmp_path: Path) -> None:
    commits: list[int] = []
    store = SqliteStore(tmp_path / "x.db", on_commit=lambda: commits.append(len(commits)))
    assert commits == []  # opening the schema is not reported
    with store.atomic():
        store.add_instance(inst())
        with store.atomic():  # a savepoint: no commit of its own
            store.push_message(messages.StopInstance("r", "u1", "host-a"))
        assert commits == []
    assert len(commits) == 1
    with pytest.raises(RuntimeError), store.atomic():
        store.add_instance(inst("u2"))
        raise RuntimeError("rolled back")
    assert len(commits) == 1  # a rollback commits nothing
    store.add_instance(inst("u3"))  # a port method's own transaction
    assert len(commits) == 2
    store.on_commit = None
    store.add_instance(inst("u4"))
    assert len(commits) == 2
    store.close()


def test_down_hosts_reads_the_liveness_index(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "x.db")
    statement = store._outside_sql
    plan = store._cursor.execute(
        f"EXPLAIN QUERY PLAN {statement.sql}", statement.parameters({"low": "a", "high": "b"})
    ).fetchall()
    details = " ".join(str(row[-1]) for row in plan)
    assert "record_liveness" in details and "SCAN record" not in details, details
    store.close()


def test_a_file_of_schema_2_gets_the_liveness_index(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    store = SqliteStore(path)
    store.put_host(Host("host-a", 8, 16384, 200, up=False))
    store.put_host(Host("host-b", 8, 16384, 200, heartbeat_at=T0))
    store.put_host(Host("host-c", 8, 16384, 200))
    store.push_message(messages.StopInstance("r", "u1", "host-a"))
    store.close()
    as_schema(path, 2)
    reopened = SqliteStore(path)
    later = T0 + dt.timedelta(seconds=61)
    assert [h.name for h in reopened.down_hosts(later, 60)] == ["host-a", "host-b"]
    assert [m.request_id for m in reopened.pending_messages("u1")] == ["r"]
    reopened.close()
    assert user_version(path) == SCHEMA_VERSION
    with contextlib.closing(sqlite3.connect(path)) as db:
        indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        version = db.execute("SELECT version FROM coldmig_schema").fetchone()[0]
    assert "record_liveness" in indexes and version == SCHEMA_VERSION


def test_a_file_of_schema_3_gets_the_queue_by_instance(tmp_path: Path) -> None:
    path, fresh = tmp_path / "v3.db", tmp_path / "fresh.db"
    SqliteStore(fresh).close()
    store = SqliteStore(path)
    queued = [
        messages.StopInstance("r1", "u1", "host-a"),
        messages.StartInstance("r2", "u2", "host-b"),
        messages.MigrateServer("r3", "u1", "m1.small"),
        messages.StartInstance("r4", "u1", "host-a"),
    ]
    for message in queued:
        store.push_message(message)
    assert store.take_message(destinations=["compute:host-a"]) == queued[0]
    store.close()
    as_schema(path, 3)
    with contextlib.closing(sqlite3.connect(path)) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(queue)")]
    assert columns == ["seq", "destination", "data"]  # as schema 3 wrote it
    reopened = SqliteStore(path)
    assert reopened.pending_messages("u1") == [queued[2], queued[3]], (
        "the upgrade fills each queued message's instance, in the order of the queue"
    )
    assert reopened.pending_messages("u2") == [queued[1]]
    assert reopened.pending_messages() == queued[1:]
    later = messages.StopInstance("r5", "u2", "host-b")
    reopened.push_message(later)
    assert reopened.pending_messages("u2") == [queued[1], later], "and pushes go on after"
    assert reopened.take_message(destinations=["compute:host-a"]) == queued[3]
    assert reopened.pending_messages("u1") == [queued[2]]
    reopened.close()
    assert user_version(path) == SCHEMA_VERSION == 4
    with contextlib.closing(sqlite3.connect(path)) as db:
        version = db.execute("SELECT version FROM coldmig_schema").fetchone()[0]
    assert version == SCHEMA_VERSION
    upgraded, new = layout(path), layout(fresh)
    assert upgraded[1] == new[1], "the upgraded tables have the columns of a new file"
    assert [i[:2] for i in upgraded[0]] == [i[:2] for i in new[0]], "and its indexes"
    SqliteStore(path).close()  # and it opens again as a current file


def test_one_instances_messages_are_read_by_their_index(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "x.db")
    statement = store._pending_of_sql
    plan = store._cursor.execute(
        f"EXPLAIN QUERY PLAN {statement.sql}", statement.parameters({"uuid": "u1"})
    ).fetchall()
    details = " ".join(str(row[-1]) for row in plan)
    assert "queue_instance" in details and "SCAN queue" not in details, details
    store.close()
