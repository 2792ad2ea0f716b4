"""A :class:`~coldmig_fsm.stores.memory.Store` in one SQLite file (standard library ``sqlite3``).

Records are stored as JSON (through ``cattrs``) next to the column the compare-and-swap
reads (``idx``: an instance's task_state, a migration's status), so a CAS is one
``UPDATE ... WHERE idx IN (...)``. The database runs in WAL mode with
``synchronous=NORMAL``: a committed step survives a killed process (the property the
crash-recovery work builds on), at a fraction of the cost of a full fsync per commit.

``sqlite3`` was chosen over SQLAlchemy here because a migrate+confirm cycle makes some
thirty small writes and the ORM's per-statement cost would dominate; the schema is a few
tables and needs nothing an ORM adds.

Usage per host and per project are aggregate rows (``host_usage``, ``project_usage``)
kept by triggers on ``allocation``: every allocation change updates them in the same
statement, hence in the same transaction, and reading one is a primary-key lookup
whatever the size of the cloud. ``consumer`` says which project owns each consumer.

The schema has a version (``PRAGMA user_version``, :data:`SCHEMA_VERSION`). A file of
the first schema (version 0: no aggregates) is migrated when it is opened, the
aggregates computed from its allocations; a file of a newer version is refused with
:class:`SchemaVersionError`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import cattrs

from coldmig_fsm import messages
from coldmig_fsm.records import (
    Allocation,
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
from coldmig_fsm.stores.memory import (
    ACTION,
    FAULT,
    FLAVOR,
    HOST,
    INSTANCE,
    MIGRATION,
    NOTIFICATION,
    PROJECT,
    REQUEST,
    Store,
)

__all__ = ["SCHEMA_VERSION", "SchemaVersionError", "SqliteStore"]

SCHEMA_VERSION = 1
"""The schema this module writes: 0 had no usage aggregates, 1 added them."""


class SchemaVersionError(RuntimeError):
    """The database file was written by a newer coldmig_fsm (a schema this one lacks)."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS record (
    kind TEXT NOT NULL, key TEXT NOT NULL, idx TEXT NOT NULL DEFAULT '', grp TEXT,
    data TEXT NOT NULL, PRIMARY KEY (kind, key));
CREATE INDEX IF NOT EXISTS record_group ON record (kind, grp);
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS allocation (
    consumer TEXT NOT NULL, host TEXT NOT NULL,
    vcpus INTEGER NOT NULL, ram_mb INTEGER NOT NULL, disk_gb INTEGER NOT NULL,
    PRIMARY KEY (consumer, host));
