"""(e) The exhaustive model check: the engine against its baseline, and the issue's targets.

*Engines on one configuration.* 2 instances x 3 hosts with the default
:class:`~coldmig_fsm.verification.model_check.Bounds` (2 API requests per trace, at most 2
per instance, 1 injected fault or lost message per trace, races on): the reference engine
(``engine="reference"``: the checker before issue 14, a ``deepcopy`` of the cloud per
transition and whole abstract states hashed), the snapshot engine without symmetry
reduction (it explores exactly the same states and transitions, so states per second
compare like with like) and with it. Each is run in this same run, one process, repeated
(the median reported); the ratios divide this run's figures.

*The checker as the issue found it.* Issue 14's "today's checker" is the one of commit
``fa0c56b`` (``coldmig_fsm.verify``: 5,112 states in 7.6 s then). Its sources are taken
from git (``git archive``) into a temporary directory and it is run in a child process on
the same configuration, alternately with the current checker, CPU seconds of each
process compared (the median of the runs). Both explore "2 x 3 with faults", but the
abstraction has changed since (the renumbered request ids, symmetry), so they count
different states: its row is states per second, not a like-for-like space. Without git
or that commit (a tarball), the row says so and the ratio is left out.

*The roles' share.* The snapshot engine's configuration (no symmetry, no liveness) is
searched once more with the time spent inside the roles summed (a delivery, a restart,
``reconcile``, the clock, an API request's guards and submit: the outermost of those
calls): the states divided by that time is the most any checker that runs these roles
for these transitions could reach, however little its own work cost, and its ratio to
the reference engine bounds what the states-per-second target can measure.

*Targets.* 2 instances x 3 hosts with 3 requests per trace, as many per instance
(``Bounds(operations=3)``, what the issue timed as ``coldmig verify --operations 3``),
symmetry reduction and liveness on, each fully explored once: with 1 fault on one core,
and with 2 faults on two workers; bytes per visited state (the fingerprint tables,
budgets and liveness graph, by ``sys.getsizeof``) of the first, and where its transitions
went (``CheckResult.by_action``: per kind of action, its transitions and the new states
they reached). A last table compares the ways to reach a state's successor: restoring a
snapshot (what the checker does), copying the cloud (``clone``, what it did) and
replaying the trace.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from coldmig_fsm.roles.api import ComputeAPI
from coldmig_fsm.runners.cloud import Cloud
from coldmig_fsm.verification.explorer import Action, apply, clone
from coldmig_fsm.verification.model_check import (
    KNOWN_ISSUES,
    Bounds,
    CheckResult,
    initial_cloud,
    model_check,
)

from ._common import BenchmarkError, Section, Settings, Table, Verdict, fmt_int, fmt_num

__all__ = ["run"]

SPEED_TARGET = 10.0  # states per second against the reference engine
ONE_FAULT_SECONDS = 20.0
TWO_FAULT_SECONDS = 60.0
BYTES_TARGET = 200.0
CONFIGS = ((1, 2, False), (1, 2, True), (2, 3, False), (2, 3, True))


FILED_COMMIT = "fa0c56b"
"""The commit of the checker issue 14 measured ("today's checker")."""
ROOT = Path(__file__).resolve().parent.parent
_FILED_RUN = """
import json, time
from coldmig_fsm.verify import KNOWN_ISSUES, initial_cloud, model_check
started = time.process_time()
result = model_check(lambda: initial_cloud(2, 3), faults=True, ignore=KNOWN_ISSUES)
seconds = time.process_time() - started
print(json.dumps([result.ok, result.states, result.transitions, seconds]))
"""
_CURRENT_RUN = """
import json, time
from coldmig_fsm.verification.model_check import Bounds, initial_cloud, model_check
started = time.process_time()
result = model_check(lambda: initial_cloud(2, 3), Bounds(), faults=True)
seconds = time.process_time() - started
print(json.dumps([result.ok, result.states, result.transitions, seconds]))
"""


def _filed_sources(into: Path) -> Path | None:
    """The ``src`` directory of :data:`FILED_COMMIT`, unpacked under ``into`` (``None``:
    no git history here)."""
    done = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", FILED_COMMIT, "src"],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        return None
    archive = into / "filed.tar"
    archive.write_bytes(done.stdout)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def _child_run(source: Path, script: str) -> tuple[int, int, float]:
    """(states, transitions, CPU seconds) of ``script`` run on ``source``'s package."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise BenchmarkError(f"model check in a child process failed: {done.stderr[-2000:]}")
    ok, states, transitions, seconds = json.loads(done.stdout.splitlines()[-1])
    if not ok:
        raise BenchmarkError(f"model check of {source} found a violation")
    return states, transitions, seconds


