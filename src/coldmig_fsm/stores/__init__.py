"""Stores: the ports through which roles keep records, messages, claims and logs.

:class:`Store` (in :mod:`coldmig_fsm.stores.base`) is the port and states the contract;
:class:`MemoryStore`, :class:`SqlStore` (SQLAlchemy Core: SQLite, PostgreSQL) and
:class:`SqliteStore` (a file) are its backends. ``coldmig_fsm.testing.check_store`` is
the contract as a suite to run on any backend. See ``docs/stores.md``.
"""

from coldmig_fsm.stores.base import GenerationConflict, HostUsage, Store
from coldmig_fsm.stores.memory import MemoryStore
from coldmig_fsm.stores.sql import ForeignDatabaseError, SchemaVersionError, SqlStore
from coldmig_fsm.stores.sqlite import SqliteStore

__all__ = [
    "ForeignDatabaseError",
    "GenerationConflict",
    "HostUsage",
    "MemoryStore",
    "SchemaVersionError",
    "SqlStore",
    "SqliteStore",
    "Store",
]
