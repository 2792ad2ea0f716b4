"""``coldmig verify``: the model checker over a small cloud, within the bounds given.

Exit 0 when no reachable state violates an invariant and every state can settle, 1 with
the shortest counterexample (of an invariant, or of liveness), 3 when ``--max-states``
stopped the search first, 130 when interrupted (Ctrl-C: one line says how far it got);
``--json`` prints the same as data. ``--emit-scenario FILE``
writes the counterexample as a scenario file
(:func:`coldmig_fsm.verification.counterexample.to_scenario`); with no counterexample it
says so and writes nothing (the exit status stays 0 or 3). A search that lasts more than
a few seconds shows its progress on a terminal (states, frontier, states per second).
"""

from __future__ import annotations

import enum
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from coldmig_fsm.cli._output import JSON_OPTION, err, fail, log, out, print_json
from coldmig_fsm.runners.cloud import Cloud
from coldmig_fsm.verification.counterexample import to_scenario
from coldmig_fsm.verification.model_check import (
    KNOWN_ISSUES,
    Bounds,
    CheckResult,
    SearchProgress,
    initial_cloud,
    model_check,
)

__all__ = ["verify"]

_MAX_HOSTS = 26  # host-a ... host-z
_QUIET_SECONDS = 3.0  # a search shorter than this shows no progress display


class Engine(enum.StrEnum):
    SNAPSHOT = "snapshot"
    REFERENCE = "reference"


