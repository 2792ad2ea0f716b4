"""(a) One guarded step: the package's machine vs the same table on bare ``transitions``.

Every variant fires ``resize_instance`` from ``active:resize_prep`` (two guards: vm_state,
expected task_state) and reaches ``active:resize_migrating``. The package's machine never
mutates the record, so it fires from the same record every time; the baselines mutate
their model, so each of their steps first puts the model back to the source state (one
attribute store, the same for both baselines).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from coldmig_fsm.guards import GuardContext
from coldmig_fsm.machine import MACHINE
from coldmig_fsm.records import Caller, Instance
from coldmig_fsm.states import MachineState, TaskState, VmState

from ._common import (
    BenchmarkError,
    Section,
    Settings,
    Spread,
    Table,
    Verdict,
    fmt_int,
    fmt_ratio,
    gc_paused,
    spread,
)
from ._profile import profile
from ._raw import DictTable, RawModel, edge_count, raw_machine

__all__ = ["StepResult", "run"]

TRIGGER = "resize_instance"
SOURCE = MachineState(VmState.ACTIVE, TaskState.RESIZE_PREP)
DEST = MachineState(VmState.ACTIVE, TaskState.RESIZE_MIGRATING)
TARGET_RATIO = 1.3

OURS = "coldmig_fsm `MACHINE.fire` (context prebuilt)"
OURS_CTX = "coldmig_fsm `MACHINE.fire(t, GuardContext(t, Caller.admin(), inst))`"
RAW = "raw `transitions`: `event.trigger(model)` (context prebuilt)"
RAW_CTX = "raw `transitions`: `event.trigger(model)`, context built per step"
RAW_BY_NAME = "raw `transitions`: `model.trigger(name)` (context prebuilt)"
DICT = "hand-written dict table + guard loop (context prebuilt)"


@dataclass(frozen=True)
class StepResult:
    section: Section
    ns: dict[str, Spread]

    @property
    def raw_ns(self) -> float:
        """Median ns of one raw ``transitions`` step (the baseline of benchmark (c))."""
        return self.ns[RAW].median


def _instance() -> Instance:
    return Instance(
        uuid="bench-step",
        name="bench-step",
        project_id="demo",
        host="host-a",
        flavor="m1.tiny",
        vm_state=SOURCE.vm_state,
        task_state=SOURCE.task_state,
    )


def _variants() -> dict[str, Callable[[int], float]]:
    """Each variant: ``run(n)`` fires ``n`` steps and returns the seconds it took."""
    instance = _instance()
    ctx = GuardContext(TRIGGER, Caller.admin(), instance)
    fire = MACHINE.fire
    source = SOURCE.name

    raw = raw_machine()
    model = RawModel(instance, ctx)
    raw.add_model(model, initial=source)
    event = raw.events[TRIGGER]
    table = DictTable()
    plain = RawModel(instance, ctx)
    plain.state = source

    def ours(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            fire(TRIGGER, ctx)
        return time.perf_counter() - start

    def ours_ctx(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            fire(TRIGGER, GuardContext(TRIGGER, Caller.admin(), instance))
        return time.perf_counter() - start

    def raw_event(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            model.state = source
            event.trigger(model)
        return time.perf_counter() - start

    def raw_ctx(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            model.state = source
            model.ctx = GuardContext(TRIGGER, Caller.admin(), instance)
            event.trigger(model)
        return time.perf_counter() - start

    def raw_by_name(n: int) -> float:
        by_name = model.trigger
        start = time.perf_counter()
        for _ in range(n):
            model.state = source
            by_name(TRIGGER)
        return time.perf_counter() - start

    def by_dict(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            plain.state = source
            table.fire(plain, TRIGGER)
        return time.perf_counter() - start

    # Every variant must really take the step before it is timed.
    state = fire(TRIGGER, ctx).state
    model.state = source
    checks = {
        OURS: state.name,
        RAW: model.state if event.trigger(model) else "refused",
        DICT: plain.state if table.fire(plain, TRIGGER) else "refused",
    }
    for name, reached in checks.items():
        if reached != DEST.name:
            raise BenchmarkError(f"{name}: {TRIGGER} reached {reached}, expected {DEST.name}")
    if len(table) != edge_count():
        raise BenchmarkError("the dict table lost edges")

    return {
        OURS: ours,
        OURS_CTX: ours_ctx,
        RAW: raw_event,
        RAW_CTX: raw_ctx,
        RAW_BY_NAME: raw_by_name,
        DICT: by_dict,
    }


def run(settings: Settings) -> StepResult:
    variants = _variants()
    names = list(variants)
    batch = settings.step_batch
    for runner in variants.values():  # warm-up
        runner(max(1, batch // 10))
    samples: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(settings.step_reps):
        # Interleave the variants, rotating their order, so that a slow spell of the
        # machine hits all of them alike.
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            with gc_paused():
                seconds = variants[name](batch)
            samples[name].append(seconds / batch * 1e9)
    ns = {name: spread(values) for name, values in samples.items()}

    base = ns[RAW].median
    table = Table(
        [
            "variant",
            "min ns/step",
            "median ns/step",
            "max ns/step",
            "ratio to raw `transitions` (median)",
        ]
    )
    for name in names:
        s = ns[name]
        table.rows.append(
            [name, fmt_int(s.min), fmt_int(s.median), fmt_int(s.max), fmt_ratio(s.median / base)]
        )
    ratio = ns[OURS].median / base
    ratio_ctx = ns[OURS_CTX].median / ns[RAW_CTX].median
    ratio_min = ns[OURS].min / ns[RAW].min
    verdicts = [
        Verdict(
            "(a) one guarded step, ours / raw `transitions`",
            f"{fmt_ratio(ratio)} ({fmt_int(ns[OURS].median)} vs {fmt_int(base)} ns; "
            f"ratio of minima {fmt_ratio(ratio_min)})",
            f"≤ {TARGET_RATIO}x",
            ratio <= TARGET_RATIO,
        ),
        Verdict(
            "(a) same, both building the `GuardContext` per step",
            f"{fmt_ratio(ratio_ctx)} ({fmt_int(ns[OURS_CTX].median)} vs "
            f"{fmt_int(ns[RAW_CTX].median)} ns)",
            f"≤ {TARGET_RATIO}x",
            ratio_ctx <= TARGET_RATIO,
        ),
    ]

    instance = _instance()
    ctx = GuardContext(TRIGGER, Caller.admin(), instance)
    steps = batch

    def work() -> None:
        for _ in range(steps):
            MACHINE.fire(TRIGGER, ctx)

    prof = profile(work, steps, "step")

    how = (
        f"Each variant fires `{TRIGGER}` from `{SOURCE.name}` to `{DEST.name}` through the "
        f"same {len(MACHINE.rules)} rules ({edge_count()} edges, {len(MACHINE.states)} states) "
        "and the same guard objects (`require_vm_state`, `require_expected_task_state`). "
        "The raw `transitions.Machine` is built from `MACHINE.rules` (one edge per "
        "trigger and source, conditions = closures returning `guard(ctx) is None`, "
        "`send_event=True`, `auto_transitions=False`), with one model attached by "
        "`add_model`; its steps first reset `model.state` to the source (an attribute store; "
        "the dict table does the same). The package's machine does not mutate the record, "
        "so it fires from the same record each time. A timed batch is "
        f"{fmt_int(batch)} steps with the cyclic GC paused; the variants are interleaved, "
        f"{settings.step_reps} batches each, and the table shows min/median/max ns per step "
        "including the loop. The ratio is median/median in this run; the verdict row uses "
        "the prebuilt-context pair (same work on both sides), the second row the literal "
        "call of the issue against a baseline that also builds its context per step."
    )
    section = Section(
        title="(a) One guarded step",
        how=how,
        tables=[table],
        verdicts=verdicts,
        details=[
            (
                f"Profile of {fmt_int(steps)} `MACHINE.fire` steps: top 15 by own time",
                prof.table("tottime").markdown(),
            ),
        ],
        summary=[
            f"  {name}: median {fmt_int(ns[name].median)} ns/step "
            f"(min {fmt_int(ns[name].min)}), {fmt_ratio(ns[name].median / base)} of raw"
            for name in names
        ],
    )
    return StepResult(section, ns)
