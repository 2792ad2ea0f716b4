"""The scheduler: which hosts can take an instance, best first, as Nova 34 picks them.

Nova schedules in two stages, and so does this module:

1. **Placement** offers the hosts whose compute service is *enabled* (a disabled service's
   resource provider carries ``COMPUTE_STATUS_DISABLED``, which a mandatory pre-filter
   forbids), that are the requested host when one is given, and whose inventory minus
   every allocation on them (instances, and migrations holding the source side of a move
   or of a ``resized`` instance) fits the requested flavor. When placement offers nothing,
   the request fails before the filter scheduler runs, so Nova sends no
   ``scheduler.select_destinations.start`` notification.
2. **Filters then weighers.** The filters drop a host whose compute service is down
   (``ComputeFilter``: marked down, or no heartbeat for more than ``service_down_time``
   seconds, as :func:`coldmig_fsm.roles.services.is_up` decides) and the ignored hosts
   (the source, unless the move may stay on it). The remaining hosts are weighed by
   Nova's default weighers. Each weigher measures every host, clamps the values at its
   minimum and normalises them to ``value / max`` (Nova's RAM, CPU, disk and I/O weighers
   declare a minimum of 0, so the normalisation is not ``(value - min) / (max - min)``;
   when every value is equal they all count 0), multiplies by its multiplier and adds the
   result to the host's weight. With one host left nothing is weighed. The highest weight
   wins; the rest are the alternates, in order.

The weighers that can tell hosts apart in this workflow, with Nova's default multipliers:
``RAMWeigher`` (1.0, the host's free RAM), ``CPUWeigher`` (1.0, free vCPUs) and
``DiskWeigher`` (1.0, free disk: the smaller of what the claims leave and what the
hypervisor reports as really free, Nova's ``disk_available_least``; Nova's fake driver
reports 0 there, so on a fake cloud the disk weigher weighs nothing). Free means the
inventory minus every claim, the claims of a ``resized`` instance on both of its hosts
included (the source under the migration, the dest under the instance), as Nova's
resource tracker counts them.

The other default weighers give every candidate the same value here, so they cannot
change the order: metrics, PCI, server-group affinity, build failures (multiplier 0 in
Nova's own tests), cross-cell, hypervisor version, number of instances (multiplier 0) and
image properties (0) have nothing to tell apart (no metrics, PCI devices, server groups,
cells or mixed versions). ``IoOpsWeigher`` (-1.0) reads the compute node's count of
instances in an I/O-heavy task state, which the resource tracker refreshes in its
periodic task (every 60 s) and not when a request changes a task_state; on a cloud whose
periodic tasks have caught up, which is what the scenarios model, no candidate has one
(the moving instance itself is counted only if the periodic task ran between the API
call and the scheduling, milliseconds apart). Several moves scheduled at once, under
several orchestrators, are where it could matter: not modelled yet (a known gap).

Exact ties: Nova orders tied hosts by the iteration order of a set of host names, which
depends on the process's string hash seed, so its choice among exact ties is arbitrary.
Here ties go to the host name, so the choice is deterministic.

Everything here is a pure function of :class:`HostState` values, except
:func:`host_state`, :func:`host_states` and :func:`select_destinations`, which read them
from a store (liveness at the time ``now`` they are given).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Final

import attrs

from coldmig_fsm.exceptions import NoValidHost
from coldmig_fsm.records import Host, Resources
from coldmig_fsm.roles.services import is_up
from coldmig_fsm.stores.memory import Store

__all__ = [
    "DEFAULT_WEIGHERS",
    "HostState",
    "Weigher",
    "filter_hosts",
    "host_state",
    "host_states",
    "placement_candidates",
    "rank_hosts",
    "select_destinations",
    "weigh_hosts",
]

NO_VALID_HOST: Final = "No valid host was found. There are not enough hosts available."


@attrs.frozen
class HostState:
    """What the scheduler knows about one host when it schedules a request.

    ``free`` is the host's inventory minus every claim on it (0 where the host is
    over-committed); ``disk_available_least_gb`` is the hypervisor's own report of
    free disk, ``None`` when it reports nothing.
    """

    host: str
    free: Resources
    disk_available_least_gb: int | None = None
    up: bool = True
    enabled: bool = True

    @property
    def free_disk_gb(self) -> int:
        """Free disk as Nova's ``HostState.free_disk_mb`` sees it (in GB)."""
        if self.disk_available_least_gb is None:
            return self.free.disk_gb
        return min(self.disk_available_least_gb, self.free.disk_gb)


@attrs.frozen
class Weigher:
    """One of Nova's host weighers: ``multiplier * normalised(measure(host))``.

    ``minval`` is the floor Nova's weigher declares (values below it are raised to it, and
    it is the low end of the normalisation); ``None`` normalises over the values' own
    minimum.
    """

    name: str
    multiplier: float
    measure: Callable[[HostState], float]
    minval: float | None = 0.0

    def weights(self, hosts: Sequence[HostState]) -> list[float]:
        """Each host's contribution, in the order given."""
        values = [float(self.measure(h)) for h in hosts]
        if self.minval is not None:
            values = [max(v, self.minval) for v in values]
        low = min(values) if self.minval is None else self.minval
        high = max(values)
        if high == low:
            return [0.0] * len(values)
        return [self.multiplier * (v - low) / (high - low) for v in values]


