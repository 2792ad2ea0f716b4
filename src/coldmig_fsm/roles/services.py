"""The compute services' own records: capabilities and liveness, in the host records.

A Nova compute service writes its service record when it starts and then every
``report_interval`` seconds (its heartbeat, ``last_seen_up``); the servicegroup API calls
a service up when it is not forced down and its last heartbeat is at most
``service_down_time`` seconds old (``nova.servicegroup.drivers.db.DbDriver.is_up``). The
resource tracker reports the driver's capabilities (as traits of the compute node). Here
all of it is in the host's :class:`~coldmig_fsm.records.Host` record, so that the
conductor and the scheduler read the store and never a driver object, and so that every
process that shares the store sees the same liveness:

- ``up``: ``False`` once the service is known to be stopped (a crash the runner saw, or an
  operator's mark, like Nova's ``forced_down``). A heartbeat never clears it, nor does a
  registration: only a restart does (:func:`mark_up`), so a host marked down stays down
  whatever its last heartbeat says.
- ``heartbeat_at``: the last heartbeat. ``None`` means the service never reported one (a
  host record written by hand, a scenario file, a store filled before its services
  started): such a service counts as up, since nothing says it stopped and a heartbeat
  that was never sent cannot go stale. (Nova counts from the service record's creation
  instead; a host record here has no creation time.)
- ``supports_migrate_to_same_host``: the one driver capability the conductor needs,
  written by :func:`register_service`.

:func:`is_up` is a pure predicate; the other functions read and write one host record in
one atomic block (a read-modify-write that a concurrent writer cannot interleave with).
A write for a host that has no record does nothing and returns ``None``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from coldmig_fsm.drivers.base import DriverCapabilities
from coldmig_fsm.records import Host, replace
from coldmig_fsm.roles.runtime import Runtime

__all__ = [
    "down_hosts",
    "heartbeat",
    "host_is_up",
    "is_up",
    "mark_down",
    "mark_up",
    "register_service",
]


def is_up(host: Host, now: dt.datetime, service_down_time: float) -> bool:
    """Whether ``host``'s compute service counts as up at ``now``.

    Up when it is not marked down and its last heartbeat, if it ever sent one, is at most
    ``service_down_time`` seconds away from ``now``. As in Nova the distance is absolute:
    a heartbeat from the future (another process's clock ahead of this one) counts, up to
    the same bound.
    """
    if not host.up:
        return False
    if host.heartbeat_at is None:
        return True
    return abs((now - host.heartbeat_at).total_seconds()) <= service_down_time


def host_is_up(runtime: Runtime, host_name: str) -> bool:
    """Whether the compute service of ``host_name`` is up now (``False``: no record)."""
    found = runtime.store.get_host(host_name)
    return found is not None and is_up(found, runtime.clock.now(), runtime.config.service_down_time)


def down_hosts(runtime: Runtime) -> set[str]:
    """Names of the hosts whose compute service is not up now (:func:`is_up` false).

    A lookup by the store's liveness index (:meth:`~coldmig_fsm.stores.base.Store.
    down_hosts`), not a read of every host record: its cost grows with the hosts that
    are down, so that a runner can ask before every delivery whatever the cloud's size.
    """
    now, limit = runtime.clock.now(), runtime.config.service_down_time
    return {h.name for h in runtime.store.down_hosts(now, limit)}


def register_service(
    runtime: Runtime, host_name: str, capabilities: DriverCapabilities
) -> Host | None:
    """What a compute service does when it starts: record its driver's capabilities and
    a first heartbeat in its host record.

    A down mark stays (see :func:`mark_up`). Returns the record as saved.
    """
    return _update(
        runtime,
        host_name,
        lambda host: replace(
            host,
            heartbeat_at=runtime.clock.now(),
            supports_migrate_to_same_host=capabilities.supports_migrate_to_same_host,
        ),
    )


def heartbeat(runtime: Runtime, host_name: str) -> Host | None:
    """A running service's periodic report: its heartbeat is now. A down mark stays."""
    now = runtime.clock.now()
    return _update(runtime, host_name, lambda host: replace(host, heartbeat_at=now))


def mark_down(runtime: Runtime, host_name: str) -> Host | None:
    """Mark the service of ``host_name`` stopped (its process crashed, or an operator
    says so): down whatever its heartbeat, until :func:`mark_up`."""
    return _update(runtime, host_name, lambda host: replace(host, up=False))


def mark_up(runtime: Runtime, host_name: str) -> Host | None:
    """Clear the down mark of ``host_name``: its service was started again. Whether it
    counts as up then depends on its heartbeat too (a restart also registers)."""
    return _update(runtime, host_name, lambda host: replace(host, up=True))


def _update(runtime: Runtime, host_name: str, change: Callable[[Host], Host]) -> Host | None:
    store = runtime.store
    with store.atomic():
        found = store.get_host(host_name)
        if found is None:
            return None
        changed = change(found)
        if changed != found:
            store.put_host(changed)
        return changed
