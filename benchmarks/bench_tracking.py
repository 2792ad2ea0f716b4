"""(b) Tracking many instances: the shared machine vs ``add_model`` per instance.

The package's machine is one object for every instance: "attaching" an instance is
nothing at all, and firing a trigger returns the new state, which the caller keeps by
saving a copy of the record in that state (``attrs.evolve``, as the roles do); so does this
benchmark, for every instance. A ``transitions`` user attaches each model with
``add_model``, which binds a trigger and a ``may_`` method per event and an ``is_<state>``
method per state onto the model and appends it to a list after a membership test on that
list; firing sets ``model.state``.

Time and memory are measured in separate passes (``tracemalloc`` slows the code it traces).
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import attrs

from coldmig_fsm.guards import GuardContext
from coldmig_fsm.machine import MACHINE, Machine
from coldmig_fsm.records import Caller, Instance
from coldmig_fsm.states import MachineState

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


def _fire_and_keep(records: Sequence[Instance]) -> list[Instance]:
    """Fire ``TRIGGER`` on each record and keep its new state: the records in their new
    state, as a caller saving them would hold them."""
    fire = MACHINE.fire
    evolve = attrs.evolve
    kept: list[Instance] = []
    keep = kept.append
    for record in records:
        state = fire(TRIGGER, GuardContext(TRIGGER, ADMIN, record))[0]
        keep(evolve(record, vm_state=state.vm_state, task_state=state.task_state))
    return kept


def _traced(work: Callable[[], None]) -> int:
    """Bytes still allocated after ``work`` (``tracemalloc`` must be running)."""
    before = tracemalloc.get_traced_memory()[0]
    work()
    return tracemalloc.get_traced_memory()[0] - before


# -- ours ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _OursTime:
    create: Spread  # seconds for n records
    fire: Spread  # seconds for one trigger on each, its new state kept


def _ours_time(n: int, reps: int) -> _OursTime:
    creates: list[float] = []
    fires: list[float] = []
    for _ in range(reps):
        gc.collect()
        start = time.perf_counter()
        records = _records(n)
        middle = time.perf_counter()
        kept = _fire_and_keep(records)
        end = time.perf_counter()
        creates.append(middle - start)
        fires.append(end - middle)
        if len(kept) != n or any(MachineState(r.vm_state, r.task_state) != DEST for r in kept):
            raise BenchmarkError("the shared machine did not take the step")
        del records, kept
    return _OursTime(spread(creates), spread(fires))


@dataclass(frozen=True)
class _OursMemory:
    records: int  # bytes of the records in their first state
    kept: int  # bytes of the records in their new state (kept), the old ones still held
    freed: int  # bytes freed when the old records are dropped, as a caller replacing them
    peak: int  # transient peak while firing, above the old and the new records

    @property
    def net(self) -> int:
        """What tracking the new state added: new records kept, old ones dropped."""
        return self.kept - self.freed


def _ours_memory(n: int) -> _OursMemory:
    gc.collect()
    tracemalloc.start()
    try:
        holder: list[list[Instance]] = []
        records = _traced(lambda: holder.append(_records(n)))
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        kept = _traced(lambda: holder.append(_fire_and_keep(holder[0])))
        peak = tracemalloc.get_traced_memory()[1] - base - kept

        def drop_old() -> None:
            del holder[0]

        freed = -_traced(drop_old)
    finally:
        tracemalloc.stop()
    return _OursMemory(records, kept, freed, peak)


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
            "fire one trigger and keep the new state µs/inst",
            "create+fire+keep µs/inst",
            "records B/inst (first state)",
            "new records kept B/inst",
            "net retained B/inst (old records dropped)",
            "transient peak while firing",
        ]
    )
    per_instance: dict[int, float] = {}
    held_bytes: dict[int, float] = {}  # per instance, in its new state, the old records dropped
    totals: dict[int, float] = {}
    for n in settings.ours_sizes:
        timing = _ours_time(n, _reps(settings, n))
        memory = _ours_memory(n)
        create_us = timing.create.median / n * 1e6
        fire_us = timing.fire.median / n * 1e6
        per_instance[n] = create_us + fire_us
        held_bytes[n] = (memory.records + memory.net) / n
        totals[n] = timing.create.median + timing.fire.median
        ours_rows.rows.append(
            [
                fmt_int(n),
                f"{fmt_num(create_us, 2)} (min {fmt_num(timing.create.min / n * 1e6, 2)})",
                "none (0 ops)",
                f"{fmt_num(fire_us, 2)} (min {fmt_num(timing.fire.min / n * 1e6, 2)})",
                fmt_num(create_us + fire_us, 2),
                fmt_int(memory.records / n),
                fmt_int(memory.kept / n),
                fmt_num(memory.net / n, 2),
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
    raw_bytes: dict[int, tuple[float, float]] = {}  # n -> (bare, added by add_model) per model
    for n in settings.raw_sizes:
        runs = [_raw_time(n) for _ in range(_reps(settings, n))]
        attach = spread([r.attach for r in runs])
        marginal = spread([r.marginal for r in runs])
        fire = spread([r.fire for r in runs])
        raw_points.append((n, attach.median / n * 1e6))
        mem = "not measured (a per-model constant)"
        bare = ""
        if n in settings.raw_memory_sizes:
            bare_b, added_b = _raw_memory(n)
            gc.collect()  # the attached models are reference cycles: free them now
            raw_bytes[n] = (bare_b / n, added_b / n)
            mem = fmt_int(added_b / n)
            bare = fmt_int(bare_b / n)
        raw_rows.rows.append(
            [
                fmt_int(n),
                fmt_num(attach.median / n * 1e6, 1),
                fmt_num(marginal.median * 1e6, 1),
                fmt_num(fire.median / n * 1e6, 2),
                fmt_num(attach.median, 2),
                mem,
                bare,
            ]
        )
    for n in settings.raw_memory_sizes:
        if n not in raw_bytes:
            bare_b, added_b = _raw_memory(n)
            raw_bytes[n] = (bare_b / n, added_b / n)
            gc.collect()
    bytes_per_model = max(added for _, added in raw_bytes.values())
    bare_per_model = max(bare for bare, _ in raw_bytes.values())
    memory_sizes = " and ".join(fmt_int(n) for n in sorted(raw_bytes))

    a, b = _fit(raw_points)
    predicted = head * (a + b * head) / 1e6
    raw_head_note: str
    raw_head_measured = True
    if head in settings.raw_sizes:
        raw_head_s = next(p[1] for p in raw_points if p[0] == head) * head / 1e6
        raw_head_note = "measured"
    elif settings.quick:
        raw_head_s = predicted
        raw_head_measured = False
        raw_head_note = "**extrapolated** (quick mode: not run)"
    elif predicted <= settings.raw_limit_s:
        raw_head_s = _raw_time(head).attach
        raw_head_note = f"measured once (predicted {fmt_num(predicted, 1)} s)"
    else:
        raw_head_s = predicted
        raw_head_measured = False
        raw_head_note = (
            f"**extrapolated**, not run: predicted {fmt_num(predicted, 1)} s "
            f"> {fmt_num(settings.raw_limit_s, 0)} s limit"
        )
    per_inst_note = "" if raw_head_measured else " (**extrapolated**: total / N)"
    raw_rows.rows.append(
        [
            fmt_int(head),
            fmt_num(raw_head_s / head * 1e6, 1) + per_inst_note,
            fmt_num(a + 2 * b * head, 1) + " (**extrapolated**: fit)",
            "not run",
            f"{fmt_num(raw_head_s, 1)} ({raw_head_note})",
            f"{fmt_int(bytes_per_model)} (**extrapolated**: measured at {memory_sizes})",
            f"{fmt_int(bare_per_model)} (**extrapolated**)",
        ]
    )

    largest = max(settings.ours_sizes)
    smallest = min(settings.ours_sizes)
    growth = per_instance[largest] / per_instance[smallest]
    raw_small, raw_large = raw_points[0], raw_points[-1]
    raw_growth = raw_large[1] / raw_small[1]
    ours_per_inst = held_bytes[largest] + machine_size / largest
    raw_per_model = bare_per_model + bytes_per_model
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
            "create records + fire one trigger on each, new state kept (s)",
            fmt_num(ours_head_s, 2)
            + ("" if head in totals else " (**extrapolated** from the largest measured N)"),
            "not run",
            "",
        ]
    )
    ours_head_bytes = held_bytes.get(head, held_bytes[largest]) * head + machine_size
    raw_head_bytes = raw_per_model * head
    head_table.rows.append(
        [
            "memory of all instances in their new state, machine included",
            f"{fmt_bytes(ours_head_bytes)} (records in the new state "
            f"{'' if head in held_bytes else '**extrapolated**, '}"
            f"+ one machine: {fmt_bytes(machine_size)})",
            f"{fmt_bytes(raw_head_bytes)} (**extrapolated**: {fmt_int(raw_per_model)} B/model "
            f"measured at N = {memory_sizes}, times N)",
            fmt_ratio(raw_head_bytes / max(ours_head_bytes, 1.0)),
        ]
    )

    verdicts = [
        Verdict(
            "(b) attach cost is O(1) per instance",
            f"attach = 0 ops; create+fire+keep {fmt_num(per_instance[smallest], 2)} µs/inst at "
            f"N={fmt_int(smallest)} vs {fmt_num(per_instance[largest], 2)} at "
            f"N={fmt_int(largest)} ({fmt_ratio(growth)}; raw add_model "
            f"{fmt_ratio(raw_growth)} from {fmt_int(raw_small[0])} to {fmt_int(raw_large[0])})",
            f"flat: ≤ {FLAT_LIMIT}x from smallest to largest N",
            growth <= FLAT_LIMIT,
        ),
        Verdict(
            "(b) memory per tracked instance, its new state kept",
            f"{fmt_num(ours_per_inst, 1)} B at N={fmt_int(largest)} (the record in its new "
            f"state {fmt_int(held_bytes[largest])} B + {fmt_bytes(machine_size)} machine / N); "
            f"raw: model+record {fmt_int(bare_per_model)} B + add_model "
            f"{fmt_int(bytes_per_model)} B",
            f"≤ {fmt_int(TARGET_BYTES)} B",
            ours_per_inst <= TARGET_BYTES,
        ),
    ]
    how = (
        "*Ours:* build N `Instance` records in `active:resize_prep` (a list comprehension), "
        f"fire `{TRIGGER}` once on each through the shared `MACHINE` and keep the new state "
        "as a caller does: a copy of the record in the returned state "
        "(`attrs.evolve(record, vm_state=..., task_state=...)`, what the roles save), "
        "appended to a new list; every kept record is checked to be in "
        f"`{DEST.name}`. Nothing is attached, so the attach column is zero operations; the "
        "flatness target is checked on create+fire+keep per instance. Memory, under "
        "`tracemalloc`: the records in their first state (with their strings); the new "
        "records kept while the old ones are still held (the copies share the strings); "
        "then the net after dropping the old ones (a caller replaces a record by its new "
        "copy: the state lives in the record, the machine keeps nothing per instance); "
        "the transient peak while firing above both lists; and the one-off size of a "
        "`Machine`. The memory target and the headline row count everything held for an "
        "instance in its new state (first-state records + net, strings included) plus "
        "the machine's size / N; the raw side's counterpart is the bare model+record plus "
        "what `add_model` adds. *Raw `transitions`:* a fresh bare machine "
        "(the same table, see (a)) per N, one plain model object per record, "
        "`machine.add_model(model, initial=...)` for each (timed as a batch, and the last "
        "10 % separately to show the per-call cost growing with N: `add_model` tests "
        "`model not in self.models`, a list scan), then one trigger on each (the new "
        "state is kept in `model.state`). Its memory (the bare model+record, and the "
        "bytes `add_model` adds) is measured under `tracemalloc` at "
        f"N = {memory_sizes} only, because it is a per-model constant and tracing is "
        f"slow. Sizes up to 5,000 are repeated {settings.track_reps}x (median shown), "
        "larger ones once; the cyclic GC runs as usual. **Extrapolated raw figures** "
        "(marked in the tables): `add_model` at the headline N whenever its prediction "
        f"exceeds {fmt_num(settings.raw_limit_s, 0)} s, from a least-squares fit of "
        f"µs/instance = a + b·N over the measured sizes (a = {fmt_num(a, 1)} µs, "
        f"b = {b * 1e3:.1f} ns: each `add_model` call costs about {2 * b * 1e3:.1f} ns "
        "more per model already attached), with the per-call cost at that N from the same "
        "fit; and all raw memory at the headline N (per-model bytes times N). The raw "
        "side's fire at the headline N is not run."
    )
    return Section(
        title=f"(b) Tracking {fmt_int(head)} instances",
        how=how,
        tables=[head_table, ours_rows, raw_rows],
        verdicts=verdicts,
        summary=[
            f"  ours: create+fire+keep {fmt_num(per_instance[largest], 2)} µs/inst at "
            f"N={fmt_int(largest)}, {fmt_num(ours_per_inst, 1)} B/inst with its new state",
            f"  raw add_model: {fmt_num(raw_points[-1][1], 1)} µs/inst at "
            f"N={fmt_int(raw_points[-1][0])}, {fmt_int(raw_per_model)} B/model; "
            f"{fmt_int(head)} models: {fmt_num(raw_head_s, 1)} s ({raw_head_note})".replace(
                "**", ""
            ),
        ],
    )
