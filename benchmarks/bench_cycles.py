"""(c) Complete migrate+confirm cycles per second on the fake cloud.

One cycle is ``cloud.migrate(vm).wait()`` then ``cloud.confirm_resize(vm).wait()``, both
checked to have succeeded: every message of both requests is delivered, every step saved
through the store, every notification and action event recorded. The instance moves
between two fake hosts, so consecutive cycles alternate direction.
"""

from __future__ import annotations

import gc
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from coldmig_fsm import Cloud, Flavor, Host, SqliteStore
from coldmig_fsm.machine import MACHINE
from coldmig_fsm.messages import Message
from coldmig_fsm.stores.memory import Store

from ._common import (
    BenchmarkError,
    Section,
    Settings,
    Spread,
    Table,
    Verdict,
    fmt_int,
    fmt_num,
    fmt_ratio,
    spread,
)
from ._profile import profile

__all__ = ["run"]

VM = "bench-vm"
TARGET_MEMORY = 5_000.0
TARGET_SQLITE = 500.0


def _cloud(store: Store | None) -> Cloud:
    cloud = Cloud.build(
        hosts=[Host("host-a", 64, 262_144, 4_000), Host("host-b", 64, 262_144, 4_000)],
        flavors=[Flavor("m1.small", 1, 2_048, 20)],
        store=store,
    )
    cloud.boot(VM, flavor="m1.small", host="host-a")
    return cloud


def _cycle(cloud: Cloud) -> None:
    migrated = cloud.migrate(VM).wait()
    if not migrated.ok:
        raise BenchmarkError(f"migrate ended {migrated.outcome}: {migrated.error_message}")
    confirmed = cloud.confirm_resize(VM).wait()
    if not confirmed.ok:
        raise BenchmarkError(f"confirm ended {confirmed.outcome}: {confirmed.error_message}")


@dataclass(frozen=True)
class _Window:
    cycles: int
    seconds: float
    early: float  # cycles/s over the first quarter of the window
    late: float  # cycles/s over the last quarter

    @property
    def rate(self) -> float:
        return self.cycles / self.seconds


def _window(cloud: Cloud, warmup: int, seconds: float) -> _Window:
    # Collect the garbage of earlier measurements now, not in the middle of this one.
    gc.collect()
    for _ in range(warmup):
        _cycle(cloud)
    stamps: list[float] = []
    start = now = time.perf_counter()
    while now - start < seconds or len(stamps) < 8:
        _cycle(cloud)
        now = time.perf_counter()
        stamps.append(now)
    quarter = len(stamps) // 4
    early = quarter / (stamps[quarter - 1] - start)
    late = quarter / (stamps[-1] - stamps[-quarter - 1])
    return _Window(len(stamps), now - start, early, late)


class _Backend:
    """Makes a fresh store per measurement (and cleans it up)."""

    def __init__(self, name: str, factory: Callable[[Path], Store | None]) -> None:
        self.name = name
        self._factory = factory
        self._tmp = tempfile.TemporaryDirectory(prefix="coldmig-bench-")
        self._count = 0
        self._open: list[Store] = []

    def store(self) -> Store | None:
        self._count += 1
        store = self._factory(Path(self._tmp.name) / f"bench-{self._count}.sqlite")
        if store is not None:
            self._open.append(store)
        return store

    def close(self) -> None:
        for store in self._open:
            if isinstance(store, SqliteStore):
                store.close()
        self._open.clear()
        self._tmp.cleanup()


@dataclass(frozen=True)
class _Counts:
    fires: float  # machine steps per cycle
    messages: float  # messages delivered per cycle


def _counts(backend: _Backend, cycles: int = 10) -> _Counts:
    cloud = _cloud(backend.store())
    _cycle(cloud)
    step = cloud.step
    delivered: list[Message] = []

    def counting_step() -> Message | None:
        message = step()
        if message is not None:
            delivered.append(message)
        return message

    with (
        mock.patch.object(MACHINE, "fire", wraps=MACHINE.fire) as fires,
        mock.patch.object(cloud, "step", new=counting_step),
    ):
        for _ in range(cycles):
            _cycle(cloud)
    return _Counts(fires.call_count / cycles, len(delivered) / cycles)


