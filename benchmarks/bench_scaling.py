"""(f) Cost as the cloud grows: boot, migrate+confirm, ``usage()`` and one scheduling
decision at 100 to 100,000 instances over 20 and 200 hosts, in memory and on SQLite.

The instances a cloud already tracks are put into its store in bulk (:func:`populate`:
``add_instance`` and a claim for each, through the store's API, in one transaction; no
guest on the fake hosts, as nothing runs them). Then the cloud is used as a user does:
``cloud.boot`` of new instances, ``cloud.migrate(vm).wait()`` +
``cloud.confirm_resize(vm).wait()`` of a booted one, ``store.usage(host)``, and the
conductor's scheduling decision for a move (``Conductor.candidates``: what placement
offers, the filters and the weighers over every host).

Sizes: ``COLDMIG_SCALING_SIZES=100,1000`` (say) runs a shorter list, for development;
``--quick`` runs 100 and 1,000.
"""

from __future__ import annotations

import gc
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from coldmig_fsm import Cloud, Flavor, Host, Instance, SqliteStore
from coldmig_fsm.records import IMAGE_MIN_DISK
from coldmig_fsm.roles import claims
from coldmig_fsm.stores.memory import Store

from ._common import (
    BenchmarkError,
    Section,
    Settings,
    Table,
    Verdict,
    fmt_int,
    fmt_num,
    fmt_ratio,
)

__all__ = ["SIZES_ENV", "populate", "run", "sizes"]

SIZES_ENV = "COLDMIG_SCALING_SIZES"
FULL_SIZES = (100, 1_000, 10_000, 100_000)
QUICK_SIZES = (100, 1_000)
HOST_COUNTS = (20, 200)
FLAT_LIMIT = 1.5  # each figure at the largest N within this factor of its value at the smallest
TINY = Flavor("m1.tiny", 1, 512, 1)
PROBE_HOSTS = ("probe-a", "probe-b")  # where the booted instances live and move


def sizes(settings: Settings) -> tuple[int, ...]:
    """The instance counts of this run: ``$COLDMIG_SCALING_SIZES``, else by mode."""
    given = os.environ.get(SIZES_ENV, "").strip()
    if given:
        try:
            chosen = tuple(sorted({int(x.replace("_", "")) for x in given.split(",") if x}))
        except ValueError:
            raise BenchmarkError(f"{SIZES_ENV}={given!r}: not a list of integers") from None
        if not chosen or min(chosen) < 1:
            raise BenchmarkError(f"{SIZES_ENV}={given!r}: give positive instance counts")
        return chosen
    return QUICK_SIZES if settings.quick else FULL_SIZES


def populate(store: Store, n: int, hosts: Sequence[str], flavor: Flavor = TINY) -> None:
    """Put ``n`` instances of ``flavor`` spread over ``hosts`` into ``store``, with their
    claims, through the store's API in one transaction (no guests)."""
    resources = flavor.resources
    metadata = {IMAGE_MIN_DISK: str(flavor.root_gb)}
    with store.atomic():
        for i in range(n):
            instance = Instance(
                uuid=f"bulk-{i:07d}",
                name=f"bulk-{i}",
                project_id="demo",
                host=hosts[i % len(hosts)],
                flavor=flavor.id,
                system_metadata=metadata,
            )
            store.add_instance(instance)
            claims.claim(store, instance.uuid, instance.host, resources)


def _cloud(store: Store | None, host_count: int, n: int) -> Cloud:
    # Room for every bulk instance (100,000 over 20 hosts: 5,000 each) and then some.
    per_host = n // host_count + 100
    names = [f"host-{i:03d}" for i in range(host_count - len(PROBE_HOSTS))] + list(PROBE_HOSTS)
    hosts = [Host(name, per_host * 2, per_host * 1_024, per_host * 2) for name in names]
    cloud = Cloud.build(hosts, [TINY], store=store)
    populate(cloud.store, n, names)
    return cloud


@dataclass(frozen=True)
class _Figures:
    """Medians of one configuration, in seconds."""

    boot: float
    cycle: float
    usage: float
    schedule: float


@dataclass(frozen=True)
class _Counts:
    """What one round measures on each cloud."""

    rounds: int
    boots: int
    cycles: int
    usage_calls: int
    decisions: int


