"""(d) A migrate+confirm cycle on Nova 34's own harness next to ours, in the same run.

Both sides run the same scenario file (two hosts, one instance, ``cycles`` migrate+confirm
pairs) through their scenario runner: Nova's through ``conformance/nova_adapter.py`` in the
Nova virtualenv (real API, conductor, scheduler, placement, computes with Nova's fake
driver, SQLite), ours through :func:`coldmig_fsm.run_scenario` on the fake cloud in memory.

Both sides are timed the same way: a step lasts from the moment its request is sent until
the step's last notification is emitted (Nova's versioned notifications; ours in the
store), on the wall clock and in process CPU time. That leaves out on both sides what a
runner does after a step has ended (Nova's adapter then waits for three quiet 10 ms polls;
ours settles the message queue and reads the records). While a Nova step runs, the adapter
keeps polling (10 ms sleeps, which yield to Nova's green threads, and a check of the RPC
queues and the instance); the checks are timed and subtracted, the sleeps cost Nova
nothing. The timestamps come from hooks of the same kind on both sides: the adapter's
(``_Probe.step_started``, ``notified_at``, ``poll_checks``) and, here, wrappers around
``Cloud``'s request methods and ``MemoryStore.add_notification``.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coldmig_fsm import Cloud, MemoryStore, load_scenario, run_scenario
from coldmig_fsm.harness.conformance import run_nova

from ._common import BenchmarkError, Section, Settings, Table, fmt_num, fmt_ratio

__all__ = ["run"]

NOVA_PYTHON = Path(".nova-venv/bin/python")
REQUESTS = ("migrate", "confirm_resize")

_HEADER = """\
hosts:
  - {name: host-a, vcpus: 8, ram_mb: 16384, disk_gb: 200}
  - {name: host-b, vcpus: 8, ram_mb: 16384, disk_gb: 200}
flavors:
  - {id: m1.tiny, vcpus: 1, ram_mb: 512, root_gb: 1}
instances:
  - {name: vm1, flavor: m1.tiny, host: host-a}
