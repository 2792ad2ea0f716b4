"""MemoryStore snapshots are copy-on-write: what a snapshot shares with the store and
with other snapshots is never written, whatever the store does after it."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coldmig_fsm.stores.memory import MemorySnapshot, MemoryStore
from coldmig_fsm.testing import store_check


def _frozen(value: Any) -> Any:
    """``value`` with every container turned into a tuple, in its order (dictionaries
    as their items): equal exactly when the contents are, shared or not."""
    if isinstance(value, dict):
        return ("dict", tuple((key, _frozen(item)) for key, item in value.items()))
    if isinstance(value, list | tuple | deque):
        return (type(value).__name__, tuple(_frozen(item) for item in value))
    return value


def _contents(store: MemoryStore) -> Any:
    """Every container of the store, as values."""
    return _frozen(store._copy_state())


def _written(store: MemoryStore, n: int, undone: bool) -> None:
    """One write of every kind the port has, then (``undone``) the same again in a
    block that raises: its undo journal writes every kind of container too."""
    store_check._write_everything(store, n)
    if undone:
        with store_check._rolled_back(store):
            store_check._write_everything(store, n + 100)


def _start() -> MemoryStore:
    store = MemoryStore()
    store_check._prepared(store)
    return store


def test_a_snapshot_keeps_its_moment_through_writes_of_every_kind() -> None:
    store = _start()
    first, at_first = store.snapshot(), _contents(store)
    _written(store, 2, undone=True)
    second, at_second = store.snapshot(), _contents(store)
    assert at_second != at_first
    _written(store, 3, undone=True)
    store.restore(first)
    assert _contents(store) == at_first
    _written(store, 4, undone=True)  # writes after a restore copy what the snapshot shares
    store.restore(second)
    assert _contents(store) == at_second
    store.restore(first)
    assert _contents(store) == at_first
    assert store_check._snapshot(store) == store_check._snapshot(_start())


def test_a_snapshot_taken_after_a_restore_is_its_own() -> None:
    store = _start()
    base = store.snapshot()
    _written(store, 2, undone=False)
    child, at_child = store.snapshot(), _contents(store)
    store.restore(base)
    _written(store, 3, undone=False)  # a sibling: writes what base and child share
    sibling, at_sibling = store.snapshot(), _contents(store)
    store.restore(child)
    assert _contents(store) == at_child
    store.restore(sibling)
    assert _contents(store) == at_sibling


def test_a_snapshot_restored_into_another_store_is_not_written_by_either() -> None:
    one = _start()
    saved, at_saved = one.snapshot(), _contents(one)
    other = MemoryStore()
    other.restore(saved)
    _written(other, 2, undone=True)
    _written(one, 3, undone=True)
    other.restore(saved)
    assert _contents(other) == at_saved
    one.restore(saved)
    assert _contents(one) == at_saved


def test_a_store_never_snapshotted_writes_in_place() -> None:
    store = _start()
    _written(store, 2, undone=True)
    assert store._owned == {}  # nothing to track until a snapshot shares containers


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["write", "undo", "snap", "back"]), st.integers(0, 9))))
def test_any_interleaving_of_writes_snapshots_and_restores(
    program: list[tuple[str, int]],
) -> None:
    store = _start()
    taken: list[tuple[MemorySnapshot, Any]] = [(store.snapshot(), _contents(store))]
    for n, (what, pick) in enumerate(program, start=2):
        if what in ("write", "undo"):
            _written(store, n, undone=what == "undo")
        elif what == "snap":
            taken.append((store.snapshot(), _contents(store)))
        else:
            snapshot, expected = taken[pick % len(taken)]
            store.restore(snapshot)
            assert _contents(store) == expected
    for snapshot, expected in taken:
        store.restore(snapshot)
        assert _contents(store) == expected


def test_restore_is_refused_inside_an_atomic_block() -> None:
    store = _start()
    saved = store.snapshot()
    with store.atomic(), pytest.raises(RuntimeError, match="outside atomic blocks"):
        store.restore(saved)