class _Probe:
    """One cloud under measurement: samples gathered round after round."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.booted = 0
        self.boots: list[float] = []
        self.cycles: list[float] = []
        self.usages: list[float] = []
        self.schedules: list[float] = []

    def round(self, counts: _Counts) -> None:
        cloud, store = self.cloud, self.cloud.store
        for _ in range(counts.boots):
            name = f"probe-{self.booted}"
            start = time.perf_counter()
            cloud.boot(name, TINY.id, PROBE_HOSTS[self.booted % 2])
            self.boots.append(time.perf_counter() - start)
            self.booted += 1
        for _ in range(counts.cycles):
            start = time.perf_counter()
            migrated = cloud.migrate(VM).wait()
            confirmed = cloud.confirm_resize(VM).wait()
            self.cycles.append(time.perf_counter() - start)
            for what, result in (("migrate", migrated), ("confirm", confirmed)):
                if not result.ok:
                    raise BenchmarkError(f"{what} ended {result.outcome}: {result.error_message}")
        hosts = cloud.hosts
        start = time.perf_counter()
        for i in range(counts.usage_calls):
            store.usage(hosts[i % len(hosts)])
        self.usages.append((time.perf_counter() - start) / counts.usage_calls)
        instance = cloud.instance(VM)
        conductor = cloud.conductor
        offered = conductor.candidates(instance, TINY.id)
        if len(offered) != cloud.config.max_attempts:
            raise BenchmarkError(f"the scheduler offered {offered}")
        start = time.perf_counter()
        for _ in range(counts.decisions):
            conductor.candidates(instance, TINY.id)
        self.schedules.append((time.perf_counter() - start) / counts.decisions)

    def figures(self) -> _Figures:
        return _Figures(
            statistics.median(self.boots),
            statistics.median(self.cycles),
            statistics.median(self.usages),
            statistics.median(self.schedules),
        )


VM = "probe-0"  # the first instance booted: the one that moves


def _counts(sqlite: bool, quick: bool) -> _Counts:
    if quick:
        return _Counts(rounds=3, boots=2, cycles=2, usage_calls=100, decisions=3)
    if sqlite:
        return _Counts(rounds=9, boots=3, cycles=2, usage_calls=200, decisions=4)
    return _Counts(rounds=9, boots=3, cycles=5, usage_calls=1_000, decisions=20)


def _measure(clouds: Sequence[Cloud], counts: _Counts) -> list[_Figures]:
    """Interleaved rounds over ``clouds``, so that a busy spell of the machine falls on
    every size alike; one warm-up round first (it boots the instance that moves)."""
    probes = [_Probe(cloud) for cloud in clouds]
    warm = _Counts(1, 1, 1, 10, 1)
    for probe in probes:
        probe.round(warm)
        probe.boots.clear()
        probe.cycles.clear()
        probe.usages.clear()
        probe.schedules.clear()
    gc.collect()
    for _ in range(counts.rounds):
        for probe in probes:
            probe.round(counts)
    return [probe.figures() for probe in probes]


def run(settings: Settings) -> Section:
    chosen = sizes(settings)
    backends: list[tuple[str, bool]] = [
        ("in memory (`MemoryStore`)", False),
        ("SQLite file (`SqliteStore`, WAL)", True),
    ]
    results: dict[tuple[bool, int, int], _Figures] = {}
    setup_s: dict[tuple[bool, int, int], float] = {}
    with tempfile.TemporaryDirectory(prefix="coldmig-scaling-") as tmp:
        for _, sqlite in backends:
            for host_count in HOST_COUNTS:
                clouds: list[Cloud] = []
                try:
                    for n in chosen:
                        store: Store | None = None
                        if sqlite:
                            store = SqliteStore(Path(tmp) / f"s-{host_count}-{n}.sqlite")
                        print(
                            f"  scaling: {'sqlite' if sqlite else 'memory'}, {host_count} "
                            f"hosts, {n:,} instances",
                            flush=True,
                        )
                        start = time.perf_counter()
                        clouds.append(_cloud(store, host_count, n))
                        setup_s[(sqlite, host_count, n)] = time.perf_counter() - start
                    figures = _measure(clouds, _counts(sqlite, settings.quick))
                finally:
                    for cloud in clouds:
                        cloud.store.close()
                for n, measured in zip(chosen, figures, strict=True):
                    results[(sqlite, host_count, n)] = measured
                del clouds
                gc.collect()

    small, large = min(chosen), max(chosen)
    counts, sql = _counts(False, settings.quick), _counts(True, settings.quick)
    tables: list[Table] = []
    verdicts: list[Verdict] = []
    summary: list[str] = []
    for name, sqlite in backends:
        table = Table(
            [
                "hosts",
                "instances",
                "boot ms",
                "migrate+confirm ms",
                "`usage(host)` µs",
                "one scheduling decision µs",
                "bulk set-up s",
            ],
            caption=f"**{name}** (medians)",
        )
        for host_count in HOST_COUNTS:
            for n in chosen:
                f = results[(sqlite, host_count, n)]
                table.rows.append(
                    [
                        fmt_int(host_count),
                        fmt_int(n),
                        fmt_num(f.boot * 1e3, 3),
                        fmt_num(f.cycle * 1e3, 3),
                        fmt_num(f.usage * 1e6, 2),
                        fmt_num(f.schedule * 1e6, 0),
                        fmt_num(setup_s[(sqlite, host_count, n)], 1),
                    ]
                )
            a, b = results[(sqlite, host_count, small)], results[(sqlite, host_count, large)]
            ratios = {
                "boot": b.boot / a.boot,
                "migrate+confirm": b.cycle / a.cycle,
                "usage()": b.usage / a.usage,
                "scheduling": b.schedule / a.schedule,
            }
            table.rows.append(
                [
                    fmt_int(host_count),
                    f"**{fmt_int(large)} / {fmt_int(small)}**",
                    *(f"**{fmt_ratio(r)}**" for r in ratios.values()),
                    "",
                ]
            )
            misses = [k for k, r in ratios.items() if r > FLAT_LIMIT]
            shown = ", ".join(f"{k} {fmt_ratio(r)}" for k, r in ratios.items())
            verdicts.append(
                Verdict(
                    f"(f) cost flat in the instance count, {name}, {host_count} hosts",
                    f"at {fmt_int(large)} vs {fmt_int(small)} instances: {shown}"
                    + (f" (over: {', '.join(misses)})" if misses else ""),
                    f"each ≤ {FLAT_LIMIT}x",
                    not misses,
                )
            )
            summary.append(f"  {name}, {host_count} hosts, {large:,} vs {small:,}: {shown}")
        per_host = [
            results[(sqlite, HOST_COUNTS[1], n)].schedule
            / results[(sqlite, HOST_COUNTS[0], n)].schedule
            for n in chosen
        ]
        summary.append(
            f"  {name}: one decision over {HOST_COUNTS[1]} hosts / over {HOST_COUNTS[0]}: "
            + ", ".join(fmt_ratio(r) for r in per_host)
        )
        tables.append(table)

    notes = [
        "One scheduling decision over "
        f"{HOST_COUNTS[1]} hosts costs more than over {HOST_COUNTS[0]}: the scheduler reads "
        "every host record and its usage row and weighs every candidate, so its cost grows "
        "with the number of hosts (linearly; "
        + "; ".join(s.strip() for s in summary if "one decision over" in s)
        + ", for 10x the hosts) and not with the number of instances."
    ]
    how = (
        f"For each store, host count ({' and '.join(str(h) for h in HOST_COUNTS)}) and "
        f"instance count ({', '.join(fmt_int(n) for n in chosen)}): a fresh cloud "
        "(`Cloud.build`, fake hosts sized to hold every instance, SQLite on a file in a "
        "temporary directory), then that many `m1.tiny` instances put into the store in "
        "bulk through its API in one transaction (`add_instance` and a claim each, spread "
        "over the hosts: the *bulk set-up* column). The clouds of every instance count "
        "(same store and host count) are then measured in interleaved rounds, so that a "
        "busy spell of the shared machine falls on every size alike: "
        f"{counts.rounds} rounds after a warm-up round, each doing on each cloud: "
        f"*boot*, `cloud.boot` of {counts.boots} new instances on two of the hosts; "
        f"*migrate+confirm*, {counts.cycles} (SQLite: {sql.cycles}) cycles of "
        "`cloud.migrate(vm).wait()` then `cloud.confirm_resize(vm).wait()` of the first "
        "booted instance, the scheduler choosing among every host, each checked `.ok`; "
        f"*usage(host)*, a batch of {fmt_int(counts.usage_calls)} (SQLite: "
        f"{fmt_int(sql.usage_calls)}) `store.usage(host)` over the hosts in turn; *one "
        f"scheduling decision*, a batch of {counts.decisions} (SQLite: {sql.decisions}) "
        "calls of the conductor's `candidates(instance, flavor)` for that instance "
        "(placement candidates, filters, weighers over every host). Each figure is the "
        "median over every sample of the rounds. The cyclic GC is collected before the "
        "rounds and runs as usual. The verdict compares each figure at the largest "
        "instance count with "
        "its value at the smallest, for the same store and host count. Sizes of this run: "
        f"`{SIZES_ENV}` or the mode; the issue's are {', '.join(fmt_int(n) for n in FULL_SIZES)}."
    )
    return Section(
        title="(f) Cost as the cloud grows",
        how=how,
        tables=tables,
        verdicts=verdicts,
        notes=notes,
        summary=summary,
    )
