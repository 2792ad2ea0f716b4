"""Stores: the ports through which roles keep records, messages, claims and logs."""

from coldmig_fsm.stores.memory import MemoryStore, Store
from coldmig_fsm.stores.sqlite import SqliteStore

__all__ = ["MemoryStore", "SqliteStore", "Store"]
