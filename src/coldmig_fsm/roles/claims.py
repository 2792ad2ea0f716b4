"""Resource claims (Nova's placement allocations), kept exact.

A *consumer* is an instance uuid or a migration uuid. While a move is under way or the
instance is ``resized``, the migration holds the source side (old flavor) and the instance
the destination side (new flavor); otherwise the instance holds its flavor on its host.

Invariant kept by every function here: a consumer holds at most one allocation per host,
and nothing is claimed or released twice (doing so raises ``ClaimError``, a bug).
"""

from __future__ import annotations

from coldmig_fsm.records import Host, Resources
from coldmig_fsm.stores.memory import Store

__all__ = [
    "ClaimError",
    "back_on_source",
    "claim",
    "fits",
    "free",
    "move_allocations",
    "release",
]


class ClaimError(RuntimeError):
    """A claim would be counted twice, or released when it is not held (a bug)."""


def free(store: Store, host: Host) -> Resources | None:
    """What is left on ``host``; ``None`` when something is over-committed."""
    used = store.usage(host.name)
    if not used.fits_within(host.capacity):
        return None
    return Resources(
        host.vcpus - used.vcpus, host.ram_mb - used.ram_mb, host.disk_gb - used.disk_gb
    )


def fits(store: Store, host: Host, wanted: Resources) -> bool:
    """True when ``wanted`` fits in what ``host`` has left."""
    left = free(store, host)
    return left is not None and wanted.fits_within(left)


def claim(store: Store, consumer: str, host: str, resources: Resources) -> None:
    """``consumer`` now also holds ``resources`` on ``host``."""
    held = store.allocations(consumer)
    if host in held:
        raise ClaimError(f"{consumer} already holds a claim on {host}")
    held[host] = resources
    store.set_allocations(consumer, held)


def release(store: Store, consumer: str, host: str | None = None) -> None:
    """Drop what ``consumer`` holds on ``host`` (on every host when ``host`` is None)."""
    held = store.allocations(consumer)
    if host is None:
        store.set_allocations(consumer, {})
        return
    if host not in held:
        raise ClaimError(f"{consumer} holds no claim on {host}")
    del held[host]
    store.set_allocations(consumer, held)


def move_allocations(store: Store, source: str, target: str) -> None:
    """Hand everything ``source`` holds over to ``target`` (Nova's ``move_allocations``)."""
    moving = store.allocations(source)
    held = store.allocations(target)
    clash = set(moving) & set(held)
    if clash:
        raise ClaimError(f"{target} already holds claims on {', '.join(sorted(clash))}")
    held.update(moving)
    store.set_allocations(target, held)
    store.set_allocations(source, {})


def back_on_source(store: Store, instance: str, migration: str) -> None:
    """A move undone: drop the instance's destination claim (if prep made one) and give
    the source side, held by the migration, back to the instance."""
    release(store, instance)
    move_allocations(store, migration, instance)