CREATE INDEX IF NOT EXISTS allocation_host ON allocation (host);
CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, destination TEXT NOT NULL, data TEXT NOT NULL);
"""

# Version 1: the usage aggregates. The triggers keep them; nothing else writes them.
_AGGREGATES = """
CREATE TABLE IF NOT EXISTS consumer (consumer TEXT PRIMARY KEY, project TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS host_usage (
    host TEXT PRIMARY KEY,
    vcpus INTEGER NOT NULL, ram_mb INTEGER NOT NULL, disk_gb INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS project_usage (
    project TEXT PRIMARY KEY,
    vcpus INTEGER NOT NULL, ram_mb INTEGER NOT NULL, disk_gb INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS allocation_added AFTER INSERT ON allocation BEGIN
    INSERT INTO host_usage VALUES (NEW.host, NEW.vcpus, NEW.ram_mb, NEW.disk_gb)
        ON CONFLICT (host) DO UPDATE SET vcpus = vcpus + excluded.vcpus,
            ram_mb = ram_mb + excluded.ram_mb, disk_gb = disk_gb + excluded.disk_gb;
    INSERT INTO project_usage
        SELECT project, NEW.vcpus, NEW.ram_mb, NEW.disk_gb FROM consumer
        WHERE consumer = NEW.consumer
        ON CONFLICT (project) DO UPDATE SET vcpus = vcpus + excluded.vcpus,
            ram_mb = ram_mb + excluded.ram_mb, disk_gb = disk_gb + excluded.disk_gb;
END;
CREATE TRIGGER IF NOT EXISTS allocation_removed AFTER DELETE ON allocation BEGIN
    UPDATE host_usage SET vcpus = vcpus - OLD.vcpus, ram_mb = ram_mb - OLD.ram_mb,
        disk_gb = disk_gb - OLD.disk_gb WHERE host = OLD.host;
    UPDATE project_usage SET vcpus = vcpus - OLD.vcpus, ram_mb = ram_mb - OLD.ram_mb,
        disk_gb = disk_gb - OLD.disk_gb
        WHERE project = (SELECT project FROM consumer WHERE consumer = OLD.consumer);
END;
CREATE TRIGGER IF NOT EXISTS allocation_changed AFTER UPDATE ON allocation BEGIN
    UPDATE host_usage SET vcpus = vcpus - OLD.vcpus, ram_mb = ram_mb - OLD.ram_mb,
        disk_gb = disk_gb - OLD.disk_gb WHERE host = OLD.host;
    UPDATE project_usage SET vcpus = vcpus - OLD.vcpus, ram_mb = ram_mb - OLD.ram_mb,
        disk_gb = disk_gb - OLD.disk_gb
        WHERE project = (SELECT project FROM consumer WHERE consumer = OLD.consumer);
    INSERT INTO host_usage VALUES (NEW.host, NEW.vcpus, NEW.ram_mb, NEW.disk_gb)
        ON CONFLICT (host) DO UPDATE SET vcpus = vcpus + excluded.vcpus,
            ram_mb = ram_mb + excluded.ram_mb, disk_gb = disk_gb + excluded.disk_gb;
    INSERT INTO project_usage
        SELECT project, NEW.vcpus, NEW.ram_mb, NEW.disk_gb FROM consumer
        WHERE consumer = NEW.consumer
        ON CONFLICT (project) DO UPDATE SET vcpus = vcpus + excluded.vcpus,
            ram_mb = ram_mb + excluded.ram_mb, disk_gb = disk_gb + excluded.disk_gb;
END;
-- A consumer's allocations made before it had an owner start counting for the owner.
CREATE TRIGGER IF NOT EXISTS consumer_owned AFTER INSERT ON consumer BEGIN
    INSERT INTO project_usage
        SELECT NEW.project, SUM(vcpus), SUM(ram_mb), SUM(disk_gb) FROM allocation
        WHERE consumer = NEW.consumer GROUP BY consumer
        ON CONFLICT (project) DO UPDATE SET vcpus = vcpus + excluded.vcpus,
            ram_mb = ram_mb + excluded.ram_mb, disk_gb = disk_gb + excluded.disk_gb;
END;
"""

# From version 0: owners from the stored records, aggregates from the allocations.
_FROM_VERSION_0 = """
INSERT OR IGNORE INTO consumer (consumer, project)
    SELECT key, json_extract(data, '$.project_id') FROM record WHERE kind = 'instance';
INSERT OR IGNORE INTO consumer (consumer, project)
    SELECT json_extract(m.data, '$.uuid'), c.project
    FROM record AS m JOIN consumer AS c
        ON c.consumer = json_extract(m.data, '$.instance_uuid')
    WHERE m.kind = 'migration';
DELETE FROM host_usage;
DELETE FROM project_usage;
INSERT INTO host_usage
    SELECT host, SUM(vcpus), SUM(ram_mb), SUM(disk_gb) FROM allocation GROUP BY host;
INSERT INTO project_usage
    SELECT c.project, SUM(a.vcpus), SUM(a.ram_mb), SUM(a.disk_gb)
    FROM allocation AS a JOIN consumer AS c ON c.consumer = a.consumer GROUP BY c.project;
"""

_TYPES: dict[str, type[Any]] = {
    HOST: Host,
    FLAVOR: Flavor,
    PROJECT: Project,
    INSTANCE: Instance,
    MIGRATION: Migration,
    ACTION: InstanceAction,
    REQUEST: RequestRecord,
    NOTIFICATION: Notification,
    FAULT: Fault,
}


def _converter() -> cattrs.Converter:
    converter = cattrs.Converter()
    converter.register_unstructure_hook(dt.datetime, lambda d: d.isoformat())
    converter.register_structure_hook(dt.datetime, lambda v, _: dt.datetime.fromisoformat(v))
    return converter


class SqliteStore(Store):
    """A store in the SQLite file ``path`` (created with its schema when missing).

    One connection, used from one thread at a time (``check_same_thread`` is off so a
    store may be handed to another thread; serialise access yourself). Every write outside
    :meth:`atomic` commits at once.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._depth = 0
        self._cv = _converter()
        try:
            self._open_schema()
        except BaseException:
            self._db.close()
            raise

    def _open_schema(self) -> None:
        """Create the schema, or migrate an older one (see the module's docstring).

        Raises:
            SchemaVersionError: the file's schema is newer than :data:`SCHEMA_VERSION`.
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{self.path}: database schema version {version} is newer than this "
                    f"coldmig_fsm's ({SCHEMA_VERSION}); use the newer coldmig_fsm, or a "
                    "new file"
                )
            old = version == 0 and self._has_table("record")
            for statement in _statements(_SCHEMA + _AGGREGATES):
                self._db.execute(statement)
            if old:
                for statement in _statements(_FROM_VERSION_0):
                    self._db.execute(statement)
            if version != SCHEMA_VERSION:
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _has_table(self, name: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return row is not None

    def close(self) -> None:
        self._db.close()

    # -- transactions ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _atomic(self) -> Iterator[None]:
        outer = self._depth == 0
        if outer:
            self._db.execute("BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if outer:
                self._db.execute("ROLLBACK")
            raise
        self._depth -= 1
        if outer:
            self._db.execute("COMMIT")

    def atomic(self) -> contextlib.AbstractContextManager[None]:
        return self._atomic()

    # -- (de)serialisation ----------------------------------------------------------------

    def _dump(self, value: Any) -> str:
        return json.dumps(self._cv.unstructure(value), separators=(",", ":"))

    def _load(self, kind: str, text: str) -> Any:
        return self._cv.structure(json.loads(text), _TYPES[kind])

    # -- primitives -----------------------------------------------------------------------

    def _get(self, kind: str, key: str) -> Any | None:
        row = self._db.execute(
            "SELECT data FROM record WHERE kind = ? AND key = ?", (kind, key)
        ).fetchone()
        return None if row is None else self._load(kind, row[0])

    def _put(
        self, kind: str, key: str, value: Any, index: str = "", group: str | None = None
    ) -> None:
        self._db.execute(
            "INSERT INTO record (kind, key, idx, grp, data) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (kind, key) DO UPDATE SET idx = excluded.idx, data = excluded.data",
            (kind, key, index, group, self._dump(value)),
        )

    def _group(self, kind: str, group: str) -> list[Any]:
        rows = self._db.execute(
            "SELECT data FROM record WHERE kind = ? AND grp = ? ORDER BY rowid", (kind, group)
        ).fetchall()
        return [self._load(kind, data) for (data,) in rows]

    def _swap(
        self, kind: str, key: str, value: Any, index: str, expected: Collection[str]
    ) -> str | None:
        wanted = list(expected)
        marks = ", ".join("?" for _ in wanted)
        # One UPDATE is the whole compare-and-swap; the SELECT only explains a refusal.
        cursor = self._db.execute(
            f"UPDATE record SET idx = ?, data = ? WHERE kind = ? AND key = ? AND idx IN ({marks})",
            (index, self._dump(value), kind, key, *wanted),
        )
        if cursor.rowcount == 1:
            return None
        row = self._db.execute(
            "SELECT idx FROM record WHERE kind = ? AND key = ?", (kind, key)
        ).fetchone()
        if row is None:
            raise KeyError(key)
        return str(row[0])

    def _values(self, kind: str) -> list[Any]:
        rows = self._db.execute(
            "SELECT data FROM record WHERE kind = ? ORDER BY rowid", (kind,)
        ).fetchall()
        return [self._load(kind, data) for (data,) in rows]

    def _append(self, kind: str, value: Any) -> None:
        self._db.execute("INSERT INTO log (kind, data) VALUES (?, ?)", (kind, self._dump(value)))

    def _log(self, kind: str) -> list[Any]:
        rows = self._db.execute(
            "SELECT data FROM log WHERE kind = ? ORDER BY seq", (kind,)
        ).fetchall()
        return [self._load(kind, data) for (data,) in rows]

    def next_id(self, counter: str) -> int:
        row = self._db.execute(
            "INSERT INTO counter (name, value) VALUES (?, 1) "
            "ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
            (counter,),
        ).fetchone()
        return int(row[0])

    def allocations(self, consumer: str) -> dict[str, Resources]:
        rows = self._db.execute(
            "SELECT host, vcpus, ram_mb, disk_gb FROM allocation WHERE consumer = ?",
            (consumer,),
        ).fetchall()
        return {host: Resources(v, r, d) for host, v, r, d in rows}

    def set_allocations(self, consumer: str, per_host: Mapping[str, Resources]) -> None:
        with self._atomic():
            self._db.execute("DELETE FROM allocation WHERE consumer = ?", (consumer,))
            self._db.executemany(
                "INSERT INTO allocation VALUES (?, ?, ?, ?, ?)",
                [(consumer, host, r.vcpus, r.ram_mb, r.disk_gb) for host, r in per_host.items()],
            )

    def usage(self, host: str) -> Resources:
        row = self._db.execute(
            "SELECT vcpus, ram_mb, disk_gb FROM host_usage WHERE host = ?", (host,)
        ).fetchone()
        return Resources() if row is None else Resources(*row)

    def project_usage(self, project_id: str) -> Resources:
        row = self._db.execute(
            "SELECT vcpus, ram_mb, disk_gb FROM project_usage WHERE project = ?",
            (project_id,),
        ).fetchone()
        return Resources() if row is None else Resources(*row)

    def _own(self, consumer: str, project: str | None = None, like: str | None = None) -> None:
        if like is None:
            if project is None:
                return
            self._db.execute(
                "INSERT OR IGNORE INTO consumer (consumer, project) VALUES (?, ?)",
                (consumer, project),
            )
        else:
            self._db.execute(
                "INSERT OR IGNORE INTO consumer (consumer, project) "
                "SELECT ?, project FROM consumer WHERE consumer = ?",
                (consumer, like),
            )

    def all_allocations(self) -> list[Allocation]:
        rows = self._db.execute(
            "SELECT consumer, host, vcpus, ram_mb, disk_gb FROM allocation ORDER BY rowid"
        ).fetchall()
        return [Allocation(c, h, Resources(v, r, d)) for c, h, v, r, d in rows]

    def push_message(self, message: messages.Message) -> None:
        self._db.execute(
            "INSERT INTO queue (destination, data) VALUES (?, ?)",
            (message.destination, json.dumps(messages.to_dict(message))),
        )

    def pop_message(self) -> messages.Message | None:
        return self.take_message()

    def take_message(self, held: Collection[str] = ()) -> messages.Message | None:
        waiting = list(held)
        marks = ", ".join("?" for _ in waiting)
        # One statement, so taking a message is atomic without a transaction of its own.
        row = self._db.execute(
            "DELETE FROM queue WHERE seq = (SELECT MIN(seq) FROM queue "
            f"WHERE destination NOT IN ({marks})) RETURNING data",
            waiting,
        ).fetchone()
        return None if row is None else messages.from_dict(json.loads(row[0]))

    def pending_messages(self) -> list[messages.Message]:
        rows = self._db.execute("SELECT data FROM queue ORDER BY seq").fetchall()
        return [messages.from_dict(json.loads(data)) for (data,) in rows]


def _statements(script: str) -> list[str]:
    """The statements of ``script`` (``executescript`` would commit the transaction)."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement: {pending.strip()[:60]}")
    return statements
