"""(b) Tracking many instances: the shared machine vs ``add_model`` per instance.

The package's machine is one object for every instance: "attaching" an instance is
nothing at all, and firing a trigger on it allocates a throw-away cursor. A ``transitions``
user attaches each model with ``add_model``, which binds a trigger and a ``may_`` method
per event and an ``is_<state>`` method per state onto the model and appends it to a list
after a membership test on that list.

Time and memory are measured in separate passes (``tracemalloc`` slows the code it traces).
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from coldmig_fsm.guards import GuardContext
from coldmig_fsm.machine import MACHINE, Machine
from coldmig_fsm.records import Caller, Instance

from ._common import (
    BenchmarkError,
    Section,
    Settings,
    Spread,
    Table,
    Verdict,
    fmt_bytes,
    fmt_int,
    fmt_num,
    fmt_ratio,
    spread,
)
from ._raw import RawModel, raw_machine
from .bench_step import DEST, SOURCE, TRIGGER

__all__ = ["run"]

ADMIN = Caller.admin()
TARGET_BYTES = 1024
FLAT_LIMIT = 1.5  # per-instance cost at the largest N within this factor of the smallest


def _records(n: int) -> list[Instance]:
    return [
        Instance(
            uuid=f"uuid-{i:07d}",
            name=f"vm-{i}",
            project_id="demo",
            host="host-a",
            flavor="m1.tiny",
            vm_state=SOURCE.vm_state,
            task_state=SOURCE.task_state,
        )
        for i in range(n)
    ]


def _fire_all(records: Sequence[Instance]) -> None:
    fire = MACHINE.fire
    for record in records:
        fire(TRIGGER, GuardContext(TRIGGER, ADMIN, record))


def _traced(work: Callable[[], None]) -> int:
    """Bytes still allocated after ``work`` (``tracemalloc`` must be running)."""
    before = tracemalloc.get_traced_memory()[0]
    work()
    return tracemalloc.get_traced_memory()[0] - before


# -- ours ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _OursTime:
    create: Spread  # seconds for n records
    fire: Spread  # seconds for one trigger on each


def _ours_time(n: int, reps: int) -> _OursTime:
    creates: list[float] = []
    fires: list[float] = []
    for _ in range(reps):
        gc.collect()
        start = time.perf_counter()
        records = _records(n)
        middle = time.perf_counter()
        _fire_all(records)
        end = time.perf_counter()
        creates.append(middle - start)
        fires.append(end - middle)
        if MACHINE.fire(TRIGGER, GuardContext(TRIGGER, ADMIN, records[-1]))[0] != DEST:
            raise BenchmarkError("the shared machine did not take the step")
        del records
    return _OursTime(spread(creates), spread(fires))


@dataclass(frozen=True)
class _OursMemory:
    records: int  # bytes of the bare records
    retained: int  # bytes still allocated after firing on every record
    peak: int  # transient peak while firing, above the records


def _ours_memory(n: int) -> _OursMemory:
    gc.collect()
    tracemalloc.start()
    try:
        holder: list[list[Instance]] = []
        records = _traced(lambda: holder.append(_records(n)))
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        retained = _traced(lambda: _fire_all(holder[0]))
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return _OursMemory(records, retained, peak)


def _machine_bytes() -> int:
    """The one-off size of a machine (what every instance shares)."""
    gc.collect()
    tracemalloc.start()
    try:
        keep: list[Machine] = []
        size = _traced(lambda: keep.append(Machine(MACHINE.rules)))
    finally:
        tracemalloc.stop()
    return size


# -- raw transitions ----------------------------------------------------------------------


@dataclass(frozen=True)
class _RawTime:
    attach: float  # seconds for n add_model calls
    marginal: float  # seconds per add_model over the last tenth
    fire: float  # seconds for one trigger on each


def _raw_time(n: int) -> _RawTime:
    machine = raw_machine()
    models = [RawModel(r) for r in _records(n)]
    tail = max(1, n // 10)
    gc.collect()
    start = time.perf_counter()
    for model in models[:-tail]:
        machine.add_model(model, initial=SOURCE.name)
    middle = time.perf_counter()
    for model in models[-tail:]:
        machine.add_model(model, initial=SOURCE.name)
    attached = time.perf_counter()
    event = machine.events[TRIGGER]
    for model in models:
        model.ctx = GuardContext(TRIGGER, ADMIN, model.instance)
        event.trigger(model)
    end = time.perf_counter()
    if models[-1].state != DEST.name or len(machine.models) != n:
        raise BenchmarkError("the raw machine did not take the step")
    # Each attached model and its bound partials form reference cycles: free them now,
    # or a later measurement pays for their collection.
    del models, machine
    gc.collect()
    return _RawTime(attached - start, (attached - middle) / tail, end - attached)


def _raw_memory(n: int) -> tuple[int, int]:
    """(bytes of the bare models and records, bytes that add_model adds)."""
    machine = raw_machine()
    gc.collect()
    tracemalloc.start()
    try:
        holder: list[list[RawModel]] = []
        bare = _traced(lambda: holder.append([RawModel(r) for r in _records(n)]))

        def attach() -> None:
            for model in holder[0]:
                machine.add_model(model, initial=SOURCE.name)

        added = _traced(attach)
    finally:
        tracemalloc.stop()
    return bare, added


def _fit(points: Sequence[tuple[int, float]]) -> tuple[float, float]:
    """Least squares of ``per_instance = a + b * n``; returns ``(a, b)``."""
    xs = [float(n) for n, _ in points]
    ys = [y for _, y in points]
    mean_x = sum(xs) / len(xs)
    mean_y = sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    if var == 0:
        return mean_y, 0.0
    b = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var
    return mean_y - b * mean_x, b


# -- the benchmark ------------------------------------------------------------------------


def _reps(settings: Settings, n: int) -> int:
    return settings.track_reps if n <= 5_000 else 1


def run(settings: Settings) -> Section:
    head = settings.headline_n
    machine_size = _machine_bytes()

    ours_rows = Table(
        [
            "N",
            "create records µs/inst",
            "attach",
            "fire one trigger µs/inst",
            "create+fire µs/inst",
            "records B/inst",
            "retained by the machine B/inst",
            "transient peak while firing",
        ]
    )
    per_instance: dict[int, float] = {}
    overhead: dict[int, float] = {}
    totals: dict[int, float] = {}
    for n in settings.ours_sizes:
        timing = _ours_time(n, _reps(settings, n))
        memory = _ours_memory(n)
        create_us = timing.create.median / n * 1e6
        fire_us = timing.fire.median / n * 1e6
        per_instance[n] = create_us + fire_us
        overhead[n] = memory.retained / n
        totals[n] = timing.create.median + timing.fire.median
        ours_rows.rows.append(
            [
                fmt_int(n),
                f"{fmt_num(create_us, 2)} (min {fmt_num(timing.create.min / n * 1e6, 2)})",
                "none (0 ops)",
                f"{fmt_num(fire_us, 2)} (min {fmt_num(timing.fire.min / n * 1e6, 2)})",
                fmt_num(create_us + fire_us, 2),
                fmt_int(memory.records / n),
                fmt_num(memory.retained / n, 2),
                fmt_bytes(memory.peak),
            ]
        )

    raw_rows = Table(
        [
            "N",
            "add_model µs/inst (whole batch)",
            "add_model µs/call (last 10 %)",
            "fire one trigger µs/inst",
            "attach total s",
            "add_model B/model",
            "bare model+record B",
        ]
    )
    raw_points: list[tuple[int, float]] = []
    raw_marginal: dict[int, float] = {}
    raw_bytes: dict[int, float] = {}
    for n in settings.raw_sizes:
        runs = [_raw_time(n) for _ in range(_reps(settings, n))]
        attach = spread([r.attach for r in runs])
        marginal = spread([r.marginal for r in runs])
        fire = spread([r.fire for r in runs])
        raw_points.append((n, attach.median / n * 1e6))
        raw_marginal[n] = marginal.median * 1e6
        mem = ""
        bare = ""
        if n in settings.raw_memory_sizes:
            bare_b, added_b = _raw_memory(n)
            gc.collect()  # the attached models are reference cycles: free them now
            raw_bytes[n] = added_b / n
            mem = fmt_int(added_b / n)
            bare = fmt_int(bare_b / n)
        raw_rows.rows.append(
            [
                fmt_int(n),
                fmt_num(attach.median / n * 1e6, 1),
                fmt_num(marginal.median * 1e6, 1),
                fmt_num(fire.median / n * 1e6, 2),
                fmt_num(attach.median, 2),
                mem or "not measured",
                bare or "",
            ]
        )
    for n in settings.raw_memory_sizes:
        if n not in raw_bytes:
            raw_bytes[n] = _raw_memory(n)[1] / n
            gc.collect()
    bytes_per_model = max(raw_bytes.values())

    a, b = _fit(raw_points)
    predicted = head * (a + b * head) / 1e6
    raw_head_note: str
    if head in settings.raw_sizes:
        raw_head_s = next(p[1] for p in raw_points if p[0] == head) * head / 1e6
        raw_head_note = "measured"
    elif settings.quick:
        raw_head_s = predicted
        raw_head_note = "**extrapolated** (quick mode: not run)"
    elif predicted <= settings.raw_limit_s:
        raw_head_s = _raw_time(head).attach
        raw_head_note = f"measured once (predicted {fmt_num(predicted, 1)} s)"
    else:
        raw_head_s = predicted
        raw_head_note = (
            f"**extrapolated**, not run: predicted {fmt_num(predicted, 1)} s "
            f"> {fmt_num(settings.raw_limit_s, 0)} s limit"
        )
    raw_rows.rows.append(
        [
            fmt_int(head),
            fmt_num(raw_head_s / head * 1e6, 1),
            fmt_num(a + 2 * b * head, 1) + " (fit)",
            "not run",
            f"{fmt_num(raw_head_s, 1)} ({raw_head_note})",
            f"{fmt_int(bytes_per_model)} (per-model constant, not run)",
            "",
        ]
    )

    largest = max(settings.ours_sizes)
    smallest = min(settings.ours_sizes)
    growth = per_instance[largest] / per_instance[smallest]
    raw_small, raw_large = raw_points[0], raw_points[-1]
    raw_growth = raw_large[1] / raw_small[1]
    ours_overhead = overhead[largest] + machine_size / largest
    ours_head_s = totals.get(head, per_instance[largest] * head / 1e6)

    head_table = Table(
        ["at N = " + fmt_int(head), "ours (shared MACHINE)", "raw `add_model`", "raw / ours"]
    )
    head_table.rows.append(
        [
            "attach all instances (s)",
            "0 (nothing to do)",
            f"{fmt_num(raw_head_s, 1)} ({raw_head_note})",
            "∞",
        ]
    )
    head_table.rows.append(
        [
            "create records + fire one trigger on each (s)",
            fmt_num(ours_head_s, 2) + ("" if head in totals else " (from the largest measured N)"),
            "not run",
            "",
        ]
    )
    raw_head_bytes = bytes_per_model * head
    ours_head_bytes = overhead[largest] * head + machine_size
    head_table.rows.append(
        [
            "machine memory for all instances",
            f"{fmt_bytes(ours_head_bytes)} (one machine: {fmt_bytes(machine_size)})",
            f"{fmt_bytes(raw_head_bytes)} (extrapolated: {fmt_int(bytes_per_model)} B/model)",
            fmt_ratio(raw_head_bytes / max(ours_head_bytes, 1.0)),
        ]
    )

    verdicts = [
        Verdict(
            "(b) attach cost is O(1) per instance",
            f"attach = 0 ops; create+fire {fmt_num(per_instance[smallest], 2)} µs/inst at "
            f"N={fmt_int(smallest)} vs {fmt_num(per_instance[largest], 2)} at "
            f"N={fmt_int(largest)} ({fmt_ratio(growth)}; raw add_model "
            f"{fmt_ratio(raw_growth)} from {fmt_int(raw_small[0])} to {fmt_int(raw_large[0])})",
            f"flat: ≤ {FLAT_LIMIT}x from smallest to largest N",
            growth <= FLAT_LIMIT,
        ),
        Verdict(
            "(b) machine memory per tracked instance",
            f"{fmt_num(ours_overhead, 1)} B at N={fmt_int(largest)} "
            f"({fmt_num(overhead[largest], 2)} B retained + {fmt_bytes(machine_size)} machine "
            f"/ N); raw add_model {fmt_int(bytes_per_model)} B",
            f"≤ {fmt_int(TARGET_BYTES)} B",
            ours_overhead <= TARGET_BYTES,
        ),
    ]
    how = (
        "*Ours:* build N `Instance` records in `active:resize_prep` (a list comprehension) "
        f"and fire `{TRIGGER}` once on each through the shared `MACHINE` "
        "(`MACHINE.fire(t, GuardContext(t, admin, record))`, result discarded: the caller "
        "would save it). Nothing is attached, so the attach column is zero operations; the "
        "flatness target is checked on create+fire per instance. Memory: `tracemalloc` "
        "traced bytes after building the records, and the bytes still allocated after "
        "firing on every record (the machine's per-instance overhead), plus the one-off "
        "size of a `Machine` amortised over N. *Raw `transitions`:* a fresh bare machine "
        "(the same table, see (a)) per N, one plain model object per record, "
        "`machine.add_model(model, initial=...)` for each (timed as a batch, and the last "
        "10 % separately to show the per-call cost growing with N: `add_model` tests "
        "`model not in self.models`, a list scan), then one trigger on each. Its memory "
        "(bytes added by `add_model` per model) is measured under `tracemalloc` at the "
        "smallest sizes only, because it is a per-model constant and tracing is slow. "
        f"Sizes up to 5,000 are repeated {settings.track_reps}x (median shown), larger "
        "ones once; the cyclic GC runs as usual. Raw `add_model` at the headline N is "
        "extrapolated from a least-squares fit of µs/instance = a + b·N over the measured "
        f"sizes (a = {fmt_num(a, 1)} µs, b = {b * 1e3:.1f} ns: each `add_model` call costs "
        f"about {2 * b * 1e3:.1f} ns more per model already attached) whenever the "
        f"prediction exceeds {fmt_num(settings.raw_limit_s, 0)} s; its memory is always "
        "extrapolated (per-model bytes times N)."
    )
    return Section(
        title=f"(b) Tracking {fmt_int(head)} instances",
        how=how,
        tables=[head_table, ours_rows, raw_rows],
        verdicts=verdicts,
        summary=[
            f"  ours: create+fire {fmt_num(per_instance[largest], 2)} µs/inst at "
            f"N={fmt_int(largest)}, machine overhead {fmt_num(ours_overhead, 1)} B/inst",
            f"  raw add_model: {fmt_num(raw_points[-1][1], 1)} µs/inst at "
            f"N={fmt_int(raw_points[-1][0])}, {fmt_int(bytes_per_model)} B/model; "
            f"{fmt_int(head)} models: {fmt_num(raw_head_s, 1)} s ({raw_head_note})".replace(
                "**", ""
            ),
        ],
    )
