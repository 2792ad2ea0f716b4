"""(b) Tracking many instances, end to end: a cloud vs ``add_model`` per instance.

The package's machine is one object for every instance, so tracking an instance is its
record in the store. Measured end to end: every instance is booted into a cloud
(``cloud.boot``: the record and its claim in the store, its guest on a fake host), then
one operation runs on each through the roles (``cloud.stop(vm).wait()``: the API's
guards and the machine, the message to the host's compute service, the hop's saves,
notifications and action events, the request settled), each checked stopped in the
store. A ``transitions`` user attaches each model with
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

from coldmig_fsm import Cloud, Flavor, Host
from coldmig_fsm.guards import GuardContext
from coldmig_fsm.machine import MACHINE, Machine
from coldmig_fsm.records import Caller, Instance
from coldmig_fsm.states import VmState

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


def _traced(work: Callable[[], None]) -> int:
    """Bytes still allocated after ``work`` (``tracemalloc`` must be running)."""
    before = tracemalloc.get_traced_memory()[0]
    work()
    return tracemalloc.get_traced_memory()[0] - before


# -- ours ---------------------------------------------------------------------------------

HOSTS = 20
TINY = Flavor("m1.tiny", 1, 512, 1)
MEMORY_LIMIT = 20_000  # memory is traced at the largest size up to this (tracing is slow)


def _empty_cloud(n: int) -> Cloud:
    per_host = n // HOSTS + 10
    hosts = [Host(f"host-{i:02d}", per_host, per_host * 512, per_host) for i in range(HOSTS)]
    return Cloud.build(hosts, [TINY])


def _boot_all(cloud: Cloud, n: int) -> list[str]:
    """Boot ``n`` instances (record, claim and guest each); their uuids."""
    boot = cloud.boot
    return [boot(f"vm-{i}", TINY.id, f"host-{i % HOSTS:02d}").uuid for i in range(n)]


def _stop_all(cloud: Cloud, uuids: Sequence[str]) -> None:
    """Stop every instance through the roles, each request checked."""
    stop = cloud.stop
    for uuid in uuids:
        result = stop(uuid).wait()
        if not result.ok:
            raise BenchmarkError(f"stop ended {result.outcome}: {result.error_message}")


def _check_stopped(cloud: Cloud, uuids: Sequence[str]) -> None:
    get = cloud.store.get_instance
    if any(get(u).vm_state is not VmState.STOPPED or get(u).task_state for u in uuids):
        raise BenchmarkError("an instance is not stopped in the store")


@dataclass(frozen=True)
class _OursTime:
    create: Spread  # seconds to boot n instances into the store
    fire: Spread  # seconds to stop each through the roles


def _ours_time(n: int, reps: int) -> _OursTime:
    creates: list[float] = []
    fires: list[float] = []
    for _ in range(reps):
        cloud = _empty_cloud(n)
        gc.collect()
        start = time.perf_counter()
        uuids = _boot_all(cloud, n)
        middle = time.perf_counter()
        _stop_all(cloud, uuids)
        end = time.perf_counter()
        creates.append(middle - start)
        fires.append(end - middle)
        _check_stopped(cloud, uuids)
        del cloud, uuids
    return _OursTime(spread(creates), spread(fires))


@dataclass(frozen=True)
class _OursMemory:
    records: int  # bytes the store (and fake hosts) hold once every instance is booted
    history: int  # bytes one stop of each adds: its request, action, events, notifications


def _ours_memory(n: int) -> _OursMemory:
    gc.collect()
    holder: list[Cloud] = []
    uuids: list[str] = []
    tracemalloc.start()
    try:
        base = _traced(lambda: holder.append(_empty_cloud(n)))
        booted = _traced(lambda: uuids.extend(_boot_all(holder[0], n)))
        history = _traced(lambda: _stop_all(holder[0], uuids))
    finally:
        tracemalloc.stop()
    del base
    # The uuid strings are kept by the store too: what the list adds is its slots.
    return _OursMemory(booted - 8 * n, history)


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
            "boot into the store µs/inst",
            "attach",
            "stop through the roles µs/inst",
            "boot+stop µs/inst",
            "store after boot B/inst",
            "history of one stop B/inst",
        ]
    )
    per_instance: dict[int, float] = {}
    totals: dict[int, float] = {}
    traced = max((n for n in settings.ours_sizes if n <= MEMORY_LIMIT), default=None)
    traced = traced or min(settings.ours_sizes)
    memory = _ours_memory(traced)
    for n in settings.ours_sizes:
        timing = _ours_time(n, _reps(settings, n))
        create_us = timing.create.median / n * 1e6
        fire_us = timing.fire.median / n * 1e6
        per_instance[n] = create_us + fire_us
        totals[n] = timing.create.median + timing.fire.median
        ours_rows.rows.append(
            [
                fmt_int(n),
                f"{fmt_num(create_us, 2)} (min {fmt_num(timing.create.min / n * 1e6, 2)})",
                "none (0 ops)",
                f"{fmt_num(fire_us, 2)} (min {fmt_num(timing.fire.min / n * 1e6, 2)})",
                fmt_num(create_us + fire_us, 2),
                fmt_int(memory.records / traced) if n == traced else "",
                fmt_int(memory.history / traced) if n == traced else "",
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
    ours_per_inst = memory.records / traced + machine_size / largest
    raw_per_model = bare_per_model + bytes_per_model
    ours_head_s = totals.get(head, per_instance[largest] * head / 1e6)

    head_table = Table(
        ["at N = " + fmt_int(head), "ours (a cloud, end to end)", "raw `add_model`", "raw / ours"]
    )
    head_table.rows.append(
        [
            "attach all instances to a machine (s)",
            "0 (nothing to do: the machine is shared)",
            f"{fmt_num(raw_head_s, 1)} ({raw_head_note})",
            "∞",
        ]
    )
    head_table.rows.append(
        [
            "boot every instance into the store, then stop each through the roles (s)",
            fmt_num(ours_head_s, 2)
            + ("" if head in totals else " (**extrapolated** from the largest measured N)"),
            "not run",
            "",
        ]
    )
    ours_head_bytes = memory.records / traced * head + machine_size
    raw_head_bytes = raw_per_model * head
    head_table.rows.append(
        [
            "memory of every instance tracked (store after boot), machine included",
            f"{fmt_bytes(ours_head_bytes)} (**extrapolated**: "
            f"{fmt_int(memory.records / traced)} B/instance measured at N = {fmt_int(traced)}, "
            f"times N, + one machine: {fmt_bytes(machine_size)})",
            f"{fmt_bytes(raw_head_bytes)} (**extrapolated**: {fmt_int(raw_per_model)} B/model "
            f"measured at N = {memory_sizes}, times N)",
            fmt_ratio(raw_head_bytes / max(ours_head_bytes, 1.0)),
        ]
    )

    verdicts = [
        Verdict(
            "(b) tracking cost is O(1) per instance, end to end",
            f"attach = 0 ops; boot+stop {fmt_num(per_instance[smallest], 2)} µs/inst at "
            f"N={fmt_int(smallest)} vs {fmt_num(per_instance[largest], 2)} at "
            f"N={fmt_int(largest)} ({fmt_ratio(growth)}; raw add_model alone "
            f"{fmt_ratio(raw_growth)} from {fmt_int(raw_small[0])} to {fmt_int(raw_large[0])})",
            f"flat: ≤ {FLAT_LIMIT}x from smallest to largest N",
            growth <= FLAT_LIMIT,
        ),
        Verdict(
            "(b) memory per tracked instance, end to end",
            f"{fmt_num(ours_per_inst, 1)} B (the store after boot: record, claim, indexes, "
            f"guest, {fmt_int(memory.records / traced)} B at N={fmt_int(traced)}, + "
            f"{fmt_bytes(machine_size)} machine / N={fmt_int(largest)}); raw: model+record "
            f"{fmt_int(bare_per_model)} B + add_model {fmt_int(bytes_per_model)} B",
            f"≤ {fmt_int(TARGET_BYTES)} B",
            ours_per_inst <= TARGET_BYTES,
        ),
    ]
    how = (
        f"*Ours, end to end:* a cloud of {HOSTS} fake hosts (`Cloud.build`, in memory), "
        "N instances booted into it one by one (`cloud.boot`: the record and its claim "
        "in the store, the guest on its fake host; the *boot* column), then "
        "`cloud.stop(vm).wait()` on each (the API's guards and the shared `MACHINE`, the "
        "message to the host's compute service, the hop's compare-and-swap saves, "
        "notifications and action event, the request settled; each checked `.ok`), and "
        "every instance checked `stopped` in the store. Nothing is attached to a machine, "
        "so the attach column is zero operations; the flatness target is checked on "
        "boot+stop per instance. Memory, under `tracemalloc`, at "
        f"N = {fmt_int(traced)} (tracing is slow; the cost per instance is flat): what "
        "the cloud holds once every instance is booted (records, claims, the store's "
        "indexes and usage aggregates, the guests), per instance, and what one stop of "
        "each adds (its request, action, event and notifications: history, kept in the "
        "store); the memory target counts the first, plus the one-off size of a "
        "`Machine` / N. The raw side's counterpart is the bare model+record plus what "
        "`add_model` adds: it tracks the state only, with no store, no claim and no "
        "guest. *Raw `transitions`:* a fresh bare machine "
        "(the same table, see (a)) per N, one plain model object per record, "
        "`machine.add_model(model, initial=...)` for each (timed as a batch, and the last "
        "10 % separately to show the per-call cost growing with N: `add_model` tests "
        "`model not in self.models`, a list scan), then one trigger on each "
        f"(`{TRIGGER}`; the new state is kept in `model.state`). Its memory (the bare "
        "model+record, and the bytes `add_model` adds) is measured under `tracemalloc` at "
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
        title=f"(b) Tracking {fmt_int(head)} instances, end to end",
        how=how,
        tables=[head_table, ours_rows, raw_rows],
        verdicts=verdicts,
        summary=[
            f"  ours: boot+stop {fmt_num(per_instance[largest], 2)} µs/inst at "
            f"N={fmt_int(largest)} ({fmt_ratio(growth)} of N={fmt_int(smallest)}), "
            f"{fmt_num(ours_per_inst, 1)} B/inst tracked",
            f"  raw add_model: {fmt_num(raw_points[-1][1], 1)} µs/inst at "
            f"N={fmt_int(raw_points[-1][0])}, {fmt_int(raw_per_model)} B/model; "
            f"{fmt_int(head)} models: {fmt_num(raw_head_s, 1)} s ({raw_head_note})".replace(
                "**", ""
            ),
        ],
    )
