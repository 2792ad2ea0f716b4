"""coldmig_fsm.roles.claims: reading what is left on a host, and claiming it."""

from __future__ import annotations

import pytest

from coldmig_fsm.records import Host, Resources
from coldmig_fsm.roles import claims
from coldmig_fsm.stores.base import GenerationConflict
from coldmig_fsm.stores.memory import MemoryStore
from tests.conftest import ContendedStore

HOST = Host("host-a", 4, 2048, 20)
SMALL = Resources(2, 1024, 10)


def test_an_empty_host_has_its_whole_capacity_left() -> None:
    store = MemoryStore()
    assert claims.free(store, HOST) == Resources(4, 2048, 20)
    assert claims.fits(store, HOST, Resources(4, 2048, 20))
    assert not claims.fits(store, HOST, Resources(5, 2048, 20))


def test_what_is_left_after_a_claim_fits_exactly() -> None:
    store = MemoryStore()
    assert claims.try_claim(store, HOST, "vm1", SMALL)
    assert claims.free(store, HOST) == Resources(2, 1024, 10)
    assert claims.fits(store, HOST, SMALL)
    assert not claims.fits(store, HOST, Resources(2, 1025, 10))
    assert claims.try_claim(store, HOST, "vm2", SMALL)
    assert claims.free(store, HOST) == Resources(0, 0, 0)
    assert claims.fits(store, HOST, Resources())
    assert not claims.try_claim(store, HOST, "vm3", Resources(1, 0, 0))
    assert store.allocations("vm3") == {}


def test_an_over_committed_host_has_nothing_left_and_fits_nothing() -> None:
    store = MemoryStore()
    claims.claim(store, "vm1", HOST.name, Resources(8, 512, 1))  # more vCPUs than it has
    assert claims.free(store, HOST) is None
    assert not claims.fits(store, HOST, Resources())
    assert not claims.try_claim(store, HOST, "vm2", Resources())


def test_a_claim_overtaken_fifteen_times_in_a_row_still_lands() -> None:
    store = ContendedStore(HOST.name, 15)
    assert claims.try_claim(store, HOST, "vm1", SMALL)
    assert store.tries == 16
    assert store.allocations("vm1") == {HOST.name: SMALL}
    # Each retry read the usage again: the others' fifteen megabytes are counted.
    assert claims.free(store, HOST) == Resources(2, 1024 - 15, 10)


def test_the_sixteenth_conflict_in_a_row_is_raised_and_nothing_is_claimed() -> None:
    assert claims.MAX_CONFLICTS == 16
    store = ContendedStore(HOST.name, 16)
    generation = store.host_usage(HOST.name).generation
    with pytest.raises(GenerationConflict) as caught:
        claims.try_claim(store, HOST, "vm1", SMALL)
    assert type(caught.value) is GenerationConflict
    assert (caught.value.host, caught.value.expected, caught.value.actual) == (
        HOST.name,
        generation + 15,
        generation + 16,
    )
    assert store.tries == 16
    assert store.allocations("vm1") == {}
    assert claims.free(store, HOST) == Resources(4, 2048 - 16, 20)