steps:
"""


def _scenario(cycles: int) -> str:
    steps = "".join(
        "  - {op: migrate, instance: vm1}\n  - {op: confirm_resize, instance: vm1}\n"
        for _ in range(cycles)
    )
    return _HEADER + steps


@dataclass(frozen=True)
class StepTime:
    """One step, from its request to its last notification."""

    op: str
    wall: float  # seconds, the runner's own polling subtracted
    cpu: float  # process CPU seconds, ditto
    notifications: int
    polling_wall: float = 0.0  # what was subtracted
    polling_cpu: float = 0.0


@dataclass(frozen=True)
class RunTime:
    """One run of the scenario: its steps."""

    steps: tuple[StepTime, ...]

    def per_cycle(self, attribute: str) -> float:
        cycles = sum(1 for s in self.steps if s.op == "migrate")
        return float(sum(getattr(s, attribute) for s in self.steps)) / cycles

    def per_step(self, op: str, attribute: str = "wall") -> float:
        return float(statistics.median(getattr(s, attribute) for s in self.steps if s.op == op))


# -- ours ---------------------------------------------------------------------------------


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


@contextlib.contextmanager
def _stamps(log: list[tuple[str, float, float]]) -> Iterator[None]:
    """Record ``(kind, wall, cpu)`` when a request is sent (before ``Cloud.migrate`` /
    ``Cloud.confirm_resize`` run) and after each notification is stored."""
    saved: dict[tuple[type[Any], str], Callable[..., Any]] = {}

    def wrap(cls: type[Any], name: str, before: bool) -> None:
        original = getattr(cls, name)
        saved[(cls, name)] = original

        def stamped(*args: Any, **kwargs: Any) -> Any:
            if before:
                # Cloud.request(op, ...): the scenario runner asks for every operation so.
                op = str(args[1]) if name == "request" and len(args) > 1 else name
                if op in REQUESTS:
                    log.append((op, *_clocks()))
                return original(*args, **kwargs)
            result = original(*args, **kwargs)
            log.append(("notification", *_clocks()))
            return result

        setattr(cls, name, stamped)

    try:
        wrap(Cloud, "request", before=True)
        wrap(MemoryStore, "add_notification", before=False)
        yield
    finally:
        for (cls, name), original in saved.items():
            setattr(cls, name, original)


def _steps_from(log: list[tuple[str, float, float]]) -> tuple[StepTime, ...]:
    """Cut the log into steps: a request stamp starts one, its last notification ends it."""
    starts = [n for n, (kind, _, _) in enumerate(log) if kind != "notification"]
    steps = []
    for start, end in zip(starts, [*starts[1:], len(log)], strict=True):
        op, wall0, cpu0 = log[start]
        notified = log[start + 1 : end]
        if not notified:
            raise BenchmarkError(f"ours: a {op} step sent no notification")
        _, wall1, cpu1 = notified[-1]
        steps.append(StepTime(op, wall1 - wall0, cpu1 - cpu0, len(notified)))
    return tuple(steps)


def _ours(path: Path, runs: int) -> list[RunTime]:
    scenario = load_scenario(path)
    results = []
    for _ in range(runs):
        log: list[tuple[str, float, float]] = []
        with _stamps(log):
            output = run_scenario(scenario)
        if not all(step["ok"] for step in output["steps"]):
            raise BenchmarkError("a cycle through our scenario runner did not succeed")
        results.append(RunTime(_steps_from(log)))
    return results


# -- Nova ---------------------------------------------------------------------------------


def _nova_run(result: dict[str, Any]) -> RunTime:
    steps = result["steps"]
    timings = result["nova_adapter"].get("step_timings")
    if timings is None:
        raise BenchmarkError("the Nova adapter reports no step_timings (an older adapter?)")
    if not all(step["ok"] for step in steps):
        raise BenchmarkError("a cycle on Nova's harness did not succeed")
    times = []
    for step, timing in zip(steps, timings, strict=True):
        if timing is None:
            raise BenchmarkError(f"Nova: a {step['op']} step has no notification to time")
        times.append(
            StepTime(
                step["op"],
                timing["to_last_notification_s"] - timing["adapter_poll_check_s"],
                timing["cpu_to_last_notification_s"] - timing["adapter_poll_check_cpu_s"],
                timing["notifications"],
                timing["adapter_poll_check_s"],
                timing["adapter_poll_check_cpu_s"],
            )
        )
    return RunTime(tuple(times))


def _nova(directory: Path, text: str, runs: int) -> list[RunTime]:
    # One file per run: the adapter starts a fresh harness for each (keyed by path).
    paths = []
    for number in range(runs):
        path = directory / f"nova-run-{number + 1}.yaml"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    results = run_nova(paths, NOVA_PYTHON)
    return [_nova_run(results[str(path)]) for path in paths]


# -- the report ---------------------------------------------------------------------------


def _median(runs: list[RunTime], attribute: str) -> float:
    return statistics.median(r.per_cycle(attribute) for r in runs)


def _row(name: str, runs: list[RunTime], ours: list[RunTime]) -> list[str]:
    wall = [r.per_cycle("wall") * 1e3 for r in runs]
    cpu = [r.per_cycle("cpu") * 1e3 for r in runs]
    return [
        name,
        str(len(runs)),
        f"{fmt_num(min(wall), 3)} / {fmt_num(statistics.median(wall), 3)}",
        fmt_num(statistics.median(cpu), 3),
        fmt_num(statistics.median(r.per_step("migrate") * 1e3 for r in runs), 3),
        fmt_num(statistics.median(r.per_step("confirm_resize") * 1e3 for r in runs), 3),
        fmt_num(statistics.median(r.per_cycle("polling_wall") * 1e3 for r in runs), 3),
        str(sum(s.notifications for s in runs[0].steps[:2])),
        fmt_ratio(_median(runs, "wall") / _median(ours, "wall")),
        fmt_ratio(_median(runs, "cpu") / _median(ours, "cpu")),
    ]


def run(settings: Settings) -> Section:
    cycles = 2 if settings.quick else 5
    runs = 2 if settings.quick else 5
    section = Section(
        title="(d) A migrate+confirm cycle on Nova 34's harness vs ours",
        how=(
            f"One scenario file with {cycles} migrate+confirm cycles of one instance between "
            f"two hosts, run {runs} times on each side through its scenario runner: "
            "`conformance/nova_adapter.py` in the Nova virtualenv (`make conformance-env`; "
            "Nova's functional-test harness in one process: REST API, conductor, scheduler, "
            "placement, two computes with Nova's fake driver, SQLite; a fresh harness per "
            "run) and `coldmig_fsm.run_scenario` (fake cloud, `MemoryStore`). Each step is "
            "timed from the moment its request is sent to its last notification (Nova's "
            "versioned notifications, e.g. `instance.resize_finish.end`; ours as stored), "
            "on the wall clock and in process CPU time; a cycle is the sum of its two steps. "
            "What a runner does once a step has ended is left out on both sides (Nova's "
            "adapter waits for three quiet 10 ms polls, ours settles the queue). While a "
            "Nova step runs, the adapter's polling checks (queues and instance) are timed "
            "and subtracted (column *adapter polling*); its 10 ms sleeps yield to Nova's "
            "green threads and cost nothing. Nova's wall time also contains its fake RPC "
            "transport's idle waits (oslo.messaging's fake driver polls its queues with "
            "sleeps of up to 50 ms) and whatever else the shared machine runs; CPU time "
            "leaves waiting out (not the CPU that Nova's pollers spend waking up), so the "
            "CPU ratio is the closer measure of work done. No target: the figures are "
            "reported, there is no verdict."
        ),
    )
    if not NOVA_PYTHON.exists():
        section.notes.append(
            "Not measured in this run: no Nova environment (`make conformance-env` makes it)."
        )
        section.summary.append("not measured (no .nova-venv)")
        return section
    text = _scenario(cycles)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cycles.yaml"
        path.write_text(text, encoding="utf-8")
        ours = _ours(path, runs)
        nova = _nova(Path(tmp), text, runs)
    table = Table(
        [
            "system",
            "runs",
            "wall ms/cycle, min / median",
            "CPU ms/cycle (median)",
            "migrate ms (median)",
            "confirm ms (median)",
            "adapter polling subtracted ms/cycle",
            "notifications/cycle",
            "wall ratio to ours",
            "CPU ratio to ours",
        ]
    )
    table.rows.append(_row("Nova 34.0.0 functional harness", nova, ours))
    table.rows.append(_row("coldmig_fsm `run_scenario`, in memory", ours, ours))
    section.tables.append(table)
    wall_ratio = _median(nova, "wall") / _median(ours, "wall")
    cpu_ratio = _median(nova, "cpu") / _median(ours, "cpu")
    section.summary.append(
        f"  Nova {_median(nova, 'wall') * 1e3:.1f} ms/cycle wall, "
        f"{_median(nova, 'cpu') * 1e3:.1f} ms CPU; ours {_median(ours, 'wall') * 1e3:.3f} ms "
        f"wall, {_median(ours, 'cpu') * 1e3:.3f} ms CPU (medians of {runs} runs); "
        f"Nova / ours: {fmt_ratio(wall_ratio)} wall, {fmt_ratio(cpu_ratio)} CPU (no target)"
    )
    return section
