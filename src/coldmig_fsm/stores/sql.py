"""The SQL store, written once on SQLAlchemy 2 Core: :class:`SqlStore`.

Over 400 lines because it is one backend of the whole port (records, placement, queue,
logs, schema); its parts are in the order of :mod:`coldmig_fsm.stores.base`.

**Tables** (:data:`METADATA`): ``record`` holds every keyed record as JSON
(:class:`~coldmig_fsm.stores.codec.Codec`) beside the columns that lookups read:
``idx`` (what a compare-and-swap compares: an instance's task_state, a migration's or a
request's status), ``grp`` (name, instance), ``host`` and ``peer`` (an instance's host; a
migration's source and destination), each behind an index. ``log`` holds notifications
and faults in one sequence (the outbox reads it by ``seq``), ``queue`` the messages
(``queue_destination`` on ``destination`` and ``seq`` for taking them,
``queue_instance`` on ``instance_uuid`` and ``seq`` for one instance's),
``allocation`` the claims; ``host_usage`` (with the host's ``generation``) and
``project_usage`` are aggregates that this module changes in the same transaction as
each allocation change, in code (no trigger: the same code on every database);
``consumer`` says which project owns each consumer; ``coldmig_schema`` the version.

**Statements** are Core constructs (``select``/``insert``/``update``/``delete``), built
once per store and compiled once for its dialect; they run on the DBAPI cursor of the
store's connection. A migrate+confirm cycle makes some hundred small statements, and
compiling them once (rather than looking each one up in SQLAlchemy's statement cache on
every call) halves their cost. Columns are strings and integers only, which need no type
conversion on the way in or out (checked at import). An upsert is the one construct Core
has per dialect (``INSERT ... ON CONFLICT``): :func:`_insert_for` picks SQLite's or
PostgreSQL's, which share one API.

**Transactions**: the connection is in autocommit mode and :meth:`SqlStore.atomic` emits
the transaction statements itself: ``BEGIN`` (``BEGIN IMMEDIATE`` on SQLite, so that a
writer takes the lock before reading what it will write), then ``SAVEPOINT`` for each
nested block. Outside any block each write runs in a transaction of its own.
Compare-and-swap writes are single ``UPDATE ... WHERE`` statements, which are safe under
PostgreSQL's default READ COMMITTED (the second writer waits for the row, then sees the
new value and matches nothing); taking a message is one ``DELETE ... RETURNING`` whose
sub-select is ``FOR UPDATE SKIP LOCKED`` where the database has it.

**Schema versions**: :data:`SCHEMA_VERSION` is in ``coldmig_schema``. A database with
no table gets the schema; one of this version opens; one of an older version with the
schema table is upgraded in its opening transaction (2: the liveness index, each host
record written again; 2 and 3: the column ``queue.instance_uuid`` added, filled from
each queued message's data, and indexed); a newer one is refused
(:class:`SchemaVersionError`); one with tables that are not coldmig's is refused
(:class:`ForeignDatabaseError`) and never written to. A subclass may upgrade older
layouts (:class:`~coldmig_fsm.stores.sqlite.SqliteStore` upgrades the files of versions
0 and 1).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from coldmig_fsm.messages import Message
from coldmig_fsm.records import Allocation, Host, Resources
from coldmig_fsm.stores.base import (
    HOST,
    RANGED,
    GenerationConflict,
    HostUsage,
    MessageTaken,
    Store,
)
from coldmig_fsm.stores.codec import Codec

__all__ = [
    "METADATA",
    "SCHEMA_VERSION",
    "ForeignDatabaseError",
    "SchemaVersionError",
    "SqlStore",
]

SCHEMA_VERSION: Final = 4
"""The schema this module writes: 0 had no usage aggregates, 1 added them (kept by
SQLite triggers), 2 keeps them in code, adds host generations and the lookup columns,
3 keeps each host's liveness in its ``idx`` (:func:`~coldmig_fsm.stores.base.
liveness_index`) behind the index ``record_liveness``, 4 keeps each queued message's
instance in ``queue.instance_uuid`` behind the index ``queue_instance`` (what
:meth:`~coldmig_fsm.stores.base.Store.pending_messages` of one instance reads)."""

_ID = sa.String(255)

METADATA = sa.MetaData()


record = sa.Table(
    "record",
    METADATA,
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("key", _ID, nullable=False),
    sa.Column("idx", sa.String(64), nullable=False),
    sa.Column("grp", _ID),
    sa.Column("host", _ID),
    sa.Column("peer", _ID),
    sa.Column("data", sa.Text, nullable=False),
    sa.UniqueConstraint("kind", "key", name="record_key"),
    sa.Index("record_group", "kind", "grp"),
)
log = sa.Table(
    "log",
    METADATA,
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("grp", _ID),
    sqlite_autoincrement=True,
)
counter = sa.Table(
    "counter",
    METADATA,
    sa.Column("name", _ID, primary_key=True),
    sa.Column("value", sa.Integer, nullable=False),
)
allocation = sa.Table(
    "allocation",
    METADATA,
    sa.Column("consumer", _ID, primary_key=True),
    sa.Column("host", _ID, primary_key=True),
    sa.Column("vcpus", sa.Integer, nullable=False),
    sa.Column("ram_mb", sa.Integer, nullable=False),
    sa.Column("disk_gb", sa.Integer, nullable=False),
    sa.Index("allocation_host", "host"),
)
queue = sa.Table(
    "queue",
    METADATA,
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("destination", _ID, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    # Set on every push; nullable only because schema 4 added it to existing tables
    # (ALTER TABLE ... ADD COLUMN), which filled it at once.
    sa.Column("instance_uuid", _ID),
    sa.Index("queue_destination", "destination", "seq"),
    sa.Index("queue_instance", "instance_uuid", "seq"),
    sqlite_autoincrement=True,
)
consumer = sa.Table(
    "consumer",
    METADATA,
    sa.Column("consumer", _ID, primary_key=True),
    sa.Column("project", _ID, nullable=False),
)
host_usage = sa.Table(
    "host_usage",
    METADATA,
    sa.Column("host", _ID, primary_key=True),
    sa.Column("vcpus", sa.Integer, nullable=False),
    sa.Column("ram_mb", sa.Integer, nullable=False),
    sa.Column("disk_gb", sa.Integer, nullable=False),
    sa.Column("generation", sa.Integer, nullable=False),
)
project_usage = sa.Table(
    "project_usage",
    METADATA,
    sa.Column("project", _ID, primary_key=True),
    sa.Column("vcpus", sa.Integer, nullable=False),
    sa.Column("ram_mb", sa.Integer, nullable=False),
    sa.Column("disk_gb", sa.Integer, nullable=False),
)


def _partial(name: str, *columns: sa.Column[Any]) -> sa.Index:
    """An index of the rows whose second column is set (partial where the database has
    partial indexes): the other rows do not pay for it on every write."""
    condition = columns[1].is_not(None)
    return sa.Index(name, *columns, sqlite_where=condition, postgresql_where=condition)


# Only instances and migrations are found under a host; only faults have a log group
# (the outbox reads the log by ``seq``, its primary key).
_partial("record_host", record.c.kind, record.c.host, record.c.idx)
# The hosts' liveness, in order (Store.down_hosts reads a range of it); partial, so that
# the writes of instances and migrations do not pay for it. A statement uses it only
# when it names the kind as this literal.
_HOST_KIND: sa.ColumnClause[str] = sa.literal_column(f"'{HOST}'")
_is_host = record.c.kind == _HOST_KIND
sa.Index(
    "record_liveness", record.c.kind, record.c.idx, sqlite_where=_is_host, postgresql_where=_is_host
)
_partial("record_peer", record.c.kind, record.c.peer, record.c.idx)
_partial("log_group", log.c.kind, log.c.grp, log.c.seq)

schema = sa.Table(
    "coldmig_schema",
    METADATA,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)

# The statements run on the DBAPI cursor: no column may need a type conversion.
for _table in METADATA.tables.values():
    for _column in _table.columns:
        if not isinstance(_column.type, sa.Integer | sa.String):
            raise TypeError(f"{_table.name}.{_column.name}: only integers and strings")


class SchemaVersionError(RuntimeError):
    """The database was written by a newer coldmig_fsm (a schema this one lacks)."""


class ForeignDatabaseError(RuntimeError):
    """The database holds tables that are not coldmig's: it is left untouched."""


def _insert_for(dialect: sa.Dialect) -> Callable[[sa.Table], Any]:
    """The dialect's ``insert`` construct with ``on_conflict_do_*`` (an upsert)."""
    if dialect.name == "sqlite":
        return sqlite.insert
    if dialect.name == "postgresql":
        return postgresql.insert
    raise NotImplementedError(f"SqlStore runs on SQLite and PostgreSQL, not {dialect.name}")


class _Prepared:
    """A Core statement compiled once for one dialect; run with a dict of parameters."""

    __slots__ = ("names", "positional", "sql", "values")

    def __init__(self, statement: sa.ClauseElement, dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, sa.sql.compiler.SQLCompiler)  # a statement, not DDL
        self.sql = compiled.string
        self.positional = compiled.positional
        self.values = {k: b.value for k, b in compiled.binds.items() if not b.required}
        self.names: Sequence[str] = tuple(compiled.positiontup or ()) if self.positional else ()

    def parameters(self, given: Mapping[str, Any]) -> Sequence[Any] | Mapping[str, Any]:
        if self.positional:
            values = self.values
            return [given[n] if n in given else values[n] for n in self.names]
        return {**self.values, **given}


_ZERO = (0, 0, 0)
_NO_BLOCK = contextlib.nullcontext()


def _queue_query(
    held: Collection[str], destinations: Collection[str] | None
) -> tuple[int, int | None, dict[str, str]] | None:
    """The parameters of a queue lookup skipping ``held`` destinations (and limited to
    ``destinations``): (how many held, how many wanted or ``None``, the bound values);
    ``None`` when no destination is wanted at all."""
    waiting = list(held)
    wanted = None if destinations is None else list(destinations)
    if wanted == []:
        return None
    params = {f"h{i}": h for i, h in enumerate(waiting)}
    params.update({f"d{i}": d for i, d in enumerate(wanted or ())})
    return len(waiting), None if wanted is None else len(wanted), params


def _bind(name: str) -> sa.BindParameter[Any]:
    return sa.bindparam(name)


class SqlStore(Store):
    """A store in the SQL database at ``url`` (an SQLAlchemy URL; SQLite or PostgreSQL).

    One connection, used from one thread at a time (serialise access yourself); several
    stores (in several processes) may share one database: that is what the
    compare-and-swap writes, the host generations and the queue's ``DELETE ...
    RETURNING`` are for.

    Args:
        url: where the database is.
        engine: an engine to use instead of one made from ``url`` (it must be in
            ``AUTOCOMMIT`` isolation: the store opens its transactions itself).
        begin: the statement that opens a transaction (SQLite: ``BEGIN IMMEDIATE``).
        on_commit: called after each transaction this store commits (see
            :attr:`on_commit`).

    Raises:
        SchemaVersionError: the database is of a newer schema.
        ForeignDatabaseError: the database holds tables that are not coldmig's.
    """

    def __init__(
        self,
        url: str | sa.URL = "",
        *,
        engine: sa.Engine | None = None,
        begin: str = "BEGIN",
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.on_commit = None  # not for the transaction that opens the schema
        self.engine = engine or sa.create_engine(url, isolation_level="AUTOCOMMIT")
        self._begin = begin
        self._codec = Codec()
        self._decoded: dict[tuple[str, str], tuple[str, Any]] = {}
        self._owners: dict[str, str] = {}  # consumer -> project, as committed or written
        self._depth = 0
        self._connection = self.engine.connect()
        try:
            dbapi = self._connection.connection.driver_connection
            assert dbapi is not None
            self._cursor = dbapi.cursor()
            self._prepare(self.engine.dialect)
            self._open_schema()
        except BaseException:
            self._connection.close()
            raise
        self.on_commit = on_commit

    on_commit: Callable[[], None] | None
    """Called, with no argument, right after each transaction the store commits: every
    outermost :meth:`atomic` block and every port method's own transaction (a write
    outside any block that needs several statements), not a single-statement write
    outside a block, not the transaction that opens the schema. For instrumentation and
    crash tests (``tests/kill_child.py`` kills its process there, so at every boundary
    between two committed transactions). What it raises propagates to the caller of the
    block, whose writes are committed already. ``None``: nothing is called."""

    def close(self) -> None:
        self._cursor.close()
        self._connection.close()
        self.engine.dispose()

    # -- schema ---------------------------------------------------------------------------

    def _open_schema(self) -> None:
        with self._atomic():
            tables = set(sa.inspect(self._connection).get_table_names())
            if schema.name in tables:
                version = self._connection.execute(
                    sa.select(schema.c.version).where(schema.c.name == "coldmig")
                ).scalar_one()
                self._check_version(version)
                if version < SCHEMA_VERSION:
                    self._upgrade_schema(version)
            elif not tables:
                self._create_schema()
            elif not self._upgrade_legacy(tables):
                raise ForeignDatabaseError(
                    f"{self._where()}: not a coldmig database (it has the tables "
                    f"{', '.join(sorted(tables))}): it was left untouched"
                )

    def _where(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self._where()}: database schema version {version} is newer than this "
                f"coldmig_fsm's ({SCHEMA_VERSION}); use the newer coldmig_fsm, or a new "
                "database"
            )

    def _create_schema(self) -> None:
        METADATA.create_all(self._connection)
        self._connection.execute(sa.insert(schema).values(name="coldmig", version=SCHEMA_VERSION))

    def _upgrade_schema(self, version: int) -> None:
        """Upgrade a database of an older schema that has the schema table (2: the
        liveness index; 2 and 3: the queue's instance column), in the opening
        transaction."""
        if version < 2:
            raise SchemaVersionError(f"{self._where()}: schema version {version} is too old")
        if version < 3:
            for index in record.indexes:
                index.create(self._connection, checkfirst=True)
            self._reindex_hosts()
        if version < 4:
            self._index_queue()
        self._connection.execute(
            sa.update(schema).where(schema.c.name == "coldmig").values(version=SCHEMA_VERSION)
        )

    def _index_queue(self) -> None:
        """Add the column ``queue.instance_uuid`` to a queue table of schema 3 or older,
        fill it from each queued message's data, and create its index (schema 4)."""
        connection, column = self._connection, queue.c.instance_uuid
        kind = column.type.compile(dialect=self._dialect)
        connection.execute(sa.text(f"ALTER TABLE {queue.name} ADD COLUMN {column.name} {kind}"))
        queued = connection.execute(sa.select(queue.c.seq, queue.c.data)).fetchall()
        if queued:
            # Every message record has an instance_uuid (the codec writes its fields).
            connection.execute(
                sa.update(queue)
                .where(queue.c.seq == sa.bindparam("at"))
                .values(instance_uuid=sa.bindparam("uuid")),
                [{"at": seq, "uuid": json.loads(data)["instance_uuid"]} for seq, data in queued],
            )
        for index in queue.indexes:
            index.create(connection, checkfirst=True)

    def _reindex_hosts(self) -> None:
        """Write each host record again, so that its ``idx`` holds its liveness."""
        for host in self._values(HOST):
            self.put_host(host)

    def _upgrade_legacy(self, tables: set[str]) -> bool:
        """Upgrade a database of an older layout that ``tables`` reveals; False when
        ``tables`` are not an older coldmig layout (the SQL store knows none)."""
        return False

    # -- statements -----------------------------------------------------------------------

    def _prepare(self, dialect: sa.Dialect) -> None:
        """Build and compile every statement of the store once."""
        self._dialect = dialect
        self._many: dict[tuple[Any, ...], _Prepared] = {}
        insert = _insert_for(dialect)
        kind, key = record.c.kind == _bind("kind"), record.c.key == _bind("key")

        def prepared(statement: sa.ClauseElement) -> _Prepared:
            return _Prepared(statement, dialect)

        columns = {c: _bind(c) for c in ("kind", "key", "idx", "grp", "host", "peer", "data")}
        upsert = insert(record).values(columns)
        self._put_sql = prepared(
            upsert.on_conflict_do_update(
                index_elements=[record.c.kind, record.c.key],
                set_={c: upsert.excluded[c] for c in ("idx", "host", "peer", "data")},
            )
        )
        self._get_sql = prepared(sa.select(record.c.data).where(kind, key))
        self._idx_sql = prepared(sa.select(record.c.idx).where(kind, key))
        by_seq = sa.select(record.c.key, record.c.data).order_by(record.c.seq)
        self._values_sql = prepared(by_seq.where(kind))
        self._group_sql = prepared(by_seq.where(kind, record.c.grp == _bind("grp")))
        self._append_sql = prepared(
            sa.insert(log).values(kind=_bind("kind"), grp=_bind("grp"), data=_bind("data"))
        )
        in_log = sa.select(log.c.data).order_by(log.c.seq).where(log.c.kind == _bind("kind"))
        self._log_sql = prepared(in_log)
        self._log_group_sql = prepared(in_log.where(log.c.grp == _bind("grp")))
        after = (
            sa.select(log.c.seq, log.c.data)
            .where(log.c.kind == _bind("kind"), log.c.seq > _bind("seq"))
            .order_by(log.c.seq)
        )
        self._after_sql = prepared(after)
        self._after_limit_sql = prepared(after.limit(_bind("limit")))
        self._counter_sql = prepared(
            sa.select(counter.c.value).where(counter.c.name == _bind("name"))
        )
        self._swap_counter_sql = prepared(
            sa.update(counter)
            .where(counter.c.name == _bind("name"), counter.c.value == _bind("expected"))
            .values(value=_bind("value"))
        )
        self._new_counter_sql = prepared(
            insert(counter)
            .values(name=_bind("name"), value=_bind("value"))
            .on_conflict_do_nothing(index_elements=[counter.c.name])
        )
        bump = insert(counter).values(name=_bind("name"), value=1)
        self._next_id_sql = prepared(
            bump.on_conflict_do_update(
                index_elements=[counter.c.name], set_={"value": counter.c.value + 1}
            ).returning(counter.c.value)
        )
        held = sa.select(allocation.c.host, allocation.c.vcpus, allocation.c.ram_mb)
        self._allocations_sql = prepared(
            held.add_columns(allocation.c.disk_gb).where(allocation.c.consumer == _bind("consumer"))
        )
        resources = {
            "vcpus": _bind("vcpus"),
            "ram_mb": _bind("ram_mb"),
            "disk_gb": _bind("disk_gb"),
        }
        one = (allocation.c.consumer == _bind("consumer"), allocation.c.host == _bind("host"))
        self._alloc_insert_sql = prepared(
            sa.insert(allocation).values(
                consumer=_bind("consumer"), host=_bind("host"), **resources
            )
        )
        self._alloc_update_sql = prepared(sa.update(allocation).where(*one).values(resources))
        self._alloc_delete_sql = prepared(sa.delete(allocation).where(*one))
        self._all_allocations_sql = prepared(
            sa.select(allocation).order_by(allocation.c.consumer, allocation.c.host)
        )
        moved = {
            "vcpus": host_usage.c.vcpus + _bind("vcpus"),
            "ram_mb": host_usage.c.ram_mb + _bind("ram_mb"),
            "disk_gb": host_usage.c.disk_gb + _bind("disk_gb"),
            "generation": host_usage.c.generation + 1,
        }
        add_host = insert(host_usage).values(host=_bind("host"), generation=1, **resources)
        self._host_add_sql = prepared(
            add_host.on_conflict_do_update(index_elements=[host_usage.c.host], set_=moved)
        )
        self._host_swap_sql = prepared(
            sa.update(host_usage)
            .where(
                host_usage.c.host == _bind("host"),
                host_usage.c.generation == _bind("generation"),
            )
            .values(moved)
        )
        self._host_new_sql = prepared(
            insert(host_usage)
            .values(host=_bind("host"), vcpus=0, ram_mb=0, disk_gb=0, generation=0)
            .on_conflict_do_nothing(index_elements=[host_usage.c.host])
        )
        self._host_usage_sql = prepared(
            sa.select(
                host_usage.c.vcpus,
                host_usage.c.ram_mb,
                host_usage.c.disk_gb,
                host_usage.c.generation,
            ).where(host_usage.c.host == _bind("host"))
        )
        add_project = insert(project_usage).values(project=_bind("project"), **resources)
        self._project_add_sql = prepared(
            add_project.on_conflict_do_update(
                index_elements=[project_usage.c.project],
                set_={
                    "vcpus": project_usage.c.vcpus + add_project.excluded.vcpus,
                    "ram_mb": project_usage.c.ram_mb + add_project.excluded.ram_mb,
                    "disk_gb": project_usage.c.disk_gb + add_project.excluded.disk_gb,
                },
            )
        )
        self._project_usage_sql = prepared(
            sa.select(project_usage.c.vcpus, project_usage.c.ram_mb, project_usage.c.disk_gb).where(
                project_usage.c.project == _bind("project")
            )
        )
        self._owner_sql = prepared(
            sa.select(consumer.c.project).where(consumer.c.consumer == _bind("consumer"))
        )
        self._own_sql = prepared(
            insert(consumer)
            .values(consumer=_bind("consumer"), project=_bind("project"))
            .on_conflict_do_nothing(index_elements=[consumer.c.consumer])
        )
        self._push_sql = prepared(
            sa.insert(queue).values(
                destination=_bind("destination"),
                instance_uuid=_bind("instance_uuid"),
                data=_bind("data"),
            )
        )
        in_queue = sa.select(queue.c.data).order_by(queue.c.seq)
        self._pending_sql = prepared(in_queue)
        self._pending_of_sql = prepared(in_queue.where(queue.c.instance_uuid == _bind("uuid")))
        self._remove_sql = prepared(sa.delete(queue).where(queue.c.seq == _bind("seq")))
        # Two ranges of the liveness index (an OR of them may not use it).
        hosts = sa.select(record.c.seq, record.c.key, record.c.data).where(_is_host)
        self._outside_sql = prepared(
            sa.union(
                hosts.where(record.c.idx > "", record.c.idx < _bind("low")),
                hosts.where(record.c.idx > _bind("high")),
            ).order_by("seq")
        )

    def _in_list(self, column: sa.ColumnElement[Any], prefix: str, n: int) -> Any:
        return column.in_([_bind(f"{prefix}{i}") for i in range(n)])

    def _swap_sql(self, n: int | None) -> _Prepared:
        """The record compare-and-swap for ``n`` expected values (``None``: any)."""
        found = self._many.get(("swap", n))
        if found is None:
            where = [record.c.kind == _bind("kind"), record.c.key == _bind("key")]
            if n is not None:
                where.append(self._in_list(record.c.idx, "e", n))
            statement = (
                sa.update(record)
                .where(*where)
                .values(idx=_bind("idx"), host=_bind("host"), peer=_bind("peer"))
                .values(data=_bind("data"))
            )
            found = self._many[("swap", n)] = _Prepared(statement, self._dialect)
        return found

    def _hosted_sql(self, n: int | None, exclude: bool) -> _Prepared:
        found = self._many.get(("hosted", n, exclude))
        if found is None:
            # One SELECT per host column, each on its own index (an OR of the two would
            # let the planner fall back to reading every record of the kind).
            branches = []
            for column in (record.c.host, record.c.peer):
                where = [record.c.kind == _bind("kind"), column == _bind("host")]
                if n is not None:
                    where.append(self._in_list(record.c.idx, "i", n))
                if exclude:
                    where.append(record.c.idx != _bind("exclude"))
                branches.append(sa.select(record.c.seq, record.c.key, record.c.data).where(*where))
            statement = sa.union(*branches).order_by("seq")
            found = self._many[("hosted", n, exclude)] = _Prepared(statement, self._dialect)
        return found

    def _deliverable(self, held: int, destinations: int | None) -> list[Any]:
        where = []
        if held:
            where.append(sa.not_(self._in_list(queue.c.destination, "h", held)))
        if destinations is not None:
            where.append(self._in_list(queue.c.destination, "d", destinations))
        return where

    def _peek_sql(self, held: int, destinations: int | None) -> _Prepared:
        found = self._many.get(("peek", held, destinations))
        if found is None:
            statement = (
                sa.select(queue.c.seq, queue.c.data)
                .where(*self._deliverable(held, destinations))
                .order_by(queue.c.seq)
                .limit(1)
            )
            found = self._many[("peek", held, destinations)] = _Prepared(statement, self._dialect)
        return found

    def _take_sql(self, held: int, destinations: int | None) -> _Prepared:
        found = self._many.get(("take", held, destinations))
        if found is None:
            where = self._deliverable(held, destinations)
            oldest = (
                sa.select(queue.c.seq)
                .where(*where)
                .order_by(queue.c.seq)
                .limit(1)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            statement = sa.delete(queue).where(queue.c.seq == oldest).returning(queue.c.data)
            found = self._many[("take", held, destinations)] = _Prepared(statement, self._dialect)
        return found

    def _run(self, statement: _Prepared, **given: Any) -> Any:
        """Execute on the connection's DBAPI cursor; returns the cursor."""
        cursor = self._cursor
        cursor.execute(statement.sql, statement.parameters(given))
        return cursor

    # -- transactions ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _atomic(self) -> Iterator[None]:
        cursor = self._cursor
        depth = self._depth
        savepoint = f"coldmig_{depth}"
        cursor.execute(self._begin if depth == 0 else f"SAVEPOINT {savepoint}")
        self._depth = depth + 1
        try:
            if depth == 0 and self._handed is not None:
                self._take_handed()  # a delivery's message, in its first transaction
            yield
        except BaseException:
            self._depth = depth
            # What the block wrote or read into the caches may be gone with it.
            self._decoded.clear()
            self._owners.clear()
            if depth == 0:
                try:
                    cursor.execute("ROLLBACK")
                finally:
                    self._block_ended(committed=False)
            else:
                cursor.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
                cursor.execute(f"RELEASE SAVEPOINT {savepoint}")
            raise
        self._depth = depth
        if depth:
            cursor.execute(f"RELEASE SAVEPOINT {savepoint}")
            return
        try:
            cursor.execute("COMMIT")
        except BaseException:
            self._decoded.clear()
            self._owners.clear()
            self._block_ended(committed=False)
            with contextlib.suppress(Exception):
                cursor.execute("ROLLBACK")
            raise
        self._block_ended(committed=True)
        if self.on_commit is not None:
            self.on_commit()

    def atomic(self) -> contextlib.AbstractContextManager[None]:
        return self._atomic()

    def _batch(self) -> contextlib.AbstractContextManager[None]:
        """A transaction when none is open (several statements that belong together)."""
        return self._atomic() if self._depth == 0 else contextlib.nullcontext()

    def _write(self) -> contextlib.AbstractContextManager[None]:
        """Around a single-statement write: a transaction when none is open and a
        delivery's message waits to be taken with the first write; else nothing."""
        if self._depth == 0 and self._handed is not None:
            return self._atomic()
        return _NO_BLOCK

    def _in_block(self) -> bool:
        return self._depth > 0

    # -- records --------------------------------------------------------------------------

    def _decode(self, kind: str, key: str, text: str) -> Any:
        # A row whose text is what this store last read or wrote decodes to the same
        # record: keep the record, so that rereading one costs a string comparison.
        cached = self._decoded.get((kind, key))
        if cached is not None and cached[0] == text:
            return cached[1]
        value = self._codec.load(kind, text)
        self._remember(kind, key, text, value)
        return value

    def _remember(self, kind: str, key: str, text: str, value: Any) -> None:
        if len(self._decoded) >= 50_000:
            self._decoded.clear()
        self._decoded[(kind, key)] = (text, value)

    def _get(self, kind: str, key: str) -> Any | None:
        row = self._run(self._get_sql, kind=kind, key=key).fetchone()
        return None if row is None else self._decode(kind, key, row[0])

    def _put(
        self,
        kind: str,
        key: str,
        value: Any,
        index: str = "",
        group: str | None = None,
        hosts: tuple[str | None, str | None] = (None, None),
    ) -> None:
        text = self._codec.dump(value)
        with self._write():
            self._run(
                self._put_sql,
                kind=kind,
                key=key,
                idx=index,
                grp=group,
                host=hosts[0],
                peer=hosts[1],
                data=text,
            )
        self._remember(kind, key, text, value)

    def _swap(
        self,
        kind: str,
        key: str,
        value: Any,
        index: str,
        expected: Collection[str] | None,
        hosts: tuple[str | None, str | None] = (None, None),
    ) -> str | None:
        wanted = None if expected is None else list(expected)
        text = self._codec.dump(value)
        params = {f"e{i}": e for i, e in enumerate(wanted or ())}
        # One UPDATE is the whole compare-and-swap; the SELECT only explains a refusal.
        with self._write():
            cursor = self._run(
                self._swap_sql(None if wanted is None else len(wanted)),
                kind=kind,
                key=key,
                idx=index,
                host=hosts[0],
                peer=hosts[1],
                data=text,
                **params,
            )
        if cursor.rowcount == 1:
            self._remember(kind, key, text, value)
            return None
        row = self._run(self._idx_sql, kind=kind, key=key).fetchone()
        if row is None:
            raise KeyError(key)
        return str(row[0])

    def _rows(self, kind: str, rows: list[tuple[str, str]]) -> list[Any]:
        return [self._decode(kind, key, text) for key, text in rows]

    def _values(self, kind: str) -> list[Any]:
        return self._rows(kind, self._run(self._values_sql, kind=kind).fetchall())

    def _group(self, kind: str, group: str) -> list[Any]:
        return self._rows(kind, self._run(self._group_sql, kind=kind, grp=group).fetchall())

    def _hosted(
        self,
        kind: str,
        host: str,
        indexes: Collection[str] | None = None,
        exclude: str | None = None,
    ) -> list[Any]:
        wanted = None if indexes is None else list(indexes)
        if wanted == []:
            return []
        params = {f"i{i}": value for i, value in enumerate(wanted or ())}
        if exclude is not None:
            params["exclude"] = exclude
        statement = self._hosted_sql(None if wanted is None else len(wanted), exclude is not None)
        rows = self._run(statement, kind=kind, host=host, **params).fetchall()
        return [self._decode(kind, key, text) for _, key, text in rows]

    def _outside(self, kind: str, low: str, high: str) -> list[Any]:
        assert kind in RANGED and kind == HOST, kind  # the one ordered index
        rows = self._run(self._outside_sql, low=low, high=high).fetchall()
        return [self._decode(kind, key, text) for _, key, text in rows]

    # -- logs and counters ----------------------------------------------------------------

    def _append(self, kind: str, value: Any, group: str | None = None) -> None:
        with self._write():
            self._run(self._append_sql, kind=kind, grp=group, data=self._codec.dump(value))

    def _log(self, kind: str, group: str | None = None) -> list[Any]:
        if group is None:
            rows = self._run(self._log_sql, kind=kind).fetchall()
        else:
            rows = self._run(self._log_group_sql, kind=kind, grp=group).fetchall()
        return [self._codec.load(kind, text) for (text,) in rows]

    def _log_after(self, kind: str, seq: int, limit: int | None) -> list[tuple[int, Any]]:
        if limit is None:
            rows = self._run(self._after_sql, kind=kind, seq=seq).fetchall()
        else:
            rows = self._run(self._after_limit_sql, kind=kind, seq=seq, limit=limit).fetchall()
        return [(int(n), self._codec.load(kind, text)) for n, text in rows]

    def _counter(self, name: str) -> int:
        row = self._run(self._counter_sql, name=name).fetchone()
        return 0 if row is None else int(row[0])

    def _swap_counter(self, name: str, expected: int, value: int) -> bool:
        with self._batch():
            if self._run(
                self._swap_counter_sql, name=name, expected=expected, value=value
            ).rowcount:
                return True
            if expected != 0:
                return False
            return bool(self._run(self._new_counter_sql, name=name, value=value).rowcount)

    def next_id(self, counter: str) -> int:
        with self._batch():
            return int(self._run(self._next_id_sql, name=counter).fetchone()[0])

    # -- placement ------------------------------------------------------------------------

    def put_host(self, host: Host) -> None:
        with self._batch():
            super().put_host(host)
            # The usage row exists from the start: a claim's compare-and-swap updates it.
            self._run(self._host_new_sql, host=host.name)

    def allocations(self, consumer: str) -> dict[str, Resources]:
        rows = self._run(self._allocations_sql, consumer=consumer).fetchall()
        return {host: Resources(v, r, d) for host, v, r, d in rows}

    def set_allocations(
        self,
        consumer: str,
        per_host: Mapping[str, Resources],
        *,
        generations: Mapping[str, int] | None = None,
    ) -> None:
        checked = generations or {}
        # With generations the writes must all happen or none: a savepoint.
        with self._atomic() if checked else self._batch():
            old = self.allocations(consumer)
            new = dict(per_host)
            total = [0, 0, 0]
            for host in sorted(old.keys() | new.keys() | checked.keys()):
                before, after = old.get(host), new.get(host)
                if before == after and host not in checked:
                    continue
                v, r, d = _delta(before, after)
                total[0] += v
                total[1] += r
                total[2] += d
                self._move_host(host, (v, r, d), checked.get(host))
                if before is None and after is not None:
                    self._run(self._alloc_insert_sql, consumer=consumer, host=host, **_cols(after))
                elif after is None and before is not None:
                    self._run(self._alloc_delete_sql, consumer=consumer, host=host)
                elif after is not None and before != after:
                    self._run(self._alloc_update_sql, consumer=consumer, host=host, **_cols(after))
            if total != [0, 0, 0]:
                owner = self._owner(consumer)
                if owner is not None:
                    self._add_project(owner, (total[0], total[1], total[2]))

    def _move_host(self, host: str, delta: tuple[int, int, int], expected: int | None) -> None:
        """Add ``delta`` to ``host``'s usage and increment its generation (only from
        ``expected`` when given)."""
        v, r, d = delta
        if expected is None:
            self._run(self._host_add_sql, host=host, vcpus=v, ram_mb=r, disk_gb=d)
            return
        swapped = self._run(
            self._host_swap_sql, host=host, generation=expected, vcpus=v, ram_mb=r, disk_gb=d
        ).rowcount
        if swapped:
            return
        actual = self.host_usage(host).generation
        if actual == expected == 0:  # no row yet: the first allocation on this host
            self._run(self._host_new_sql, host=host)
            self._move_host(host, delta, 0)
            return
        raise GenerationConflict(host, expected, actual)

    def _add_project(self, project: str, delta: tuple[int, int, int]) -> None:
        v, r, d = delta
        self._run(self._project_add_sql, project=project, vcpus=v, ram_mb=r, disk_gb=d)

    def _owner(self, consumer: str) -> str | None:
        found = self._owners.get(consumer)
        if found is None:
            row = self._run(self._owner_sql, consumer=consumer).fetchone()
            if row is not None:
                found = self._owners[consumer] = str(row[0])
        return found

    def _own(self, consumer: str, project: str | None = None, like: str | None = None) -> None:
        owner = project if like is None else self._owner(like)
        if owner is None:
            return
        with self._batch():
            if not self._run(self._own_sql, consumer=consumer, project=owner).rowcount:
                return  # it had an owner already
            self._owners[consumer] = owner
            held = self.allocations(consumer)
            if held:
                self._add_project(owner, _delta(None, _sum(held.values())))

    def host_usage(self, host: str) -> HostUsage:
        row = self._run(self._host_usage_sql, host=host).fetchone()
        if row is None:
            return HostUsage(Resources(), 0)
        return HostUsage(Resources(row[0], row[1], row[2]), int(row[3]))

    def usage(self, host: str) -> Resources:
        return self.host_usage(host).used

    def project_usage(self, project_id: str) -> Resources:
        row = self._run(self._project_usage_sql, project=project_id).fetchone()
        return Resources() if row is None else Resources(*row)

    def all_allocations(self) -> list[Allocation]:
        rows = self._run(self._all_allocations_sql).fetchall()
        return [Allocation(c, h, Resources(v, r, d)) for c, h, v, r, d in rows]

    # -- the message queue ----------------------------------------------------------------

    def push_message(self, message: Message) -> None:
        with self._write():
            self._run(
                self._push_sql,
                destination=message.destination,
                instance_uuid=message.instance_uuid,
                data=self._codec.dump_message(message),
            )

    def pop_message(self) -> Message | None:
        return self.take_message()

    def take_message(
        self, held: Collection[str] = (), *, destinations: Collection[str] | None = None
    ) -> Message | None:
        query = _queue_query(held, destinations)
        if query is None:
            return None
        held_count, wanted_count, params = query
        statement = self._take_sql(held_count, wanted_count)
        # One statement: taking a message is atomic without a transaction of its own.
        row = self._run(statement, **params).fetchone()
        return None if row is None else self._codec.load_message(row[0])

    def _peek_message(
        self, held: Collection[str], destinations: Collection[str] | None
    ) -> tuple[Any, Message] | None:
        query = _queue_query(held, destinations)
        if query is None:
            return None
        held_count, wanted_count, params = query
        statement = self._peek_sql(held_count, wanted_count)
        row = self._run(statement, **params).fetchone()
        return None if row is None else (int(row[0]), self._codec.load_message(row[1]))

    def _remove_message(self, ref: Any) -> None:
        with self._write():
            removed = self._run(self._remove_sql, seq=ref).rowcount
        if not removed:
            raise MessageTaken(f"message {ref} is no longer queued")

    def pending_messages(self, instance_uuid: str | None = None) -> list[Message]:
        if instance_uuid is None:
            rows = self._run(self._pending_sql).fetchall()
        else:
            rows = self._run(self._pending_of_sql, uuid=instance_uuid).fetchall()
        return [self._codec.load_message(text) for (text,) in rows]


def _cols(resources: Resources) -> dict[str, int]:
    return {"vcpus": resources.vcpus, "ram_mb": resources.ram_mb, "disk_gb": resources.disk_gb}


def _sum(values: Collection[Resources]) -> Resources:
    total = Resources()
    for value in values:
        total += value
    return total


def _delta(before: Resources | None, after: Resources | None) -> tuple[int, int, int]:
    b = _ZERO if before is None else (before.vcpus, before.ram_mb, before.disk_gb)
    a = _ZERO if after is None else (after.vcpus, after.ram_mb, after.disk_gb)
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])