DEFAULT_WEIGHERS: Final[tuple[Weigher, ...]] = (
    Weigher("RAMWeigher", 1.0, lambda h: h.free.ram_mb),
    Weigher("CPUWeigher", 1.0, lambda h: h.free.vcpus),
    Weigher("DiskWeigher", 1.0, lambda h: h.free_disk_gb),
)
"""Nova 34's default weighers that can tell hosts apart here, with default multipliers."""


def placement_candidates(
    states: Iterable[HostState], wanted: Resources, *, target_host: str | None = None
) -> list[HostState]:
    """Stage 1, placement: enabled hosts (the target only, if given) where ``wanted`` fits."""
    return [
        s
        for s in states
        if s.enabled
        and (target_host is None or s.host == target_host)
        and wanted.fits_within(s.free)
    ]


def filter_hosts(
    candidates: Iterable[HostState], *, ignore_hosts: Collection[str] = ()
) -> list[HostState]:
    """Stage 2, filters: drop hosts whose service is down and the ignored hosts."""
    return [s for s in candidates if s.up and s.host not in ignore_hosts]


def weigh_hosts(
    hosts: Sequence[HostState], weighers: Sequence[Weigher] = DEFAULT_WEIGHERS
) -> list[tuple[str, float]]:
    """Stage 2, weighers: ``(host, weight)`` best first (ties by host name)."""
    totals = [0.0] * len(hosts)
    if len(hosts) > 1:
        for weigher in weighers:
            for index, weight in enumerate(weigher.weights(hosts)):
                totals[index] += weight
    ranked = sorted(zip((h.host for h in hosts), totals, strict=True), key=_best_first)
    return ranked


def _best_first(entry: tuple[str, float]) -> tuple[float, str]:
    return (-entry[1], entry[0])


def rank_hosts(
    states: Iterable[HostState],
    wanted: Resources,
    *,
    ignore_hosts: Collection[str] = (),
    target_host: str | None = None,
    weighers: Sequence[Weigher] = DEFAULT_WEIGHERS,
) -> list[str]:
    """Pure: the names of the hosts that can take ``wanted``, best first."""
    offered = placement_candidates(states, wanted, target_host=target_host)
    passed = filter_hosts(offered, ignore_hosts=ignore_hosts)
    return [name for name, _ in weigh_hosts(passed, weighers)]


def host_state(store: Store, host: Host, now: dt.datetime, service_down_time: float) -> HostState:
    """``host`` as the scheduler sees it at ``now`` (its service up or not: :func:`is_up`)."""
    used = store.usage(host.name)
    # An over-committed resource has nothing free (and weighs 0, Nova's floor).
    free = Resources(
        max(0, host.vcpus - used.vcpus),
        max(0, host.ram_mb - used.ram_mb),
        max(0, host.disk_gb - used.disk_gb),
    )
    up = is_up(host, now, service_down_time)
    return HostState(host.name, free, host.disk_available_least_gb, up, host.enabled)


def host_states(store: Store, now: dt.datetime, service_down_time: float) -> list[HostState]:
    """Every host of ``store`` as the scheduler sees it at ``now``."""
    return [host_state(store, h, now, service_down_time) for h in store.list_hosts()]


def select_destinations(
    store: Store,
    wanted: Resources,
    *,
    now: dt.datetime,
    service_down_time: float,
    ignore_hosts: Collection[str] = (),
    target_host: str | None = None,
    limit: int = 1,
    on_filtering: Callable[[], None] | None = None,
    weighers: Sequence[Weigher] = DEFAULT_WEIGHERS,
) -> list[str]:
    """Up to ``limit`` hosts that can take ``wanted``: the choice, then alternates.

    Args:
        now, service_down_time: a host's service is up when not marked down and its last
            heartbeat is at most ``service_down_time`` seconds from ``now`` (the
            runtime's clock and ``CloudConfig.service_down_time``).
        on_filtering: called once placement has offered candidates, before the filters
            run (where Nova sends ``scheduler.select_destinations.start``).

    Raises:
        NoValidHost: placement offers nothing, or no offered host passes the filters.
    """
    states = host_states(store, now, service_down_time)
    offered = placement_candidates(states, wanted, target_host=target_host)
    if not offered:
        raise NoValidHost(NO_VALID_HOST)
    if on_filtering is not None:
        on_filtering()
    passed = filter_hosts(offered, ignore_hosts=ignore_hosts)
    if not passed:
        raise NoValidHost(NO_VALID_HOST)
    return [name for name, _ in weigh_hosts(passed, weighers)][:limit]