class _ProgressDisplay:
    """The live line of a long search (on stderr, on a terminal only), started once the
    search has run for :data:`_QUIET_SECONDS`."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.live: Live | None = None
        self.last: SearchProgress | None = None  # what an interrupted search reports

    def __call__(self, progress: SearchProgress) -> None:
        self.last = progress
        if not err.is_terminal or time.perf_counter() - self.started < _QUIET_SECONDS:
            return
        line = Text.from_markup(
            f"[bold]model check[/]: {progress.states:,} states, {progress.frontier:,} in the "
            f"frontier, depth {progress.depth}, {progress.states_per_second:,.0f} states/s"
        )
        if self.live is None:
            self.live = Live(line, console=err, transient=True, refresh_per_second=4)
            self.live.start()
        else:
            self.live.update(line)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()


def _verify_data(
    result: CheckResult, instances: int, hosts: int, bounds: Bounds, faults: bool
) -> dict[str, Any]:
    if not result.ok:
        verdict = "counterexample"
    elif not result.complete:
        verdict = "incomplete"
    else:
        verdict = "ok"
    return {
        "result": verdict,
        "instances": instances,
        "hosts": hosts,
        "bounds": {
            "operations": bounds.operations,
            "ops_per_instance": bounds.ops_per_instance,
            "faults": bounds.faults if faults else 0,
            "races": bounds.races,
            "max_states": bounds.max_states,
        },
        "engine": result.engine,
        "symmetry": result.symmetry,
        "workers": result.workers,
        "states": result.states,
        "transitions": result.transitions,
        "depth": result.depth,
        "seconds": round(result.seconds, 3),
        "states_per_second": round(result.states_per_second, 1),
        "complete": result.complete,
        "liveness_checked": result.liveness_checked,
        "fingerprint_bits": result.fingerprint_bits,
        "collision_probability": result.collision_probability,
        "bytes_per_state": round(result.bytes_per_state, 1),
        "failed": result.failed,
        "counterexample": None
        if result.counterexample is None
        else [str(a) for a in result.counterexample],
        "violations": list(result.violations),
        "by_action": [
            {"kind": t.kind, "transitions": t.transitions, "states": t.states}
            for t in result.by_action
        ],
    }


def verify(
    instances: Annotated[
        int,
        typer.Option(min=1, metavar="N", help="Instances: vm1 active, vm2 stopped, vm3 active..."),
    ] = 2,
    hosts: Annotated[
        int,
        typer.Option(
            min=1, max=_MAX_HOSTS, metavar="N", help="Fake compute hosts (host-a, host-b, ...)."
        ),
    ] = 3,
    operations: Annotated[
        int,
        typer.Option(min=1, metavar="N", help="API requests per trace, all instances together."),
    ] = 2,
    ops_per_instance: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            show_default=False,
            help="API requests each instance may receive per trace (default: as --operations).",
        ),
    ] = None,
    faults: Annotated[
        bool, typer.Option(help="Also inject driver faults, crashes and lost messages.")
    ] = False,
    fault_budget: Annotated[
        int | None,
        typer.Option(
            min=1, metavar="N", show_default="1", help="Faults per trace (needs --faults)."
        ),
    ] = None,
    races: Annotated[bool, typer.Option(help="Also race two requests on one instance.")] = True,
    max_states: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            show_default=False,
            help="Stop after N states (default: no limit): 'incomplete: bound reached', exit 3.",
        ),
    ] = None,
    symmetry: Annotated[
        bool,
        typer.Option(help="Expand one state per renaming of interchangeable hosts and instances."),
    ] = True,
    liveness: Annotated[
        bool,
        typer.Option(help="Also check that every state can settle without new requests or faults."),
    ] = True,
    workers: Annotated[
        int,
        typer.Option(
            min=1, metavar="N", help="Processes sharing the search (the same result as one)."
        ),
    ] = 1,
    engine: Annotated[
        Engine,
        typer.Option(
            help="'reference': the deep-copy checker of before, the benchmark's baseline "
            "(one process, no symmetry, no liveness)."
        ),
    ] = Engine.SNAPSHOT,
    ignore_known: Annotated[
        bool,
        typer.Option(
            help="Skip the known core issues (coldmig_fsm.verification.model_check.KNOWN_ISSUES)."
        ),
    ] = False,
    emit_scenario: Annotated[
        Path | None,
        typer.Option(
            "--emit-scenario",
            metavar="FILE",
            dir_okay=False,
            help="Write the shortest counterexample to FILE as a scenario (a regression "
            "test: it fails while the bug is there); nothing is written without one.",
        ),
    ] = None,
    by_action: Annotated[
        bool,
        typer.Option(
            "--by-action",
            help="Also show, per kind of action, its transitions and the new states they "
            "reached (a complete search).",
        ),
    ] = False,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Model-check a small cloud exhaustively within the bounds given.

    Exit 0 when no reachable state violates an invariant, 1 with the shortest
    counterexample, 3 when --max-states stopped the search first, 130 when interrupted
    (Ctrl-C, on one line: how far it got). With --emit-scenario
    FILE the counterexample is also written to FILE as a scenario; with none, FILE is not
    written and the exit status is 0 or 3 as without it.
    """
    if fault_budget is not None and not faults:
        fail("--fault-budget needs --faults: without it no fault is injected")
    if engine is Engine.REFERENCE and workers != 1:
        fail("--engine reference runs in one process: drop --workers")
    per_instance = {} if ops_per_instance is None else {"ops_per_instance": ops_per_instance}
    bounds = Bounds(
        operations=operations,
        faults=1 if fault_budget is None else fault_budget,
        races=races,
        max_states=max_states,
        **per_instance,  # else Bounds' default: as many as --operations
    )
    reachable = min(operations, instances * bounds.ops_per_instance)
    if reachable < operations:
        log.warning(
            "at most %d requests per trace are reachable: %d instance(s) x %d per instance",
            reachable,
            instances,
            bounds.ops_per_instance,
        )

    def factory() -> Cloud:
        return initial_cloud(instances, hosts)

    display = _ProgressDisplay()
    try:
        result = model_check(
            factory,
            bounds,
            faults=faults,
            ignore=KNOWN_ISSUES if ignore_known else (),
            progress=lambda states, transitions: log.info(
                "explored %d states, %d transitions", states, transitions
            ),
            symmetry=symmetry and engine is Engine.SNAPSHOT,
            liveness=liveness and engine is Engine.SNAPSHOT,
            workers=workers,
            engine=engine.value,
            monitor=display,
        )
    except KeyboardInterrupt:
        display.stop()
        seen = display.last
        where = (
            "before the first layer was explored"
            if seen is None
            else f"after {seen.states:,} states ({seen.transitions:,} transitions, depth "
            f"{seen.depth}); none of them broke an invariant, the rest were not checked"
        )
        fail(f"interrupted {where}", status=130)
    finally:
        display.stop()
    status = 1 if not result.ok else (0 if result.complete else 3)
    written = None
    if emit_scenario is not None and result.counterexample is not None:
        text = to_scenario(
            result,
            factory,
            title=f"coldmig verify --instances {instances} --hosts {hosts}: a counterexample.",
        )
        try:
            emit_scenario.write_text(text)
        except OSError as error:
            fail(f"--emit-scenario: cannot write {emit_scenario}: {error.strerror}")
        written = str(emit_scenario)
    if as_json:
        data = _verify_data(result, instances, hosts, bounds, faults)
        if emit_scenario is not None:
            data["scenario"] = written
        print_json(data)
        raise typer.Exit(status)
    _print_verify(result, instances, hosts, bounds, faults)
    if by_action:
        _print_by_action(result)
    if emit_scenario is not None:
        if written is None:
            out.print(
                f"no counterexample: {escape(str(emit_scenario))} not written",
                highlight=False,
                soft_wrap=True,
            )
        else:
            out.print(
                f"scenario written to {escape(written)} (coldmig scenario run {escape(written)}"
                " fails while the bug is there)",
                highlight=False,
                soft_wrap=True,
            )
    raise typer.Exit(status)


