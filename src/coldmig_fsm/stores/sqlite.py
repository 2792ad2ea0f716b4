"""A :class:`~coldmig_fsm.stores.sql.SqlStore` in one SQLite file: :class:`SqliteStore`.

The file runs in WAL mode with ``synchronous=NORMAL``: a committed step survives a
killed process (the property the crash-recovery work builds on), at a fraction of the
cost of a full fsync per commit; ``busy_timeout`` makes a second store on the same file
wait for the lock rather than fail. Transactions start with ``BEGIN IMMEDIATE``, so that
two stores on one file never both read and then both write.

The schema is :mod:`coldmig_fsm.stores.sql`'s. The SQLite file also carries its version
in ``PRAGMA user_version``, which is what the coldmig_fsm releases before schema 2 read:
they refuse a file of this schema instead of writing to it. Files of those releases
(schema 0: no usage aggregates; 1: aggregates kept by triggers) are upgraded when
opened, in one transaction: the triggers dropped, the lookup columns filled from the
stored records, the aggregates and owners computed afresh from the allocations and the
records, the hosts' liveness indexed, the queued messages' instances indexed. A file of
schema 2 gets the liveness index, and one of schema 2 or 3 the queue's instance column
(:meth:`SqlStore._upgrade_schema <coldmig_fsm.stores.sql.SqlStore._upgrade_schema>`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, pool

from coldmig_fsm.stores.sql import (
    METADATA,
    SCHEMA_VERSION,
    ForeignDatabaseError,
    SchemaVersionError,
    SqlStore,
    allocation,
    consumer,
    host_usage,
    log,
    project_usage,
    record,
    schema,
)

__all__ = ["SCHEMA_VERSION", "ForeignDatabaseError", "SchemaVersionError", "SqliteStore"]

MEMORY = ":memory:"
"""The path of a database that lives in the store's connection only (gone at close)."""

_LEGACY_TABLES = frozenset({"allocation", "counter", "log", "queue", "record"})
_LEGACY_TRIGGERS = (
    "allocation_added",
    "allocation_removed",
    "allocation_changed",
    "consumer_owned",
)
# Per connection. WAL is set once the file is known to be coldmig's: switching a file to
# WAL rewrites its header, and a file that is not coldmig's is never written to.
_PRAGMAS = ("PRAGMA synchronous=NORMAL", "PRAGMA busy_timeout=5000")
_WAL = "PRAGMA journal_mode=WAL"


def _engine(path: str) -> sa.Engine:
    if path == MEMORY:
        # One connection for the store's life: the database is that connection.
        engine = sa.create_engine(
            "sqlite://",
            isolation_level="AUTOCOMMIT",
            poolclass=pool.StaticPool,
            connect_args={"check_same_thread": False},
        )
    else:
        engine = sa.create_engine(
            sa.URL.create("sqlite", database=path),
            isolation_level="AUTOCOMMIT",
            poolclass=pool.NullPool,
            connect_args={"check_same_thread": False},
        )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        for pragma in _PRAGMAS:
            dbapi_connection.execute(pragma).fetchall()

    return engine