def run(settings: Settings, raw_step_ns: float | None) -> Section:
    backends = [
        (_Backend("in memory (`MemoryStore`)", lambda _path: None), TARGET_MEMORY, False),
        (_Backend("SQLite file (`SqliteStore`, WAL)", SqliteStore), TARGET_SQLITE, True),
    ]
    table = Table(
        [
            "store",
            "min cycles/s",
            "median cycles/s",
            "max cycles/s",
            "ms/cycle (median)",
            "cycles/s early → late in a window",
            "cycles timed",
            "machine steps/cycle",
            "messages/cycle",
            "cycle time / raw `transitions` steps",
            "median / target",
        ]
    )
    verdicts: list[Verdict] = []
    notes: list[str] = []
    summary: list[str] = []
    details: list[tuple[str, str]] = []
    try:
        for backend, target, sqlite in backends:
            counts = _counts(backend)
            windows: list[_Window] = []
            for _ in range(settings.cycle_reps):
                windows.append(
                    _window(_cloud(backend.store()), settings.cycle_warmup, settings.cycle_seconds)
                )
            rates: Spread = spread([w.rate for w in windows])
            median_window = sorted(windows, key=lambda w: w.rate)[len(windows) // 2]
            cycle_s = 1 / rates.median
            if raw_step_ns is not None and counts.fires:
                raw_cycle_s = counts.fires * raw_step_ns / 1e9
                vs_raw = (
                    f"{fmt_num(cycle_s / raw_cycle_s, 0)}x ({fmt_num(raw_cycle_s * 1e6, 1)} µs)"
                )
            else:
                vs_raw = "n/a"
            table.rows.append(
                [
                    backend.name,
                    fmt_int(rates.min),
                    fmt_int(rates.median),
                    fmt_int(rates.max),
                    fmt_num(cycle_s * 1e3, 3),
                    f"{fmt_int(median_window.early)} → {fmt_int(median_window.late)}",
                    " + ".join(fmt_int(w.cycles) for w in windows),
                    fmt_num(counts.fires, 0),
                    fmt_num(counts.messages, 0),
                    vs_raw,
                    fmt_ratio(rates.median / target),
                ]
            )
            if median_window.late < 0.85 * median_window.early:
                notes.append(
                    f"*{backend.name}:* the rate falls while the store grows, from "
                    f"{fmt_int(median_window.early)} to {fmt_int(median_window.late)} cycles/s "
                    f"within one window of {fmt_int(median_window.cycles)} cycles: part of a "
                    "cycle's cost grows with the history kept in the store, so the figure "
                    "depends on the window length (look in the profile for functions called "
                    "many times per cycle, e.g. records decoded per cycle)."
                )
            verdicts.append(
                Verdict(
                    f"(c) migrate+confirm cycles/s, {backend.name}",
                    f"{fmt_int(rates.median)} cycles/s (min {fmt_int(rates.min)}; "
                    f"{fmt_ratio(rates.median / target)} of target)",
                    f"≥ {fmt_int(target)} cycles/s",
                    rates.median >= target,
                )
            )
            summary.append(
                f"  {backend.name}: median {fmt_int(rates.median)} cycles/s "
                f"(min {fmt_int(rates.min)}, max {fmt_int(rates.max)}), "
                f"{fmt_num(counts.fires, 0)} machine steps and {fmt_num(counts.messages, 0)} "
                f"messages per cycle"
            )

            units = settings.profile_sqlite_cycles if sqlite else settings.profile_cycles
            cloud = _cloud(backend.store())
            for _ in range(settings.cycle_warmup):
                _cycle(cloud)

            def work(cloud: Cloud = cloud, units: int = units) -> None:
                for _ in range(units):
                    _cycle(cloud)

            prof = profile(work, units, "cycle")
            body = "\n\n".join(
                [
                    f"cProfile over {fmt_int(units)} warm cycles, three times; each "
                    "function's median (profiling slows the code: compare the shares, not "
                    "the absolute times). The benchmark's own frames are left out.",
                    "**Top 15 by cumulative time**",
                    prof.table("cumulative").markdown(),
                    "**Top 15 by own time**",
                    prof.table("tottime").markdown(),
                    "**Own time per module**",
                    prof.group_table().markdown(),
                ]
            )
            details.append((f"Profile: {backend.name} cycle", body))
            top = ", ".join(f"{g} {100 * share:.0f} %" for g, share in prof.groups()[:6])
            summary.append(f"    own time by module: {top}")
            own = ", ".join(
                f"{r.func} ({r.where}) {100 * r.tottime / prof.total:.0f} %"
                for r in prof.top("tottime", 5)
            )
            summary.append(f"    top own time: {own}")
    finally:
        for backend, _, _ in backends:
            backend.close()

    how = (
        "A cloud of two fake hosts and one flavor (`Cloud.build`), one instance booted on "
        "the first host. A cycle is `cloud.migrate(vm).wait()` then "
        "`cloud.confirm_resize(vm).wait()`, each checked `.ok` (the run stops otherwise). "
        f"Each measurement builds a fresh cloud, runs {settings.cycle_warmup} warm-up "
        f"cycles, then cycles until at least {fmt_num(settings.cycle_seconds, 2)} s have "
        f"passed; {settings.cycle_reps} measurements per store, the cyclic GC on. The "
        "records, notifications and action events a cycle writes stay in the store, so the "
        "store grows during a window: the *early → late* column (rate over the first and "
        "the last quarter of the median window) shows whether that slows the cycle down. "
        "SQLite runs on a file in a temporary directory (WAL, `synchronous=NORMAL`, as "
        "`SqliteStore` sets it). *Machine steps/cycle* counts `MACHINE.fire` calls, "
        "*messages/cycle* the messages delivered; *cycle time / raw `transitions` steps* "
        "divides the cycle time by the time the same number of raw `transitions` steps "
        "take (median of (a)), i.e. how much of a cycle is *not* the state machine. "
        "The profile below is for the optimiser."
    )
    return Section(
        title="(c) migrate+confirm cycles per second",
        how=how,
        tables=[table],
        verdicts=verdicts,
        notes=notes,
        details=details,
        summary=summary,
    )
