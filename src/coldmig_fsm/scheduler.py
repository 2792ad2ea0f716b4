"""The scheduler: which hosts can take an instance, best first.

Filters (as Nova's defaults do for this workflow): the host's compute service is up and
enabled; it is not ignored (the source is ignored unless ``allow_resize_to_same_host``);
it is the requested host when one is given; its free vCPUs, RAM and disk (inventory minus
every claim on it) fit the flavor. Weighers: free RAM, free vCPUs and free disk, each
normalised to 0..1 over the candidates and summed (spreading, like Nova's default
multipliers of 1.0); ties go to the host name, so the choice is deterministic.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import attrs

from .claims import free
from .exceptions import NoValidHost
from .records import Host, Resources
from .store import Store

__all__ = ["Candidate", "rank_hosts", "select_destinations"]


@attrs.frozen
class Candidate:
    host: str
    free: Resources


def rank_hosts(candidates: Sequence[Candidate], wanted: Resources) -> list[str]:
    """Pure: the names of the candidates that fit ``wanted``, best first."""
    fitting = [c for c in candidates if wanted.fits_within(c.free)]
    if not fitting:
        return []
    weights: dict[str, float] = {c.host: 0.0 for c in fitting}
    for metric in ("ram_mb", "vcpus", "disk_gb"):
        values = {c.host: float(getattr(c.free, metric)) for c in fitting}
        low, high = min(values.values()), max(values.values())
        if high > low:
            for name, value in values.items():
                weights[name] += (value - low) / (high - low)
    return sorted(weights, key=lambda name: (-weights[name], name))


def select_destinations(
    store: Store,
    wanted: Resources,
    *,
    ignore_hosts: Collection[str] = (),
    target_host: str | None = None,
    limit: int = 1,
) -> list[str]:
    """Up to ``limit`` hosts that can take ``wanted``: the choice, then alternates.

    Raises:
        NoValidHost: no host passes the filters.
    """
    candidates = []
    for host in store.list_hosts():
        if not _usable(host, ignore_hosts, target_host):
            continue
        left = free(store, host)
        if left is not None:
            candidates.append(Candidate(host.name, left))
    ranked = rank_hosts(candidates, wanted)
    if not ranked:
        raise NoValidHost("No valid host was found. There are not enough hosts available.")
    return ranked[:limit]


def _usable(host: Host, ignore_hosts: Collection[str], target_host: str | None) -> bool:
    if not (host.up and host.enabled) or host.name in ignore_hosts:
        return False
    return target_host is None or host.name == target_host