def _against_filed(reps: int) -> tuple[Table, float | None]:
    """The checker of :data:`FILED_COMMIT` and the current one, alternately, in child
    processes; the table and the ratio of their states per CPU second."""
    table = Table(["2 x 3, default bounds, faults", "states", "transitions", "CPU s", "states/s"])
    with tempfile.TemporaryDirectory() as tmp:
        filed = _filed_sources(Path(tmp))
        current = ROOT / "src"
        if filed is None:
            table.rows.append([f"checker of {FILED_COMMIT}: no git history here", "", "", "", ""])
            return table, None
        runs: dict[str, list[tuple[int, int, float]]] = {"filed": [], "current": []}
        for _ in range(reps):
            runs["filed"].append(_child_run(filed, _FILED_RUN))
            runs["current"].append(_child_run(current, _CURRENT_RUN))
    rates = {}
    for name, label in (
        ("filed", f"the checker issue 14 measured ({FILED_COMMIT})"),
        ("current", "this checker (symmetry, liveness)"),
    ):
        states, transitions, _ = runs[name][-1]
        seconds = statistics.median(r[2] for r in runs[name])
        rates[name] = states / seconds
        table.rows.append(
            [
                label,
                fmt_int(states),
                fmt_int(transitions),
                fmt_num(seconds, 2),
                fmt_int(rates[name]),
            ]
        )
    return table, rates["current"] / rates["filed"]


TRACE = (
    Action("migrate", "vm1"),
    Action("step"),
    Action("step"),
    Action("step"),
    Action("step"),
    Action("confirm_resize", "vm1"),
    Action("step"),
)


def _replay_ms(reps: int) -> float:
    started = time.perf_counter()
    for _ in range(reps):
        cloud = initial_cloud(2, 3)
        for action in TRACE:
            apply(cloud, action)
    return (time.perf_counter() - started) / reps * 1000


def _clone_ms(reps: int) -> float:
    cloud = initial_cloud(2, 3)
    for action in TRACE:
        apply(cloud, action)
    started = time.perf_counter()
    for _ in range(reps):
        clone(cloud)
    return (time.perf_counter() - started) / reps * 1000


def _restore_ms(reps: int) -> float:
    cloud = initial_cloud(2, 3)
    for action in TRACE:
        apply(cloud, action)
    saved = cloud.snapshot()
    started = time.perf_counter()
    for _ in range(reps):
        cloud.restore(saved)
    return (time.perf_counter() - started) / reps * 1000


ROLE_ENTRIES = (
    (Cloud, ("step", "request", "restart_compute", "reconcile", "advance_clock")),
    (ComputeAPI, ("prepare", "submit")),
)
"""Where a transition enters the roles: a delivery, a restart, ``reconcile``, the clock,
and an API request's guards and submit (a lock through ``Cloud.request``)."""


