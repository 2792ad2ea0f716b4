"""``coldmig conformance``: the same scenarios through Nova 34 and through coldmig_fsm.

Nova runs in its own virtualenv (``make conformance-env``); each scenario's two outcomes
are compared and every difference is shown, the documented deliberate ones on request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from coldmig_fsm.cli._output import err, out
from coldmig_fsm.exceptions import ScenarioError
from coldmig_fsm.harness.conformance import compare, run_nova
from coldmig_fsm.harness.scenario import load_scenario, run_scenario

__all__ = ["conformance"]


def conformance(
    files: Annotated[
        list[Path], typer.Argument(metavar="FILE", help="Scenario files to run on both.")
    ],
    nova_python: Annotated[
        Path,
        typer.Option(metavar="FILE", help="Python of the Nova virtualenv (make conformance-env)."),
    ] = Path(".nova-venv/bin/python"),
    show_deliberate: Annotated[bool, typer.Option(help="List deliberate deviations.")] = False,
) -> None:
    """Run each scenario through Nova 34 and through coldmig_fsm; diff the outcomes.

    Exit 0 when every difference is a documented deliberate deviation, 1 otherwise,
    2 when a file is invalid or Nova cannot be run.
    """
    try:
        scenarios = [load_scenario(f) for f in files]
        nova = run_nova(files, nova_python)
    except (ScenarioError, FileNotFoundError, RuntimeError) as error:
        err.print(
            f"[bold red]conformance[/]: {escape(str(error))}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(2) from None
    agree = differ = 0
    for path, scenario in zip(files, scenarios, strict=True):
        differences = compare(run_scenario(scenario), nova[str(path)])
        real = [d for d in differences if d.deliberate is None]
        deliberate = [d for d in differences if d.deliberate is not None]
        note = f" ({len(deliberate)} deliberate)" if deliberate else ""
        if real:
            differ += 1
            out.print(f"[red]DIFFER[/] {escape(str(path))}{note}", highlight=False)
        else:
            agree += 1
            out.print(f"[green]AGREE[/]  {escape(str(path))}{note}", highlight=False)
        for difference in real + (deliberate if show_deliberate else []):
            out.print(f"    {escape(difference.describe())}", highlight=False, soft_wrap=True)
    out.print(f"\n{agree} agree / {differ} differ (of {len(files)} scenarios)")
    if differ:
        raise typer.Exit(1)
