"""Resource claims (Nova's placement allocations), kept exact.

A *consumer* is an instance uuid or a migration uuid. While a move is under way or the
instance is ``resized``, the migration holds the source side (old flavor) and the instance
the destination side (new flavor); otherwise the instance holds its flavor on its host.

Invariant kept by every function here: a consumer holds at most one allocation per host,
and nothing is claimed or released twice (doing so raises ``ClaimError``, a bug).

Checking that a claim fits and making it are one step in :func:`try_claim`: the host's
usage is read with its generation and the claim written with a compare-and-swap on it
(:meth:`~coldmig_fsm.stores.base.Store.set_allocations` ``generations=``), so that two
schedulers or conductors in different processes can never both take the last room on a
host: the second one's write finds the generation moved, reads again, and finds no room.
"""

from __future__ import annotations

from coldmig_fsm.records import Host, Resources
from coldmig_fsm.stores.base import GenerationConflict, Store

__all__ = [
    "ClaimError",
    "back_on_source",
    "claim",
    "fits",
    "free",
    "move_allocations",
    "release",
    "try_claim",
]

MAX_CONFLICTS = 16
"""How many generation conflicts in a row :func:`try_claim` takes before giving up."""


class ClaimError(RuntimeError):
    """A claim would be counted twice, or released when it is not held (a bug)."""


def free(store: Store, host: Host) -> Resources | None:
    """What is left on ``host``; ``None`` when something is over-committed."""
    return _left(host, store.usage(host.name))


def fits(store: Store, host: Host, wanted: Resources) -> bool:
    """True when ``wanted`` fits in what ``host`` has left (a reading: to claim what
    fits, use :func:`try_claim`, which cannot be overtaken between the two)."""
    left = free(store, host)
    return left is not None and wanted.fits_within(left)


def _left(host: Host, used: Resources) -> Resources | None:
    if not used.fits_within(host.capacity):
        return None
    return Resources(
        host.vcpus - used.vcpus, host.ram_mb - used.ram_mb, host.disk_gb - used.disk_gb
    )


def try_claim(store: Store, host: Host, consumer: str, resources: Resources) -> bool:
    """Claim ``resources`` on ``host`` for ``consumer`` if they fit; False if they do not.

    The fit is checked against the host's usage as of its generation, and the claim is
    written only if that generation is still current (a compare-and-swap); when another
    writer got there first, the usage is read again and the fit checked again. Call it
    inside the caller's atomic block to make the claim part of the step.

    Raises:
        ClaimError: ``consumer`` already holds a claim on ``host`` (a bug).
        GenerationConflict: the host changed under :data:`MAX_CONFLICTS` attempts in a
            row (a storm of writers: the caller may retry later).
    """
    conflict: GenerationConflict | None = None
    for _ in range(MAX_CONFLICTS):
        seen = store.host_usage(host.name)
        left = _left(host, seen.used)
        if left is None or not resources.fits_within(left):
            return False
        held = store.allocations(consumer)
        if host.name in held:
            raise ClaimError(f"{consumer} already holds a claim on {host.name}")
        held[host.name] = resources
        try:
            store.set_allocations(consumer, held, generations={host.name: seen.generation})
        except GenerationConflict as error:
            conflict = error
            continue
        return True
    assert conflict is not None
    raise conflict


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
