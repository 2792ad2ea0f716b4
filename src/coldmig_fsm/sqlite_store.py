"""A :class:`~coldmig_fsm.store.Store` in one SQLite file (standard library ``sqlite3``).

Records are stored as JSON (through ``cattrs``) next to the column the compare-and-swap
reads (``idx``: an instance's task_state, a migration's status), so a CAS is one
``UPDATE ... WHERE idx IN (...)``. The database runs in WAL mode with
``synchronous=NORMAL``: a committed step survives a killed process (the property the
crash-recovery work builds on), at a fraction of the cost of a full fsync per commit.

``sqlite3`` was chosen over SQLAlchemy here because a migrate+confirm cycle makes some
thirty small writes and the ORM's per-statement cost would dominate; the schema is four
tables and needs nothing an ORM adds.
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

from . import messages
from .records import (
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
from .store import (
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

__all__ = ["SqliteStore"]

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
        self._db.executescript(_SCHEMA)
        self._depth = 0
        self._cv = _converter()

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
            "SELECT COALESCE(SUM(vcpus), 0), COALESCE(SUM(ram_mb), 0), "
            "COALESCE(SUM(disk_gb), 0) FROM allocation WHERE host = ?",
            (host,),
        ).fetchone()
        return Resources(int(row[0]), int(row[1]), int(row[2]))

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