def _print_by_action(result: CheckResult) -> None:
    """The transitions and new states of each kind of action, most transitions first."""
    if not result.by_action:
        out.print(
            "by action: counted for a complete search of the snapshot engine only",
            highlight=False,
        )
        return
    table = Table(title="by action")
    for column in ("action", "transitions", "share", "new states"):
        table.add_column(column, justify="left" if column == "action" else "right")
    total = result.transitions or 1
    for tally in sorted(result.by_action, key=lambda t: (-t.transitions, t.kind)):
        table.add_row(
            tally.kind,
            f"{tally.transitions:,}",
            f"{100 * tally.transitions / total:.1f} %",
            f"{tally.states:,}",
        )
    out.print(table)


def _print_verify(
    result: CheckResult, instances: int, hosts: int, bounds: Bounds, faults: bool
) -> None:
    table = Table(title=f"model check: {instances} instances x {hosts} hosts")
    table.add_column("bounds")
    table.add_column("states", justify="right")
    table.add_column("transitions", justify="right")
    table.add_column("depth", justify="right")
    table.add_column("seconds", justify="right")
    shown = (
        f"{bounds.operations} requests ({min(bounds.ops_per_instance, bounds.operations)} per "
        f"instance), {'races' if bounds.races else 'no races'}, "
        + (f"{bounds.faults} fault(s)" if faults else "no faults")
    )
    table.add_row(
        shown,
        f"{result.states:,}",
        f"{result.transitions:,}",
        str(result.depth),
        f"{result.seconds:.2f}",
    )
    out.print(table)
    out.print(_search_line(result), highlight=False, soft_wrap=True)
    if not result.ok:
        what = "liveness" if result.failed == "liveness" else "invariant"
        out.print(
            f"[bold red]counterexample[/] ({what}, {len(result.counterexample or ())} actions):",
            highlight=False,
        )
        for index, action in enumerate(result.counterexample or (), 1):
            out.print(f"  {index}. {escape(str(action))}", highlight=False)
        for violation in result.violations:
            out.print(f"  [red]violates[/]: {escape(violation)}", highlight=False, soft_wrap=True)
    elif not result.complete:
        out.print(
            f"[bold yellow]incomplete: bound reached[/]: --max-states {bounds.max_states} "
            f"stopped the search; no invariant violated in the {result.states:,} states "
            "explored, the rest were not checked",
            highlight=False,
            soft_wrap=True,
        )
    else:
        settles = ", and every state can settle" if result.liveness_checked else ""
        out.print(
            f"[bold green]no invariant violated[/] in any reachable state{settles}",
            highlight=False,
        )


def _search_line(result: CheckResult) -> str:
    """How the search ran: engine, reduction, workers, memory, fingerprint collisions."""
    parts = [
        f"engine {result.engine}",
        "symmetry reduction" if result.symmetry else "no symmetry reduction",
        f"{result.workers} worker(s)",
        f"{result.states_per_second:,.0f} states/s",
    ]
    if result.fingerprint_bits:
        if result.visited_bytes:  # measured when the search ran to its end
            parts.append(f"{result.bytes_per_state:.0f} bytes per visited state")
        parts.append(
            f"{result.fingerprint_bits}-bit fingerprints: probability of a collision "
            f"<= {result.collision_probability:.1e}"
        )
    return "search: " + ", ".join(parts)