def _roles_seconds(**options: object) -> tuple[CheckResult, float]:
    """The default configuration searched once with the time spent inside the roles
    (:data:`ROLE_ENTRIES`, outermost calls only) summed; the explorer's own work around
    them (choosing the message, arming a fault) is not counted."""
    spent = [0.0]
    depth = [0]

    def timed(method: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            depth[0] += 1
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    spent[0] += time.perf_counter() - started

        return run

    saved = [(cls, name, cls.__dict__[name]) for cls, names in ROLE_ENTRIES for name in names]
    try:
        for cls, name, method in saved:
            setattr(cls, name, timed(method))
        result = _checked(
            model_check(lambda: initial_cloud(2, 3), Bounds(), faults=True, **options),  # type: ignore[arg-type]
            f"2 x 3 {options}, timed",
        )
    finally:
        for cls, name, method in saved:
            setattr(cls, name, method)
    return result, spent[0]


def _checked(result: CheckResult, what: str) -> CheckResult:
    if not result.ok or not result.complete:
        raise BenchmarkError(f"model check {what}: {result.describe()}")
    return result


def _median_run(reps: int, **options: object) -> tuple[CheckResult, float]:
    results = [
        _checked(
            model_check(lambda: initial_cloud(2, 3), Bounds(), faults=True, **options),  # type: ignore[arg-type]
            f"2 x 3 {options}",
        )
        for _ in range(reps)
    ]
    return results[-1], statistics.median(r.seconds for r in results)


def run(settings: Settings) -> Section:
    """Model-check each configuration; return the report section."""
    reps = 1 if settings.quick else 3
    engines = Table(
        [
            "2 x 3, default bounds, faults",
            "states",
            "transitions",
            "seconds",
            "states/s",
            "states/s vs reference",
            "time vs reference",
        ]
    )
    reference, reference_s = _median_run(reps, engine="reference")
    plain, plain_s = _median_run(reps, symmetry=False, liveness=False)
    reduced, reduced_s = _median_run(reps)
    if (plain.states, plain.transitions) != (reference.states, reference.transitions):
        raise BenchmarkError("the engines explored different spaces")
    base_rate = reference.states / reference_s
    for name, result, seconds in (
        ("reference engine (deep copies)", reference, reference_s),
        ("snapshot engine, no symmetry, no liveness", plain, plain_s),
        ("snapshot engine, symmetry and liveness", reduced, reduced_s),
    ):
        rate = result.states / seconds
        engines.rows.append(
            [
                name,
                fmt_int(result.states),
                fmt_int(result.transitions),
                fmt_num(seconds, 2),
                fmt_int(rate),
                f"{rate / base_rate:.2f}x",
                f"{reference_s / seconds:.2f}x faster",
            ]
        )

    table = Table(["instances x hosts", "faults", "states", "transitions", "depth", "seconds"])
    for instances, hosts, faults in CONFIGS:
        result = _checked(
            model_check(
                lambda i=instances, h=hosts: initial_cloud(i, h),  # type: ignore[misc]
                Bounds(),
                faults=faults,
                ignore=KNOWN_ISSUES,
            ),
            f"{instances} x {hosts}",
        )
        table.rows.append(
            [
                f"{instances} x {hosts}",
                "yes" if faults else "no",
                fmt_int(result.states),
                fmt_int(result.transitions),
                str(result.depth),
                fmt_num(result.seconds, 2),
            ]
        )

    speed = (plain.states / plain_s) / base_rate
    filed_table, filed_speed = _against_filed(reps)
    timed, roles_s = _roles_seconds(symmetry=False, liveness=False)
    ceiling = timed.states / roles_s
    roles = Table(
        ["2 x 3, default bounds, faults, no symmetry", "seconds", "states/s", "vs reference"]
    )
    roles.rows.append(
        [
            "the search, its roles' calls timed",
            fmt_num(timed.seconds, 2),
            fmt_int(timed.states / timed.seconds),
            f"{timed.states / timed.seconds / base_rate:.2f}x",
        ]
    )
    roles.rows.append(
        [
            f"inside the roles only ({100 * roles_s / timed.seconds:.0f} % of it): the most any "
            "checker running them for these transitions could reach",
            fmt_num(roles_s, 2),
            fmt_int(ceiling),
            f"{ceiling / base_rate:.2f}x",
        ]
    )
    verdicts = [
        Verdict(
            "(e) states/s on one core against the reference engine (same states)",
            f"{speed:.2f}x",
            f">= {SPEED_TARGET:g}x",
            speed >= SPEED_TARGET,
        )
    ]
    if filed_speed is not None:
        verdicts.append(
            Verdict(
                f"(e) states/s on one core against the checker issue 14 measured ({FILED_COMMIT})",
                f"{filed_speed:.2f}x",
                f">= {SPEED_TARGET:g}x",
                filed_speed >= SPEED_TARGET,
            )
        )
    tables = [engines, filed_table, roles, table]
    if not settings.quick:
        targets = Table(["2 x 3, 3 requests", "workers", "states", "transitions", "seconds"])
        one = _checked(
            model_check(lambda: initial_cloud(2, 3), Bounds(operations=3), faults=True),
            "3 requests, 1 fault",
        )
        two = _checked(
            model_check(
                lambda: initial_cloud(2, 3),
                Bounds(operations=3, faults=2),
                faults=True,
                workers=2,
            ),
            "3 requests, 2 faults",
        )
        for name, result in (("1 fault", one), ("2 faults", two)):
            targets.rows.append(
                [
                    name,
                    str(result.workers),
                    fmt_int(result.states),
                    fmt_int(result.transitions),
                    fmt_num(result.seconds, 1),
                ]
            )
        tables.append(targets)
        kinds = Table(["2 x 3, 3 requests, 1 fault: action", "transitions", "share", "new states"])
        for tally in sorted(one.by_action, key=lambda t: (-t.transitions, t.kind)):
            kinds.rows.append(
                [
                    tally.kind,
                    fmt_int(tally.transitions),
                    f"{100 * tally.transitions / one.transitions:.1f} %",
                    fmt_int(tally.states),
                ]
            )
        tables.append(kinds)
        verdicts += [
            Verdict(
                "(e) 2 x 3, 3 requests, 1 fault, one core, fully explored",
                f"{fmt_num(one.seconds, 1)} s",
                f"<= {ONE_FAULT_SECONDS:g} s",
                one.seconds <= ONE_FAULT_SECONDS,
            ),
            Verdict(
                "(e) 2 x 3, 3 requests, 2 faults, two workers, fully explored",
                f"{fmt_num(two.seconds, 1)} s",
                f"<= {TWO_FAULT_SECONDS:g} s",
                two.seconds <= TWO_FAULT_SECONDS,
            ),
            Verdict(
                "(e) bytes per visited state (3 requests, 1 fault)",
                f"{fmt_num(one.bytes_per_state, 0)} B",
                f"<= {BYTES_TARGET:g} B",
                one.bytes_per_state <= BYTES_TARGET,
            ),
        ]
    expand = Table(["reaching a state after a 7-action trace", "ms"])
    expand.rows.append(["restore its snapshot (`Cloud.restore`)", fmt_num(_restore_ms(500), 3)])
    expand.rows.append(["copy the cloud (`clone`)", fmt_num(_clone_ms(200), 3)])
    expand.rows.append(["replay the trace on a new cloud", fmt_num(_replay_ms(50), 3)])
    tables.append(expand)
    return Section(
        title="(e) Exhaustive model check",
        how=__doc__ or "",
        tables=tables,
        verdicts=verdicts,
        summary=[
            f"states/s against the reference engine: {speed:.2f}x "
            f"({fmt_int(plain.states / plain_s)} vs {fmt_int(base_rate)})"
        ],
    )
