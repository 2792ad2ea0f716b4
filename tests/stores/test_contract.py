"""check_store on every shipped backend: memory, an SQLite file, SQLite in memory."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from coldmig_fsm import MemoryStore, SqliteStore
from coldmig_fsm.stores.base import Store
from coldmig_fsm.testing import check_store
from coldmig_fsm.testing.store_check import CHECKS


def test_memory_store_keeps_the_contract() -> None:
    check_store(MemoryStore)


def test_sqlite_file_store_keeps_the_contract(tmp_path: Path) -> None:
    numbers = itertools.count()
    check_store(lambda: SqliteStore(tmp_path / f"store-{next(numbers)}.db"))


def test_sqlite_memory_store_keeps_the_contract() -> None:
    check_store(lambda: SqliteStore(":memory:"))


def test_a_broken_rule_is_named() -> None:
    class LosesTheConductor(MemoryStore):
        def take_message(self, held=(), *, destinations=None):  # type: ignore[no-untyped-def]
            return super().take_message(held)

    with pytest.raises(AssertionError, match=r"^queue: destinations=\[\"conductor\"\]"):
        check_store(LosesTheConductor)


def test_every_check_gets_a_fresh_store_and_closes_it() -> None:
    made: list[Store] = []
    closed: list[Store] = []

    class Counted(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

        def close(self) -> None:
            closed.append(self)

    check_store(Counted)
    assert len(made) == len(CHECKS) == len(set(map(id, made)))
    assert closed == made
