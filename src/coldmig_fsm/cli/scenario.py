"""``coldmig scenario run``: scenario files run on the fake cloud, outcomes as JSON.

A file whose ``expect`` block does not match is reported on stderr (exit 1), an invalid
one too (exit 2); with several files the command exits with the worst status of them.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import attrs
import typer
from rich.markup import escape

from coldmig_fsm.cli._output import err, fail, log, print_json
from coldmig_fsm.exceptions import ScenarioError
from coldmig_fsm.harness.scenario import Scenario, load_scenario, match_expectations, run_scenario

__all__ = ["scenario_run"]

_STDIN = "<stdin>"


def _load(file: Path) -> Scenario:
    """``load_scenario``, also for ``-`` (the scenario on stdin, named ``<stdin>``)."""
    if str(file) != "-":
        return load_scenario(file)
    with tempfile.TemporaryDirectory(prefix="coldmig-") as tmp:
        copy = Path(tmp, "stdin.yaml")
        copy.write_text(sys.stdin.read(), encoding="utf-8")
        try:
            scenario = load_scenario(copy)
        except ScenarioError as error:
            raise ScenarioError(str(error).replace(str(copy), _STDIN)) from None
    return attrs.evolve(scenario, path=_STDIN)


def _run_file(file: Path) -> tuple[int, dict[str, Any] | None]:
    """(exit status, outcome) of one scenario file; problems are reported on stderr."""
    log.info("scenario %s", file)
    try:
        scenario = _load(file)
    except ScenarioError as error:
        err.print(
            f"[bold red]invalid scenario[/]: {escape(str(error))}", highlight=False, soft_wrap=True
        )
        return 2, None
    output = run_scenario(scenario)
    if scenario.expect is not None:
        problems = match_expectations(scenario.expect, output)
        if problems:
            err.print(
                f"[bold red]{escape(scenario.path)}: expect did not match[/]",
                highlight=False,
                soft_wrap=True,
            )
            for line in problems:
                err.print(f"  - {escape(line)}", highlight=False, soft_wrap=True)
            return 1, output
    return 0, output


def scenario_run(
    files: Annotated[
        list[Path],
        typer.Argument(
            metavar="FILE", help="Scenario files (YAML or JSON); - reads one from stdin."
        ),
    ],
    compact: Annotated[bool, typer.Option(help="One-line JSON.")] = False,
) -> None:
    """Run scenarios on the fake cloud and print each outcome as JSON.

    With one file, its outcome; with several, an object from each file name to its
    outcome. Exit 0 when every file ran and matched its expect block, 1 when one did not
    match (the diff on stderr), 2 when one is invalid: the worst of the files.
    """
    if sum(str(f) == "-" for f in files) > 1:
        fail("- (stdin) is given more than once: stdin holds one scenario")
    worst = 0
    outcomes: dict[str, dict[str, Any]] = {}
    for file in files:
        status, output = _run_file(file)
        worst = max(worst, status)
        if output is not None:
            outcomes[_STDIN if str(file) == "-" else str(file)] = output
    if len(files) == 1:
        if outcomes:
            print_json(next(iter(outcomes.values())), compact=compact)
    else:
        print_json(outcomes, compact=compact)
    if worst:
        raise typer.Exit(worst)
