"""Settling: the state every run must be able to reach, and the way an operator gets there.

A cloud is *settled* when no request is pending and no instance has a task. The model
checker's liveness property is that from every reachable state some run without new
requests or faults reaches a settled state (``coldmig verify``); :func:`settle_all` is
the run an operator makes after faults (every compute service that is down restarts,
start-up recovery runs, every message is delivered, until nothing changes), which is
what the scenario step ``settle_all`` does and what a liveness counterexample written as
a scenario ends with.
"""

from __future__ import annotations

from typing import Final

from coldmig_fsm.records import Outcome
from coldmig_fsm.runners.cloud import Cloud

__all__ = ["SETTLE_ROUNDS", "settle_all", "settled", "unsettled"]

SETTLE_ROUNDS: Final = 20
"""How many rounds :func:`settle_all` makes at most (a round that changes nothing ends it
sooner; each round restarts, reconciles and delivers everything it can)."""


def settled(cloud: Cloud) -> bool:
    """No request pending, no instance with a task: what every run must be able to reach."""
    store = cloud.store
    return all(r.outcome is not Outcome.PENDING for r in store.list_requests()) and all(
        i.task_state is None for i in store.list_instances()
    )


def unsettled(cloud: Cloud) -> str:
    """What keeps ``cloud`` from being settled: its pending requests and busy instances."""
    store = cloud.store
    pending = [
        f"{r.action} ({r.request_id})"
        for r in store.list_requests()
        if r.outcome is Outcome.PENDING
    ]
    busy = [
        f"{i.describe()} {i.task_state.value}"
        for i in store.list_instances()
        if i.task_state is not None
    ]
    return f"pending {pending or 'nothing'}, busy {busy or 'nothing'}"


def _progress(cloud: Cloud) -> tuple[object, ...]:
    """What a round of :func:`settle_all` can change: the open requests, the instances'
    tasks, the queue and which services are down."""
    store = cloud.store
    return (
        tuple(r.request_id for r in store.list_requests() if r.outcome is Outcome.PENDING),
        tuple((i.uuid, i.task_state) for i in store.list_instances()),
        tuple(m.request_id for m in cloud.pending()),
        tuple(h for h in cloud.hosts if not cloud.is_up(h)),
    )


def settle_all(cloud: Cloud, rounds: int = SETTLE_ROUNDS) -> bool:
    """Bring ``cloud`` to rest without new requests or faults; return :func:`settled`.

    Each round restarts every compute service that is down
    (:meth:`~coldmig_fsm.Cloud.restart_compute`, which runs its start-up recovery), runs
    :meth:`~coldmig_fsm.Cloud.reconcile` (a lost message's request) and delivers every
    message (:meth:`~coldmig_fsm.Cloud.run`); the rounds stop when one changes nothing
    or after ``rounds``. The clock does not move (a ``resized`` instance waiting for its
    confirm is settled).
    """
    for _ in range(rounds):
        if settled(cloud):
            return True
        before = _progress(cloud)
        for host in cloud.hosts:
            if not cloud.is_up(host):
                cloud.restart_compute(host)
        cloud.reconcile()
        cloud.run()
        if _progress(cloud) == before:
            break
    return settled(cloud)