class SqliteStore(SqlStore):
    """A store in the SQLite file ``path`` (created with its schema when missing;
    ``":memory:"``: a database that lives as long as the store).

    One connection, used from one thread at a time (``check_same_thread`` is off so a
    store may be handed to another thread; serialise access yourself). Several stores,
    in several threads or processes, may use one file. Every write outside
    :meth:`atomic` commits at once. ``on_commit`` is called after each commit (see
    :attr:`SqlStore.on_commit <coldmig_fsm.stores.sql.SqlStore.on_commit>`).

    Raises:
        SchemaVersionError: the file is of a newer schema.
        ForeignDatabaseError: the file is an SQLite database that is not coldmig's.
        sqlite3.Error: SQLite cannot open or read the file.
    """

    def __init__(self, path: str | Path, *, on_commit: Callable[[], None] | None = None) -> None:
        self.path = str(path)
        try:
            super().__init__(
                engine=_engine(self.path), begin="BEGIN IMMEDIATE", on_commit=on_commit
            )
            self._cursor.execute(_WAL).fetchall()  # finished: it holds a lock until then
        except sa.exc.DBAPIError as error:
            if isinstance(error.orig, sqlite3.Error):
                raise error.orig from None
            raise

    def _where(self) -> str:
        return self.path

    def _user_version(self) -> int:
        return int(self._cursor.execute("PRAGMA user_version").fetchone()[0])

    def _check_version(self, version: int) -> None:
        super()._check_version(max(version, self._user_version()))

    def _create_schema(self) -> None:
        version = self._user_version()
        if version:  # a file with no table but a version: not one this module made
            super()._check_version(version)
        super()._create_schema()
        self._cursor.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _upgrade_legacy(self, tables: set[str]) -> bool:
        if not tables >= _LEGACY_TABLES:
            return False
        super()._check_version(self._user_version())
        self._upgrade(tables)
        self._reindex_hosts()
        self._cursor.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return True

    def _upgrade_schema(self, version: int) -> None:
        super()._upgrade_schema(version)
        self._cursor.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _upgrade(self, tables: set[str]) -> None:
        """Schema 0 or 1 to :data:`SCHEMA_VERSION` (inside the opening transaction)."""
        connection, execute = self._connection, self._connection.execute
        legacy = sa.MetaData()
        for trigger in _LEGACY_TRIGGERS:
            execute(sa.text(f"DROP TRIGGER IF EXISTS {trigger}"))
        # Records: the same rows in the same order, with the lookup columns.
        execute(sa.text("ALTER TABLE record RENAME TO record_v1"))
        execute(sa.text("DROP INDEX IF EXISTS record_group"))
        old = sa.Table("record_v1", legacy, autoload_with=connection)
        for name in ("consumer", "host_usage", "project_usage"):
            if name in tables:
                sa.Table(name, legacy, autoload_with=connection).drop(connection)
        execute(sa.text("ALTER TABLE log ADD COLUMN grp VARCHAR(255)"))
        self._index_queue()  # the queue table is kept: its instance column added, filled
        METADATA.create_all(connection)
        for table in METADATA.tables.values():  # the new indexes of the tables kept
            for index in table.indexes:
                index.create(connection, checkfirst=True)
        field = sa.func.json_extract
        instance, migration = old.c.kind == "instance", old.c.kind == "migration"
        host = sa.case(
            (instance, field(old.c.data, "$.host")),
            (migration, field(old.c.data, "$.source_compute")),
        )
        peer = sa.case((migration, field(old.c.data, "$.dest_compute")))
        rows = sa.select(
            sa.literal_column("rowid"),  # schema 1's insertion order
            old.c.kind,
            old.c.key,
            old.c.idx,
            old.c.grp,
            host,
            peer,
            old.c.data,
        ).order_by(sa.literal_column("rowid"))
        execute(
            sa.insert(record).from_select(
                ["seq", "kind", "key", "idx", "grp", "host", "peer", "data"], rows
            )
        )
        old.drop(connection)
        execute(
            sa.update(log)
            .where(log.c.kind == "fault")
            .values(grp=field(log.c.data, "$.instance_uuid"))
        )
        # Owners from the records (a migration's from its instance's), then aggregates.
        execute(
            sa.insert(consumer).from_select(
                ["consumer", "project"],
                sa.select(record.c.key, field(record.c.data, "$.project_id")).where(
                    record.c.kind == "instance"
                ),
            )
        )
        owner = consumer.alias("owner")
        execute(
            sa.insert(consumer).from_select(
                ["consumer", "project"],
                sa.select(field(record.c.data, "$.uuid"), owner.c.project)
                .join(owner, owner.c.consumer == field(record.c.data, "$.instance_uuid"))
                .where(record.c.kind == "migration"),
            )
        )
        sums = [sa.func.sum(allocation.c[c]) for c in ("vcpus", "ram_mb", "disk_gb")]
        execute(
            sa.insert(host_usage).from_select(
                ["host", "vcpus", "ram_mb", "disk_gb", "generation"],
                sa.select(allocation.c.host, *sums, sa.literal(1)).group_by(allocation.c.host),
            )
        )
        execute(
            sa.insert(project_usage).from_select(
                ["project", "vcpus", "ram_mb", "disk_gb"],
                sa.select(consumer.c.project, *sums)
                .select_from(
                    allocation.join(consumer, consumer.c.consumer == allocation.c.consumer)
                )
                .group_by(consumer.c.project),
            )
        )
        execute(sa.insert(schema).values(name="coldmig", version=SCHEMA_VERSION))
